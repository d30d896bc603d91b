"""Preemption by pausing (DFaaS): a delay-tolerant call that can be neither frozen nor restarted is stopped
(SIGSTOP) so that latency-sensitive work gets its core, and continued (SIGCONT) later, by its deadline.

Theory of operation
- Why signals and not a cooperative pause: a cooperative pause needs the call's code to look at a
  flag now and then (a migration point does, and is used to freeze instead); arbitrary code - a
  numpy kernel, a C extension, a busy loop - never looks. SIGSTOP stops any process at once,
  costs no work (nothing runs again) and needs nothing from the code. Its price: the paused
  process keeps its memory (its granule stays, holding no slot), the latency-sensitive work needs
  another granule (the host's worker forks a spare if none is idle, and keeps it), and whatever
  the call was doing with the outside world stalls with it (a peer may time out).
- Order of preference when latency-sensitive work finds no free slot (batch.preempt_for): freeze a
  call at a migration point (freezing.py), restart a restartable call, and
  pause only as the last resort. Fused granules are never paused (every call in them would stop).
- A paused call's granule lends its slot out, as a granule waiting on its own sub-calls does
  (``Granule.waiting``): the host's busy count leaves it out, and the latency-sensitive call is
  placed at once. The paused call still counts against the batch share, so no other
  delay-tolerant call takes the slot it lent.
- Deadline guard: a call is paused only if, continued at its latest resume time, it still ends by
  its deadline with its remaining runtime counted ``batch_queue.SAFETY`` times (once resumed it may share a
  core with the work that took its slot). It is continued as soon as its host has a free slot
  (before any waiting delay-tolerant call starts), and at its latest resume time at the latest,
  free slot or not (``batch_queue.next_resume``, then ``tick``). So a paused call still meets its deadline.
- A pause that lands after the call's code returned does not hold (worker/finishing.py): its granule is
  continued at once and its Done ends the call here as any Done does (``batch.ended``). A pause that lands
  in the call's code holds. A worker that loses the planner continues the granules it paused (a restarted
  planner knows of no pause).
Pure: no sockets, threads or clocks.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from .batch_queue import latest_resume
from .lifecycle import TaskState
from .records import Action, Dispatch, Kill, Request, SpawnGranules

if TYPE_CHECKING:
    from .protocols import BatchedState


def pause_for(st: BatchedState, req: Request, needed: int, after: float = -math.inf) -> list[Action]:
    """Pause up to ``needed`` running delay-tolerant calls, those with the most slack first, for
    latency-sensitive ``req`` (which the caller found no room for); place it at once if that made room.
    ``after``: only calls with a later deadline (``req`` is a promoted delay-tolerant call with this one)."""
    b = st.batch
    if any(h.spawning and h.slots > h.busy() for h in st.hosts.values() if h.alive):
        return []  # a granule is being forked for a slot that is free already: that room is coming
    candidates: list[tuple[float, int, str]] = []
    for rid, d in b.known.items():
        other = st.requests.get(rid)
        if (other is None or d.started is None or d.granule or rid in b.paused or rid in b.freezing
                or other.tasks[0].state is not TaskState.RUNNING or d.deadline <= after):
            continue
        granule = st.granules.get(other.tasks[0].granule_id)
        if granule is None or granule.waiting or not granule.connected or granule.host_id in st.evicting:
            continue
        # Its latest resume: the deadline less its remaining work (counted SAFETY times) after the pause.
        latest = latest_resume(b, d)
        if latest > b.now:
            candidates.append((latest, d.seq, rid))
    if not candidates:
        return []
    actions: list[Action] = []
    for _, _, rid in sorted(candidates, reverse=True)[:needed]:
        d = b.known[rid]
        granule = st.granules[st.requests[rid].tasks[0].granule_id]
        d.ran += max(0.0, b.now - d.started) if d.started is not None else 0.0
        b.paused[rid] = granule.granule_id
        granule.waiting = True  # its slot is lent out (see the module docstring)
        actions.append(Kill(granule.host_id, granule.granule_id, "paused: latency-sensitive work takes its slot",
                            signal="STOP"))
        b.counts["paused"] += 1
        d.preemptions += 1
        host = st.hosts[granule.host_id]
        if not host.idle() and not host.spawning:
            host.spawning += 1
            actions.append(SpawnGranules(host.host_id, 1))
    return actions + st.schedule()  # the latency-sensitive call takes the lent slot now, if a granule is idle


def resume(st: BatchedState, force: bool = False) -> list[Action]:
    """Continue paused calls: those whose host has a free slot (when no latency-sensitive work waits), and
    (``force``) those whose latest resume time has come, free slot or not."""
    b = st.batch
    actions: list[Action] = []
    # A slot that looks free while work waits in the FIFO queue is the one a paused call lent to it: the
    # granule it runs on may still be starting (the worker forks a spare). Taken back then, the waiting work
    # stayed queued behind the call it had paused, for as long as that call ran (a tick came first).
    room = not st.queue
    for rid in sorted(b.paused, key=lambda r: b.known[r]):  # earliest deadline first
        d = b.known[rid]
        granule = st.granules.get(b.paused[rid])
        host = st.hosts.get(granule.host_id) if granule is not None else None
        if granule is None or host is None:
            b.paused.pop(rid)  # gone; its end is reported by its exit
            continue
        if (room and host.slots - host.busy() > 0) or (force and latest_resume(b, d) <= b.now):
            actions += continue_(st, rid)
    return actions


def continue_(st: BatchedState, rid: str) -> list[Action]:
    """Continue paused call ``rid``'s granule (also when the call has just ended: see batch.ended)."""
    b = st.batch
    granule = st.granules.get(b.paused.pop(rid))
    d = b.known.get(rid)
    if d is not None:
        d.started = b.now  # a new run segment: what ran before is in d.ran
    if granule is None:
        return []  # it died (its exit ended the call)
    granule.waiting = False
    b.counts["resumed"] += 1
    return [Kill(granule.host_id, granule.granule_id, "resumed", signal="CONT")]



def keep_spare(st: BatchedState, placed: list[Action]) -> list[Action]:
    """Delay-tolerant calls were just started (``placed``): on each host that has no idle granule left, ask
    for a spare now, so that a latency-sensitive call that pauses one of them finds an idle granule at once
    instead of waiting for a fork (measured: the slowest latency-sensitive calls of the mixed trace were
    often those that came first after a new cluster filled its slots, waiting 10-100 ms for one under load).
    One spare a host, at most (kept, as any spare is)."""
    actions: list[Action] = []
    for gid in {a.granule_id for a in placed if isinstance(a, Dispatch) and a.req_id in st.batch.known}:
        granule = st.granules.get(gid)
        host = st.hosts.get(granule.host_id) if granule is not None else None
        if host is not None and host.alive and not host.spawning and not host.idle():
            host.spawning += 1
            actions.append(SpawnGranules(host.host_id, 1))
    return actions
