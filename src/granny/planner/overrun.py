"""Calls waiting behind a delay-tolerant call that overran its estimate take its slot when it overruns.

Theory of operation
- Why: admission (batch.refusal) plans each running delay-tolerant call's slot free at the call's
  estimated end. A call that runs past it (a loaded host, an input larger than usual) holds a slot the
  waiting calls were admitted on. The deadline guard used to act only when a waiting call's latest
  start came; two calls due together behind one overrunning slot both reach their latest start at
  once, the first takes the slot, and the second, behind it, misses its deadline (found by a
  hypothesis property, tests/unit/planner/test_state_pausing.py).
- The rule: a running call has *overrun* once it passes its guarded end (start + the estimate plus its
  spread, ``Batch.guarded``, less what it ran before a pause or freeze). While one that could give way
  has overrun (its deadline is later than the earliest waiting call's, it is neither paused, being
  frozen, nor fused, and its pause guard still holds), the waiting calls are replayed earliest deadline
  first on the batch slots from now, that slot counted as never free again. If a waiting call would
  miss its deadline, the earliest waiting call is promoted (to the head of the FIFO queue, as at its
  latest start) and takes a slot by the guards of a promoted call (batch.preempt_for: freeze > restart >
  pause, only calls with a later deadline that still meet their own). The replay is run again with
  that call on the overrun slot, until it fits or every such slot is taken: two calls due together
  behind one slot are served from the slot's estimated end, one after the other, as admission planned.
- When: at the tick at the next guarded end of such a call (``Batch.overrun_at``, one of the batch's
  deadlines, so the planner's tick wakes then: ticker.py), and after every placement pass that leaves
  calls waiting (a slot that freed may have gone back to a paused call that overran).
- Cost: O(granules) to find the slot holders; the O(n log n) replay runs only while a call that could
  give way has overrun.
Pure: no sockets, threads or clocks.
"""

from __future__ import annotations

import heapq
import math
from typing import TYPE_CHECKING

from ..tunables import DEADLINE_MARGIN as MARGIN
from .batch_queue import Batch, Delayed, latest_resume
from .lifecycle import TaskState

if TYPE_CHECKING:
    from .protocols import BatchedState


def due(st: BatchedState, now: float) -> list[Delayed]:
    """The waiting calls (earliest deadline first) to promote now because calls ahead of them overran;
    sets ``Batch.overrun_at`` to the next guarded end of a call that could give way (None: none)."""
    b = st.batch
    b.overrun_at = None
    if not b.waiting or not math.isfinite(b.waiting[0].deadline):
        return []
    head = b.waiting[0].deadline
    ends: list[float] = []  # when each batch slot's holder is estimated to end
    victims = 0
    soon = math.inf
    for granule in st.granules.values():
        calls = [d for d in (b.known.get(rid) for rid, _ in granule.tasks) if d is not None and d.started is not None]
        if not calls or granule.waiting:  # a paused call lent its slot out: the holder is the call that took it
            continue
        end = max(d.started + b.guarded(d.key) - d.ran for d in calls if d.started is not None)
        first = calls[0]
        req = st.requests.get(first.req_id)
        could_give_way = (len(calls) == 1 and not first.granule and first.req_id not in b.freezing
                          and first.deadline > head and req is not None and req.tasks[0].state is TaskState.RUNNING
                          and granule.connected)
        if could_give_way and end <= now and latest_resume(b, first) > now:
            ends.append(math.inf)
            victims += 1
            continue
        if could_give_way and end > now:
            soon = min(soon, end)
        ends.append(max(now, end))
    b.overrun_at = soon if math.isfinite(soon) else None
    if not victims:
        return []
    for rid in st.queue:  # promoted calls not placed yet: each will take a slot (perhaps an overrun one)
        d = b.known.get(rid)
        if d is not None and d.promoted and d.started is not None and st.requests[rid].tasks[0].state is TaskState.QUEUED:
            ends.append(now + max(0.0, b.guarded(d.key) - d.ran))
            victims -= 1
    slots = max(1, math.floor(b.share * sum(h.slots for h in st.hosts.values() if h.alive and h.host_id not in st.evicting)))
    ends.sort()
    free = (ends + [now] * slots)[:slots]
    for rid in sorted(b.paused, key=lambda r: b.known[r]):  # each resumes at the first slot that frees
        free[0] += max(0.0, b.guarded(b.known[rid].key) - b.known[rid].ran)
        free.sort()
    out: list[Delayed] = []
    while victims > 0 and free[-1] == math.inf and len(out) < len(b.waiting) and _misses(b, free, b.waiting, len(out)):
        d = b.waiting[len(out)]
        out.append(d)
        victims -= 1
        free[-1] = now + max(0.0, b.guarded(d.key) - d.ran)  # it takes an overrun slot (the latest free: inf)
        free.sort()
    return out


def _misses(b: Batch, free: list[float], waiting: list[Delayed], skip: int) -> bool:
    """Earliest-deadline-first list scheduling of ``waiting[skip:]`` on slots free at ``free``: would a
    call end past its deadline (its guarded runtime, plus the margin)?"""
    heap = list(free)
    heapq.heapify(heap)
    for d in waiting[skip:]:
        if not math.isfinite(d.deadline):
            return False  # "whenever" calls come last: no deadline to miss
        end = heapq.heappop(heap) + max(0.0, b.guarded(d.key) - d.ran)
        if end + MARGIN > d.deadline:
            return True
        heapq.heappush(heap, end)
    return False
