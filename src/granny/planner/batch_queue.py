"""The batch queue's records: delay-tolerant calls (:class:`Delayed`) and their queue (:class:`Batch`).

Only what is computed from these records alone lives here: runtime estimates, latest starts, and the latest
resume times of paused calls. What acts on the planner state (admission, placement, preemption, fusion,
pausing) is in batch.py, fusion.py and pausing.py, which all read these records: a leaf, so that those
modules need not import one another for their types (issue 17).
Pure: no sockets, threads or clocks.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, SupportsIndex

from ..tunables import DEADLINE_MARGIN as MARGIN
from ..tunables import DEFAULT_FUSION_CAP as DEFAULT_CAP
from ..tunables import ESTIMATE_ALPHA as ALPHA
from ..tunables import ESTIMATE_BETA as BETA
from ..tunables import ESTIMATE_DEVS as DEVS
from ..tunables import RESUME_SAFETY as SAFETY


@dataclass(order=True)
class Delayed:
    deadline: float  # absolute, on the planner's clock; inf for "whenever"
    submitted: float
    seq: int  # submission order: ties broken, and no two entries equal (list.remove compares by value)
    req_id: str = field(compare=False)
    key: str = field(compare=False)  # what the runtime estimate is kept under (the function)
    started: float | None = field(default=None, compare=False)  # when it was placed
    fuse: bool = field(default=False, compare=False)  # an async call that may share a granule (fusion.py)
    granule: str = field(default="", compare=False)  # the fused granule it runs on ("" if not fused)
    ran: float = field(default=0.0, compare=False)  # seconds it ran before it was last paused (pausing.py)
    promoted: bool = field(default=False, compare=False)  # its latest start came: it goes first, at full priority
    preemptions: int = field(default=0, compare=False)  # times it was frozen, stopped (restarted) or paused for other work
    freezes: int = field(default=0, compare=False)  # of those, times it was frozen at a migration point (freezing.py)
    idle: bool = field(default=False, compare=False)  # dispatched in the idle class this time (idle.py)


class EdfQueue(list[Delayed]):
    """The batch queue (a list kept in deadline order by its users), counting its finite-deadline calls
    per function. bisect.insort uses ``insert`` on a list subclass."""

    def __init__(self) -> None:
        super().__init__()
        self.finite: Counter[str] = Counter()

    def _count(self, d: Delayed, by: int) -> None:
        if math.isfinite(d.deadline):
            self.finite[d.key] += by
            if not self.finite[d.key]:
                del self.finite[d.key]

    def insert(self, index: SupportsIndex, d: Delayed) -> None:
        super().insert(index, d)
        self._count(d, 1)

    def append(self, d: Delayed) -> None:
        super().append(d)
        self._count(d, 1)

    def pop(self, index: SupportsIndex = -1) -> Delayed:
        d = super().pop(index)
        self._count(d, -1)
        return d

    def remove(self, d: Delayed) -> None:
        super().remove(d)
        self._count(d, -1)

    def clear(self) -> None:
        super().clear()
        self.finite.clear()

    def __setitem__(self, *_: Any) -> None:  # every change goes through the methods above
        raise TypeError("EdfQueue is changed by insert/append/pop/remove/clear only")

    def __delitem__(self, *_: Any) -> None:
        raise TypeError("EdfQueue is changed by insert/append/pop/remove/clear only")


class Batch:
    def __init__(self, share: float = 1.0) -> None:
        self.share = share
        self.waiting: list[Delayed] = EdfQueue()  # earliest deadline first
        self.known: dict[str, Delayed] = {}  # every delay-tolerant request not ended yet (waiting or running)
        self.keys: set[str] = set()  # functions ever called delay-tolerant: their runtimes are observed
        self.runtimes: dict[str, float] = {}
        self.spread: dict[str, float] = {}  # mean deviation of each function's runtime (see guarded)
        self.counts: Counter[str] = Counter()
        self.now = 0.0
        self.seq = 0
        self.preempted_for: set[str] = set()  # latency-sensitive requests that already had calls stopped for them
        self.fuse_cap = DEFAULT_CAP
        self.fused: set[str] = set()  # granules running fused calls (each holds one slot)
        self.fused_calls = 0
        self.paused: dict[str, str] = {}  # paused calls (request -> granule), see pausing.py
        self.restored: dict[str, Delayed] = {}  # journaled calls of a planner restart, until its grace ends
        self.journaled: dict[str, tuple[float, float]] = {}  # the estimates (mean, spread) last journaled (deadlines.py)
        self.points: dict[str, float] = {}  # running calls with migration points -> seconds between them (freezing.py)
        self.freezing: dict[str, tuple[str, float]] = {}  # hinted to freeze at their next point -> (granule, by when)
        self.overrun_at: float | None = None  # the next guarded end of a running call that could give way (overrun.py)
        self.idle: dict[str, float] = {}  # calls dispatched at the idle class -> when to raise them (idle.py)

    def estimate(self, key: str) -> float:
        return self.runtimes.get(key, 0.0)

    def guarded(self, key: str) -> float:
        """The runtime the deadline guard allows for: the mean plus ``DEVS`` mean deviations.

        Why: calls of one function differ (their arguments), and on a loaded host they run longer and
        reach their slot later than the mean says. With the mean alone, a call whose latest start came
        was often still short of its deadline by a few tens of ms (benchmarks/dfaas_bench.py at load
        10-20: 8 of 8006 deadlines). Admission keeps the mean ("as far as the estimates know"); the
        guard (latest starts, pauses, freezes, restarts) starts and keeps calls that much earlier. The
        spread is journaled with the mean (deadlines.py): a restarted planner guards as before."""
        return self.runtimes.get(key, 0.0) + DEVS * self.spread.get(key, 0.0)

    def observe(self, key: str, seconds: float) -> None:
        old = self.runtimes.get(key)
        if old is not None:
            self.spread[key] = (1 - BETA) * self.spread.get(key, 0.0) + BETA * abs(seconds - old)
        self.runtimes[key] = seconds if old is None else (1 - ALPHA) * old + ALPHA * seconds

    def latest_start(self, d: Delayed) -> float:
        return d.deadline - max(0.0, self.guarded(d.key) - d.ran) - MARGIN  # ran: before it was frozen

    def next_deadline(self) -> float | None:
        starts = [self.latest_start(d) for d in self._first_due(math.inf)]
        resumes = next_resume(self) if self.paused else None
        starts += [by or self.now for _, by in self.freezing.values()]  # not frozen by then: passed over (freezing.py)
        if self.overrun_at is not None and self.overrun_at > self.now and self.waiting:  # calls wait behind it (overrun.py)
            starts.append(self.overrun_at)
        if self.idle:
            starts.append(min(self.idle.values()))
        return min([*starts, resumes] if resumes is not None else starts, default=None)

    def _first_due(self, until: float) -> list[Delayed]:
        """The waiting calls (in deadline order) up to the first whose deadline shows that neither it nor
        any later call can have a latest start before min(``until``, the earliest latest start so far):
        latest starts are at least deadline - the longest estimate - MARGIN. Usually a few calls, not the queue."""
        longest = max((self.guarded(k) for k in getattr(self.waiting, "finite", self.keys)), default=0.0)
        out: list[Delayed] = []
        bound = until
        for d in self.waiting:
            if not math.isfinite(d.deadline) or d.deadline - longest - MARGIN > bound:
                break
            out.append(d)
            bound = min(bound, self.latest_start(d)) if until == math.inf else bound
        return out

    def ticking(self) -> bool:
        """Whether a tick has something to do here: calls waiting, paused, hinted to freeze, or idle (idle.py)."""
        return bool(self.waiting or self.paused or self.freezing or self.idle)

    def running(self) -> int:
        """Slots taken by delay-tolerant calls: a fused granule's calls take one between them."""
        return len(self.known) - len(self.waiting) - self.fused_calls + len(self.fused)



def remaining(b: Batch, d: Delayed) -> float:
    """Estimated seconds of work left (the time it ran so far is banked in ``d.ran``)."""
    running = 0.0 if d.req_id in b.paused or d.started is None else max(0.0, b.now - d.started)
    return max(0.0, b.guarded(d.key) - d.ran - running)


def latest_resume(b: Batch, d: Delayed) -> float:
    return d.deadline - SAFETY * remaining(b, d) - MARGIN


def next_resume(b: Batch) -> float | None:
    """The earliest latest resume time of the paused calls (pausing.py continues each by then)."""
    due = [latest_resume(b, b.known[rid]) for rid in b.paused if math.isfinite(b.known[rid].deadline)]
    return min(due, default=None)
