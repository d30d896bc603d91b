"""Elastic teams' leases: when the head of the queue cannot be placed, ask teams of other apps to give
granules back (a Revoke). Part of :class:`~granny.planner.state.PlannerState`'s placement pass, apart to
keep state.py small. Pure: no sockets, threads or clocks.
"""

from __future__ import annotations

from typing import Protocol

from .lifecycle import TaskState
from .protocols import StateCore
from .records import Action, Request, Revoke


class LeaseState(StateCore, Protocol):
    _leases: dict[str, None]  # requests of elastic teams that may still give granules back, oldest first
    _revoked_for: set[str]  # queued requests that already asked leases to shrink


def revoke_for(st: LeaseState, req: Request, needed: int) -> list[Action]:
    """The head of the queue cannot be placed: ask elastic teams (other requests' leases) to shrink.

    Asked once per waiting request; a lease's granules are taken back when its team next forks,
    so the request is placed as their tasks finish. A lease itself asks nobody: a team grows into
    idle slots, not into other teams' ones, and a team whose surplus lease waited at the head of the
    queue would otherwise be asked to shrink for its own growth (and retire threads that hold no slot)."""
    if not st._leases or req.req_id in st._revoked_for or req.lease:
        return []  # the common case costs nothing: no elastic team anywhere
    st._revoked_for.add(req.req_id)
    free = sum(max(0, h.slots - h.busy()) for h in st.hosts.values() if h.alive)
    short = needed - free
    actions: list[Action] = []
    for lease_id in list(st._leases):
        other = st.requests[lease_id]
        if other.final():
            st._leases.pop(lease_id, None)
            continue
        if short <= 0:
            break
        if other.req_id == req.req_id:
            continue
        running = sum(1 for t in other.tasks if t.state is TaskState.RUNNING)
        if running:
            take = min(running, short)
            actions.append(Revoke(other.req_id, take))
            short -= take
    return actions
