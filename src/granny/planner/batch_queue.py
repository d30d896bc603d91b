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

DEFAULT_CAP = 32  # calls in flight on one fused granule (Config.fusion_cap; see fusion.py)
SAFETY = 2.0  # a resumed call is given this many times its remaining runtime before its deadline (pausing.py)
MARGIN = 0.05  # seconds kept for dispatch and the result's way back when guarding a deadline
ALPHA = 0.3  # weight of the newest observation in a function's runtime estimate


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
    preemptions: int = field(default=0, compare=False)  # times it was stopped (restarted) or paused for other work


class Batch:
    def __init__(self, share: float = 1.0) -> None:
        self.share = share
        self.waiting: list[Delayed] = []  # earliest deadline first
        self.known: dict[str, Delayed] = {}  # every delay-tolerant request not ended yet (waiting or running)
        self.keys: set[str] = set()  # functions ever called delay-tolerant: their runtimes are observed
        self.runtimes: dict[str, float] = {}
        self.counts: Counter[str] = Counter()
        self.now = 0.0
        self.seq = 0
        self.preempted_for: set[str] = set()  # latency-sensitive requests that already had calls stopped for them
        self.fuse_cap = DEFAULT_CAP
        self.fused: set[str] = set()  # granules running fused calls (each holds one slot)
        self.fused_calls = 0
        self.paused: dict[str, str] = {}  # paused calls (request -> granule), see pausing.py
        self.restored: dict[str, Delayed] = {}  # journaled calls of a planner restart, until its grace ends
        self.journaled: dict[str, float] = {}  # the runtime estimates last written to the journal (deadlines.py)

    def estimate(self, key: str) -> float:
        return self.runtimes.get(key, 0.0)

    def observe(self, key: str, seconds: float) -> None:
        old = self.runtimes.get(key)
        self.runtimes[key] = seconds if old is None else (1 - ALPHA) * old + ALPHA * seconds

    def latest_start(self, d: Delayed) -> float:
        return d.deadline - self.estimate(d.key) - MARGIN

    def next_deadline(self) -> float | None:
        starts = [self.latest_start(d) for d in self.waiting if math.isfinite(d.deadline)]
        resumes = next_resume(self) if self.paused else None
        return min([*starts, resumes] if resumes is not None else starts, default=None)

    def running(self) -> int:
        """Slots taken by delay-tolerant calls: a fused granule's calls take one between them."""
        return len(self.known) - len(self.waiting) - self.fused_calls + len(self.fused)



def remaining(b: Batch, d: Delayed) -> float:
    """Estimated seconds of work left (the time it ran so far is banked in ``d.ran``)."""
    running = 0.0 if d.req_id in b.paused or d.started is None else max(0.0, b.now - d.started)
    return max(0.0, b.estimate(d.key) - d.ran - running)


def latest_resume(b: Batch, d: Delayed) -> float:
    return d.deadline - SAFETY * remaining(b, d) - MARGIN


def next_resume(b: Batch) -> float | None:
    """The earliest latest resume time of the paused calls (pausing.py continues each by then)."""
    due = [latest_resume(b, b.known[rid]) for rid in b.paused if math.isfinite(b.known[rid].deadline)]
    return min(due, default=None)
