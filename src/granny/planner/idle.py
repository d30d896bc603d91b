"""Delay-tolerant calls at the kernel's idle priority (``--batch-nice idle``): which ones, and until when.

Theory of operation (DFaaS, issue 14: latency-sensitive calls must not wait longer with batch work around)
- A granule running a delay-tolerant call dispatched with ``Run.nice == NICE_IDLE`` runs it in the
  kernel's idle class, SCHED_IDLE (worker/niceness.py). A process of the normal class that wakes up on
  that core - the client, the planner, the worker, a latency-sensitive call's granule - takes it at
  once, before any pause (SIGSTOP, pausing.py) has landed; and the batch call still has every cycle
  nothing else wants. The slots are unchanged: the planner's placement, preemption and guards are the same.
- The price: an idle-class thread gets next to nothing while normal processes keep a core busy. Granny's
  own such processes hold slots (which the guards count), but other work on the host does not: under
  outside load a call could starve past its deadline (measured: a 6.8 ms call with a 0.16 s tolerance
  ran 247 ms and missed, on a machine at load 2-3). So the idle class is lent, not given:
  - a call is dispatched idle only if its *raise time* - the moment from which it still ends by its
    deadline if it had made no progress at all, given ``SAFETY`` times its guarded runtime (as a paused
    call is, pausing.py) - is at least ``MIN_IDLE`` away; otherwise (tight calls, promoted calls) at the
    normal priority;
  - at its raise time a call still running is moved back to the normal class by its worker
    (``Kill(signal="NORMAL")``, worker/pausing.py), from outside the starved process; from then on it
    is guarded as any call is. "Whenever" calls (no deadline) are never raised.
- The runtime estimates (the guard's and admission's) come from runs at normal priority: an idle-class
  run is observed only when its function has no estimate yet (:func:`observed`). So a function that
  only ever runs idle keeps the estimate of its first run (an overrun is still caught: overrun.py).
Pure: no sockets, threads or clocks (``now`` comes in).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from ..tunables import DEADLINE_MARGIN as MARGIN
from ..tunables import MIN_IDLE
from ..tunables import RESUME_SAFETY as SAFETY
from .batch_queue import Batch, Delayed
from .lifecycle import TaskState
from .records import Action, Kill

if TYPE_CHECKING:
    from .protocols import BatchedState



def raise_at(b: Batch, d: Delayed) -> float:
    """When the call must run at normal priority to end by its deadline even if it made no progress yet."""
    return d.deadline - SAFETY * b.guarded(d.key) - MARGIN


def priority(b: Batch, req_id: str, nice: int, idle: bool, now: float) -> int:
    """The ``Run.nice`` of a call being dispatched, given the planner's ``--batch-nice`` (``idle``: it is
    the idle class): ``nice`` for a delay-tolerant call that may run at it (the idle class only with time
    to spare, and noted for its raise), else 0."""
    d = b.known.get(req_id)
    if d is not None:
        d.idle = False
    if d is None or d.promoted or nice <= 0:
        return 0
    if not idle:
        return nice
    at = raise_at(b, d)
    if at - now < MIN_IDLE:
        return 0
    if math.isfinite(at):
        b.idle[req_id] = at
    d.idle = True
    return nice


def observed(b: Batch, req_id: str, key: str) -> bool:
    """Whether a call's runtime feeds its function's estimate: not when it ran in the idle class (its wall
    time is then that of what else ran; measured: starved runs inflated the estimates and their spread,
    so admission refused more calls and more were promoted), unless there is no estimate yet."""
    d = b.known.get(req_id)
    return d is None or not d.idle or key not in b.runtimes


def due(st: BatchedState, now: float) -> list[Action]:
    """Calls whose raise time came: back to the normal class (their worker does it), if still running."""
    b = st.batch
    actions: list[Action] = []
    for rid, at in list(b.idle.items()):
        if at > now:
            continue
        del b.idle[rid]
        req = st.requests.get(rid)
        d = b.known.get(rid)
        if req is None or d is None or d in b.waiting or req.tasks[0].state is not TaskState.RUNNING:
            continue  # ended, or requeued (stopped or frozen): its next dispatch decides again
        granule = st.granules.get(req.tasks[0].granule_id)
        if granule is not None:
            actions.append(Kill(granule.host_id, granule.granule_id, "raised: its deadline needs the normal priority",
                                signal="NORMAL"))
            b.counts["raised"] += 1
    return actions
