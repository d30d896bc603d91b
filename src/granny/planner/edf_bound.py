"""A fast, sufficient admission test for a delay-tolerant call (batch.refusal's first step).

Theory of operation: admission replays earliest-deadline-first list scheduling of every waiting call on
the batch slots (batch.refusal), O(n log n) in the calls waiting, on the planner's event loop at every
submission, which latency-sensitive work waits behind. Graham's bound for list scheduling gives a
sufficient test in O(functions + granules): on m slots whose free times start at f_1..f_m, a call starts
no later than the mean of the slots' free times at its turn, (Σf + the work listed before it) / m, so
it ends by (Σf + W) / m + its own runtime, W being the work of every finite-deadline call that waits.
Inserting the new call (runtime e, deadline D) into the EDF order leaves the calls before it as they
were and delays each later one by at most e; each later call has a deadline ≥ D. So if
(Σf + W + e) / m + (the longest runtime among them) + margin ≤ D, the new call and every call after it
meets its deadline: admit without the replay. Otherwise the exact replay decides (nothing is refused
that the replay would admit). "Whenever" calls come last in the order and delay no deadline: left out.

:class:`batch_queue.EdfQueue` keeps, per function, how many finite-deadline calls wait, so W and the longest
runtime cost one pass over the functions, not over the queue.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .batch_queue import Delayed, EdfQueue

if TYPE_CHECKING:
    from .protocols import BatchedState as PlannerState  # what admits() uses of the state


def admits(st: PlannerState, new: Delayed, own: float, slots: int, margin: float) -> bool:
    """True: ``new`` (runtime estimate ``own``) and every call after it meet their deadlines (see above).
    False: not known; the exact replay decides."""
    b = st.batch
    queue = b.waiting
    if not isinstance(queue, EdfQueue) or b.paused:
        return False  # (a paused call lent its slot and resumes at the first that frees: the replay knows it)
    ends: list[float] = []
    for granule in st.granules.values():
        for rid, _ in granule.tasks:
            d = b.known.get(rid)
            if d is not None and d.started is not None:
                ends.append(max(b.now, d.started + b.estimate(d.key) - d.ran))
    if len(ends) != len(b.known) - len(queue):
        return False  # a call runs that no granule shows (promoted and queued, say): the replay knows it
    ends.sort()
    free = (ends + [b.now] * slots)[:slots] if len(ends) < slots else ends[:slots]
    work = own
    longest = own
    for key, n in queue.finite.items():
        e = b.estimate(key)
        work += n * e
        longest = max(longest, e)
    return (sum(free) + work) / slots + longest + margin <= new.deadline
