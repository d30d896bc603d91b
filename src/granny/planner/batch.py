"""Delay-tolerant calls (DFaaS): an earliest-deadline-first batch queue beside the planner's FIFO queue.

Theory of operation
- A call may carry a *delay tolerance*: 0 (the default) is latency-sensitive and goes to the FIFO queue
  as ever; ``t > 0`` means "my result must be ready within t seconds of submission"; ``-1`` means "run me
  whenever, but eventually". Delay-tolerant calls wait here, ordered by deadline (-1 last), oldest first.
- They run in the slots latency-sensitive work leaves free: every placement pass places the FIFO queue
  first and then, while slots are free, calls from here in deadline order, up to ``share`` of the
  cluster's slots (a cap that keeps headroom for latency-sensitive bursts; 1 = no cap).
- Deadline guard: each function's runtime is estimated from its observed history (an exponentially
  weighted mean, fed by the driver). A waiting call whose latest start (deadline − estimate − margin)
  has come is moved to the head of the FIFO queue, ahead of latency-sensitive work, so that it starts
  while it can still finish in time. ``next_deadline`` names the next such moment, so a tick comes then.
  Calls waiting behind a running call that overran its estimate are promoted sooner, at its estimated
  end, when they need its slot to meet their deadlines (overrun.py).
- Admission: a call whose deadline cannot be met is refused at submission (``deadline`` error), never
  silently missed: when its own estimated runtime exceeds its tolerance, or when the delay-tolerant work
  with earlier deadlines plus its own could not be done by then on the cluster's slots (an EDF demand
  check: Σ estimates of the calls due by each deadline ÷ slots ≤ time left).
- Calls that ended are counted as met or missed against their deadline.
Pure: no sockets, threads or clocks (``now`` comes in with events).
"""

from __future__ import annotations

import bisect
import heapq
import math
from typing import Protocol, cast

from ..errors import ErrorKind
from ..tunables import DEADLINE_MARGIN as MARGIN
from . import edf_bound, freezing, fusion, idle, overrun, pausing, prefetch
from .batch_queue import Delayed
from .lifecycle import TASK_TRANSITIONS, TaskEvent, TaskState, transition
from .policies import ClusterView, Placement
from .protocols import BatchedState
from .records import Action, Granule, Kill, Request
from .views_policy import pins_down, request_for


class BatchState(BatchedState, Protocol):
    """What this module uses of the planner state (PlannerState is one; see protocols.py)."""

    def place_now(self, req: Request) -> list[Action] | None: ...

    def assign(self, req: Request, pending: list[int], hosts: tuple[str, ...]) -> list[Action]: ...

    def fail_waiting(self, req_id: str, index: int, kind: ErrorKind, message: str) -> list[Action]: ...

    def _unprefetch(self, granule: Granule, key: tuple[str, int], requeue: bool = True) -> list[Action]: ...

    @property
    def migrations(self) -> freezing.MigrationsSeen: ...


class BatchEvents:
    """The delay-tolerant side of :class:`~granny.planner.state.PlannerState` (a mixin, to keep state.py small)."""

    def place_now(self, req: Request) -> list[Action] | None:
        """Place all pending tasks of ``req`` now if the policy finds room (None: it does not)."""
        st = cast("BatchState", self)
        pending = [i for i, t in enumerate(req.tasks) if t.state is TaskState.QUEUED]
        view = st.holds.view(ClusterView(st.views.views(st.requests, st.evicting)), req.app_id, st.requests)  # (holds.py)
        request = request_for(req, len(pending))
        decision = pins_down(request, st.hosts) or st.policy.place(view, request)
        return st.assign(req, pending, decision.hosts) if isinstance(decision, Placement) else None

    def readmit_restored(self) -> None:
        """The restart grace ended: journaled delay-tolerant calls wait in this queue again, with their
        deadlines (those a granule reported running count as started; finished ones are dropped)."""
        st = cast("BatchState", self)
        b = st.batch
        for rid, d in b.restored.items():
            req = st.requests.get(rid)
            if req is None or req.final():
                continue
            b.known[rid] = d
            if req.tasks[0].state is TaskState.QUEUED:
                bisect.insort(b.waiting, d)
            else:
                d.started = b.now
        b.restored.clear()

    def batch_tick(self, now: float) -> list[Action]:
        """Move calls whose latest start has come to the head of the FIFO queue, and place."""
        st = cast("BatchState", self)
        before = len(st.queue)
        promote(st, now)
        _promote(st, overrun.due(st, now), now, "overrun_promoted")  # calls behind one that overran its estimate
        actions = pausing.resume(st, force=True) if st.batch.paused else []  # latest resume times that came
        actions += idle.due(st, now) if st.batch.idle else []  # idle-class calls whose raise time came
        if st.batch.freezing and freezing.overdue(st, now):
            return actions + st.schedule()
        return actions + (st.schedule() if len(st.queue) != before else [])


def submit(st: BatchState, req_id: str, key: str, tolerance: float, now: float, fuse: bool = False) -> list[Action]:
    """Queue a delay-tolerant request (already in ``st.requests``), or refuse it if its deadline cannot be met."""
    b = st.batch
    b.now = max(b.now, now)
    b.keys.add(key)
    deadline = math.inf if tolerance < 0 else now + tolerance
    b.seq += 1
    d = Delayed(deadline, now, b.seq, req_id, key, fuse=fuse and b.fuse_cap > 1)
    why = refusal(st, d, tolerance)
    if why:
        b.counts["refused"] += 1
        req = st.requests[req_id]
        return [a for i in range(req.n) for a in st.fail_waiting(req_id, i, ErrorKind.DEADLINE, why)]
    bisect.insort(b.waiting, d)
    b.known[req_id] = d
    b.counts["admitted"] += 1
    return []


def restore(st: BatchState, req_id: str, key: str, deadline: float, submitted: float, fuse: bool = False,
            restartable: bool = False, ran: float = 0.0) -> None:
    """A journaled delay-tolerant request (already restored into ``st.requests``) after a planner restart:
    it was admitted before, so it is not checked again; it waits here until the restart grace ends.
    ``ran``: the seconds it ran before it was frozen (its latest start counts only the work left)."""
    b = st.batch
    b.keys.add(key)
    b.seq += 1
    b.restored[req_id] = Delayed(deadline, submitted, b.seq, req_id, key, fuse=fuse and b.fuse_cap > 1, ran=ran)
    req = st.requests[req_id]
    req.restartable, req.prefetch = restartable, False
    b.counts["restored"] += 1


def refusal(st: BatchState, new: Delayed, tolerance: float) -> str:
    """Why ``new``'s deadline cannot be met ("" if it can, as far as the estimates know).

    Replays earliest-deadline-first list scheduling of the waiting calls plus ``new`` on the batch
    share of the slots: each slot is free when the delay-tolerant call it runs is estimated to end
    (latency-sensitive work is taken to end now: deadlines hold "whenever the cluster has the capacity")."""
    if not math.isfinite(new.deadline):
        return ""
    b = st.batch
    own = b.estimate(new.key)
    if own + MARGIN > tolerance:
        return (f"the call needs about {own:.3g}s (its observed runtime) but its deadline is {tolerance:g}s away: "
                "it cannot be met")
    slots = max(1, math.floor(b.share * sum(h.slots for h in st.hosts.values() if h.alive and h.host_id not in st.evicting)))
    if edf_bound.admits(st, new, own, slots, MARGIN):  # O(functions + granules): most calls stop here
        return ""
    busy = sorted(max(b.now, d.started + b.estimate(d.key) - d.ran) for d in b.known.values()
                  if d.started is not None and d.req_id not in b.paused)
    free = sorted((busy + [b.now] * slots)[:slots]) if len(busy) < slots else busy[:slots]
    for d in sorted(b.known[rid] for rid in b.paused):  # a paused call lent its slot: it resumes at the first that frees
        heapq.heappush(free, heapq.heappop(free) + max(0.0, b.estimate(d.key) - d.ran))
    for d in sorted([*b.waiting, new]):
        start = heapq.heappop(free)
        end = start + b.estimate(d.key)
        heapq.heappush(free, end)
        if math.isfinite(d.deadline) and end + MARGIN > d.deadline:
            due = "its" if d is new else f"an admitted call's ({d.deadline - b.now:.3g}s away)"
            return (f"with the delay-tolerant calls already waiting or running on {slots} slot(s), {due} deadline "
                    "would be missed")
    return ""


def place(st: BatchState) -> list[Action]:
    """Start waiting calls, earliest deadline first, in the slots left free (up to the share cap)."""
    b = st.batch
    cap = max(1, math.floor(b.share * sum(h.slots for h in st.hosts.values() if h.alive)))
    actions: list[Action] = prefetch.take_back(st)  # latency-sensitive calls prefetched behind others come first
    actions += pausing.resume(st) if b.paused else []  # paused calls next: they hold deadlines
    while b.waiting:
        d = b.waiting[0]
        room = fusion.with_room(st, d) if d.fuse and b.fused else None
        if room is not None:
            placed = fusion.attach(st, d, room)
            d.granule = room.granule_id
        elif b.running() >= cap:
            break
        else:
            own = st.place_now(st.requests[d.req_id])
            if own is None:
                break  # every call here needs one slot: if the first cannot be placed now, none can
            placed = fusion.started(st, d, own) if d.fuse else own
        b.waiting.pop(0)
        d.started = b.now
        if d.granule:
            fusion.note(st, d)
        if b.now > d.submitted:
            b.counts["delayed"] += 1
        actions += placed
    actions += pausing.keep_spare(st, actions) if b.known else []  # (for the latency-sensitive calls to come)
    if b.waiting and b.fused:  # fusable calls behind the head may still share a fused granule's slot
        actions += _fuse_behind(st)
    if b.waiting and (early := overrun.due(st, b.now)):  # a freed slot went to a paused call that overran, say
        _promote(st, early, b.now, "overrun_promoted")
        actions += st.schedule()  # (they go first: once per call, as each leaves the batch queue)
    return actions


def _fuse_behind(st: BatchState) -> list[Action]:
    b = st.batch
    actions: list[Action] = []
    for d in [d for d in b.waiting if d.fuse]:
        room = fusion.with_room(st, d)
        if room is None:
            continue
        b.waiting.remove(d)
        actions += fusion.attach(st, d, room)
        d.granule, d.started = room.granule_id, b.now
        fusion.note(st, d)
        b.counts["delayed"] += 1 if b.now > d.submitted else 0
    return actions


def preempt_for(st: BatchState, req: Request, needed: int) -> list[Action]:
    """Latency-sensitive ``req`` waits for ``needed`` slots: stop restartable delay-tolerant calls for it,
    those with the most slack first, and only those that can still run again by their deadline (twice
    their estimated runtime before it). Each is requeued here with its deadline; its granule is killed
    and its slot goes to the queue's head when the granule is gone. Once per waiting request."""
    b = st.batch
    own = b.known.get(req.req_id)
    if (own is not None and not own.promoted) or req.req_id in b.preempted_for or len(b.known) == len(b.waiting):
        return []  # none runs anyway
    # A delay-tolerant call whose latest start came (promoted) may take the slot of one with a later
    # deadline (earliest deadline first), under the same guards: its runtime ran over the estimate that
    # admitted both, or latency-sensitive work held the slots, and it would miss its deadline waiting.
    after = own.deadline if own is not None else -math.inf
    if b.preempted_for:  # (asked on every pass that stalls: one pass over the queue, not one per entry)
        queued = set(st.queue)
        b.preempted_for = {r for r in b.preempted_for if r in queued}
    candidates = []
    for rid, d in b.known.items():
        other = st.requests.get(rid)
        if (other is None or not other.restartable or d.started is None or d.granule or rid in b.paused or rid in b.freezing
                or other.tasks[0].state is not TaskState.RUNNING or d.deadline <= after):
            continue
        slack = d.deadline - b.now - 2 * b.guarded(d.key) - MARGIN
        if slack >= 0:
            candidates.append((slack, d.seq, rid))
    free = sum(max(0, min(h.slots - h.busy(), len(h.idle()))) for h in st.hosts.values() if h.alive)
    if free < needed and b.points and (hinted := freezing.hint(st, needed - free, after)):  # first choice: freeze
        b.preempted_for.add(req.req_id)
        return hinted
    if not candidates or len(candidates) + free < needed:
        if req.n == 1 and not req.hosts and not req.gang and free < needed:  # the last resort (pausing.py)
            b.preempted_for.add(req.req_id)
            return pausing.pause_for(st, req, needed - free, after)
        return []  # stopping calls would not make room for it
    b.preempted_for.add(req.req_id)
    actions: list[Action] = []
    for _, _, rid in sorted(candidates, reverse=True)[:needed - free]:
        other = st.requests[rid]
        task = other.tasks[0]
        granule = st.granules[task.granule_id]
        for key in granule.tasks[1:]:  # calls prefetched behind it go back to the queue
            actions += st._unprefetch(granule, key)
        granule.tasks = []  # it is killed: its exit is not the call's end (it stays busy until then)
        actions.append(Kill(granule.host_id, granule.granule_id, "preempted: latency-sensitive work takes its slot"))
        task.state = transition(TASK_TRANSITIONS, task.state, TaskEvent.REQUEUE, rid)
        task.granule_id = task.host_id = ""
        d = b.known[rid]
        d.started, d.ran = None, 0.0  # it runs again from the start
        bisect.insort(b.waiting, d)
        b.counts["preempted"] += 1
        d.preemptions += 1
    return actions


def promote(st: BatchState, now: float) -> None:
    """Calls whose latest start has come go to the head of the FIFO queue: their deadline comes first now."""
    b = st.batch
    b.now = max(b.now, now)
    _promote(st, [d for d in b._first_due(now) if b.latest_start(d) <= now], now, "promoted")


def _promote(st: BatchState, due: list[Delayed], now: float, counter: str) -> None:
    b = st.batch
    for d in sorted(due, reverse=True):  # the earliest deadline ends up first
        b.waiting.remove(d)
        d.started, d.promoted = now, True  # counted as running from now on (it is placed before any other work)
        at = 0  # behind the promoted calls due sooner (those whose latest start came, say)
        while at < len(st.queue) and (o := b.known.get(st.queue[at])) is not None and o.promoted and o < d:
            at += 1
        st.queue.insert(at, d.req_id)
        b.counts[counter] += 1


def ended(st: BatchState, req_id: str) -> list[Action]:
    """A delay-tolerant request ended: count its deadline met or missed. A paused one's granule is
    continued (its call may have ended just as it was paused, or be cancelled while paused)."""
    b = st.batch
    d = b.known.pop(req_id, None)
    if d is None:
        return []
    if d in b.waiting:
        b.waiting.remove(d)
    b.idle.pop(req_id, None)
    if d.granule:
        fusion.ended(st, d)
    actions = pausing.continue_(st, req_id) if req_id in b.paused else []
    actions += freezing.ended(st, req_id) if b.points else []
    req = st.requests.get(req_id)
    if req is None or any(t.state is not TaskState.SUCCEEDED for t in req.tasks):
        b.counts["failed"] += 1
    elif b.now <= d.deadline:
        b.counts["met"] += 1
    else:
        b.counts["missed"] += 1
    return actions


def describe(st: BatchState, req_id: str) -> dict[str, object]:
    """Deadline, slack and state of a delay-tolerant request, for status views ({} for other requests)."""
    b = st.batch
    d = b.known.get(req_id)
    if d is None:
        return {}
    finite = math.isfinite(d.deadline)
    return {"delay_tolerant": True, "deadline_in": round(d.deadline - b.now, 3) if finite else None,
            "slack": round(b.latest_start(d) - b.now, 3) if finite else None, "waiting": d in b.waiting,
            "paused": req_id in b.paused, "fused": bool(d.granule), "preempted": d.preemptions, "frozen": d.freezes,
            "delayed": d.started is None or d.started > d.submitted}


