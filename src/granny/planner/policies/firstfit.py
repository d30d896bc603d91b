"""first-fit: the Slurm-like baseline. Per-core allocation, first fit, no migration.

A job's ranks take the free slots of the hosts in the cluster's order (the order the hosts
registered in, as a Slurm node list), as many as each host has, until all are placed. Hosts are
shared between jobs, and nothing ever moves: a job split by fragmentation stays split.

New requests wait while the cluster has fewer free slots than they need.
"""

from __future__ import annotations

from .base import (
    ClusterView,
    Decision,
    MigrationDecision,
    Placement,
    PlacementRequest,
    PolicyBase,
    Stay,
)
from .packing import check_size, expand, fill, pinned, runnable


class FirstFit(PolicyBase):
    name = "first-fit"

    def place(self, view: ClusterView, request: PlacementRequest) -> Decision:
        if request.hosts:
            return pinned(view, request)
        refused = check_size(view.hosts, request, sum(h.free for h in view.hosts))
        if refused is not None:
            return refused
        counts = fill([(h, h.free) for h in view.hosts], request.n)
        return Placement(expand(counts, [h.host_id for h in view.hosts]))

    def migrate(self, view: ClusterView, app_id: str) -> MigrationDecision:
        app = runnable(view, app_id)  # its reasons first (not running, migrate=False), as every policy gives them
        return app if isinstance(app, Stay) else Stay("the first-fit policy never migrates")

