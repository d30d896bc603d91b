"""Preemption by freezing (DFaaS, first choice): a delay-tolerant call with migration points gives its
slot to latency-sensitive work at its next point, keeping what it did.

Theory of operation (the call's side is worker/call_ctl.py)
- A plain call asks at its first two migration points: the planner learns that it has points and how
  far apart they come (``Batch.points``). A call that is not delay-tolerant is told it is never frozen
  and stops asking.
- When latency-sensitive work finds no free slot (batch.preempt_for), a running call whose points come
  at most ``SOON`` seconds apart is hinted (``Batch.freezing``), the one with the most slack first, if
  it still meets its deadline when frozen at its next point: its remaining work, counted twice, fits
  between then and the deadline. At that point it asks, is answered ``freeze`` (migration.freeze: the
  MPI worlds' path, with one rank), packs ``(resume, args)``, the planner's store pulls it, and the
  call ends there. Its granule retires and its slot goes to the queue's head.
- Stored (migration.stored), the call waits in the batch queue again with its deadline and what it ran
  banked (its latest start counts only the work left), and is placed as any delay-tolerant call is;
  its dispatch pulls its state from the store (a thaw) and runs ``resume(*args)``. The store's file is
  dropped when the call ends.
- A hinted call that ends before its next point simply ends: its slot frees then. One that has not
  reached a point within ``WAIT`` of its intervals is passed over (:func:`overdue`): the
  latency-sensitive work may then restart or pause a call, as if it had no points.
Pure: no sockets, threads or clocks.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping
from typing import Any, Protocol

from ..tunables import FREEZE_MARGIN as MARGIN
from ..tunables import POINT_SOON as SOON
from ..tunables import POINT_WAIT as WAIT
from ..wire.messages import NOT_PREEMPTIBLE
from .lifecycle import TaskState
from .protocols import BatchedState
from .records import Action, Granule, Hint


class MigrationsSeen(Protocol):
    """What this module uses of the state's migrations (migration.Migrations is one)."""

    @property
    def inflight(self) -> Mapping[str, Any]: ...

    def drop(self, req_id: str, granules: Mapping[str, Granule]) -> list[Action]: ...


class PlannerState(BatchedState, Protocol):
    """What this module uses of the planner state (PlannerState is one; a Protocol, see protocols.py)."""

    @property
    def migrations(self) -> MigrationsSeen: ...



def asked(st: PlannerState, granule_id: str, req_id: str, interval: float) -> str:
    """A plain call asks at a migration point: "" to freeze it now, else why it goes on."""
    b = st.batch
    req = st.requests.get(req_id)
    d = b.known.get(req_id)
    if req is None or d is None or req.n != 1 or req.tasks[0].granule_id != granule_id:
        return NOT_PREEMPTIBLE
    if req.tasks[0].state is not TaskState.RUNNING or req_id in st.migrations.inflight:
        return "not running"
    if interval > 0 or req_id not in b.points:
        b.points[req_id] = interval
    if b.freezing.get(req_id, ("",))[0] != granule_id:
        return "its slot is not needed"
    del b.freezing[req_id]
    d.preemptions += 1
    d.freezes += 1
    return ""  # counted as one of the batch's "freezes" by migration.freeze, "frozen" once its state is stored


def remaining(st: PlannerState, rid: str) -> float:
    b = st.batch
    d = b.known[rid]
    running = b.now - d.started if d.started is not None else 0.0
    return max(0.0, b.guarded(d.key) - d.ran - running)


def hint(st: PlannerState, needed: int, after: float = -math.inf) -> list[Action]:
    """Hint up to ``needed`` running calls that reach a point soon to freeze there (see the module docstring),
    of those whose deadline is later than ``after`` (a promoted delay-tolerant call's own)."""
    b = st.batch
    candidates: list[tuple[float, int, str, str]] = []
    for rid, interval in b.points.items():
        d = b.known.get(rid)
        req = st.requests.get(rid)
        if (d is None or req is None or d.started is None or d.granule or rid in b.paused or rid in b.freezing
                or d.deadline <= after
                or not 0 < interval <= SOON or req.tasks[0].state is not TaskState.RUNNING
                or rid in st.migrations.inflight):
            continue
        granule = st.granules.get(req.tasks[0].granule_id)
        if granule is None or not granule.connected or granule.waiting:
            continue
        slack = d.deadline - b.now - interval - 2 * remaining(st, rid) - MARGIN
        if slack >= 0:
            candidates.append((slack, d.seq, rid, granule.granule_id))
    actions: list[Action] = []
    for _, _, rid, gid in sorted(candidates, reverse=True)[:needed]:
        b.freezing[rid] = (gid, 0.0)  # by when: set at the next tick, on the clock (see overdue)
        b.counts["freeze_hinted"] += 1
        actions.append(Hint(gid, rid))
    return actions


def overdue(st: PlannerState, now: float) -> bool:
    """Hinted calls that did not reach a point in time (their steps got longer, say) are not waited for
    any more, nor hinted again: the latency-sensitive work they were hinted for may restart or pause
    another call (or them). True if any was passed over (the caller schedules again)."""
    b = st.batch
    for rid, (gid, by) in list(b.freezing.items()):
        if not by:  # hinted since the last tick (the batch clock moves with ticks and delay-tolerant events)
            b.freezing[rid] = (gid, now + WAIT * b.points.get(rid, 0.0) + MARGIN)
    late = [rid for rid, (_, by) in b.freezing.items() if by <= now]
    for rid in late:
        del b.freezing[rid]
        b.points.pop(rid, None)
        b.counts["freeze_missed"] += 1
    if late:
        b.preempted_for.clear()
    return bool(late)


def requeue(st: PlannerState, req_id: str, now: float) -> None:
    """A frozen call's state is stored: it waits in the batch queue again, what it ran banked."""
    b = st.batch
    b.now = max(b.now, now)
    d = b.known[req_id]
    if d.started is not None:
        d.ran += max(0.0, b.now - d.started)
    d.started, d.promoted = None, False
    bisect.insort(b.waiting, d)


def thawed(st: PlannerState, req_id: str) -> None:
    """A frozen call's run was sent to a granule, to go on from its stored state."""
    if req_id in st.batch.known:
        st.batch.counts["thawed"] += 1


def ended(st: PlannerState, req_id: str) -> list[Action]:
    """A delay-tolerant call ended: forget its points; a call that was frozen has its stored state dropped."""
    b = st.batch
    b.points.pop(req_id, None)
    b.freezing.pop(req_id, None)
    req = st.requests.get(req_id)
    return st.migrations.drop(req_id, st.granules) if req is not None and req.frozen else []
