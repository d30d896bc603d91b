"""whole-hosts: the batch baseline. A job gets whole hosts and shares none of them.

This is how Kubernetes with an MPI operator (or a batch system allocating whole VMs) runs MPI
jobs: each job asks for enough hosts to hold all its ranks, and the slots it leaves unused on
them stay idle until it ends. It is the "batch" scheduler of the cluster evaluation.

New requests: only hosts with no slot in use are candidates; the largest empty hosts are taken
first (fewest hosts), and granules fill them in that order, so every host but the last is full.
While the empty hosts cannot hold the request, it waits.

Migration: never (a batch job stays where it started).
"""

from __future__ import annotations

from .base import (
    ClusterView,
    Decision,
    HostView,
    MigrationDecision,
    Placement,
    PlacementRequest,
    PolicyBase,
    Stay,
)
from .packing import check_size, expand, fill, pinned, runnable


class WholeHosts(PolicyBase):
    name = "whole-hosts"

    def place(self, view: ClusterView, request: PlacementRequest) -> Decision:
        if request.hosts:
            return pinned(view, request, _taken)
        empty = [h for h in view.hosts if h.free >= h.slots]  # _taken(h) is None, without its reason's text
        refused = check_size(view.hosts, request, sum(h.slots for h in empty), "slots on hosts nobody uses")
        if refused is not None:
            return refused
        order = sorted(empty, key=lambda h: (-h.slots, h.host_id))
        return Placement(expand(fill([(h, h.slots) for h in order], request.n), [h.host_id for h in order]))

    def migrate(self, view: ClusterView, app_id: str) -> MigrationDecision:
        app = runnable(view, app_id)  # its reasons first (not running, migrate=False), as every policy gives them
        return app if isinstance(app, Stay) else Stay("the whole-hosts policy never migrates")



def _taken(host: HostView) -> str | None:
    """Why ``host`` cannot be given to a new job: some of its slots are in use (or not ready)."""
    return None if host.free >= host.slots else f"host {host.host_id} is not empty ({host.used} slot(s) in use)"
