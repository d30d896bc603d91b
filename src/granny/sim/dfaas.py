"""dfaas: delay-tolerant function calls in the simulator, and their synthetic mixed trace.

**The trace** (:func:`mixed_trace`, written by ``granny experiment trace``): single-slot function
calls arriving as a Poisson process at the rate that keeps ``load`` of the cluster's slots busy on
average. Each call is one of four functions whose calls run a fixed time (a ``spin(ms)`` as in
``benchmarks/dfaas_bench.py``: ``fn2``, ``fn5``, ``fn10``, ``fn20`` spin 2, 5, 10 and 20 s), drawn
uniformly. 20% are latency-sensitive (tolerance 0); of the delay-tolerant 80%: 15% run "whenever"
(-1), 5% have a tight deadline (their runtime plus 2-10 s: the deadline guard has to act), and 80%
a deadline 60-600 s after submission. Bursts: every ``burst_every`` seconds ``burst`` more
delay-tolerant calls arrive within a second (0: none), as a nightly batch would. The same seed
gives the same trace; the CSV adds a ``Tolerance`` column (seconds; 0 latency-sensitive, -1
whenever) to the original's four.

**The schedulers**: ``dfaas`` submits each call with its tolerance, so the planner's batch queue
(:mod:`granny.planner.batch`: EDF order, admission refusing what cannot be met, the deadline guard
promoting calls whose latest start came) decides when delay-tolerant calls run, in the slots the
latency-sensitive ones leave free. The baselines run the same trace with every call submitted
latency-sensitive (its tolerance ignored): ``granny`` (bin-pack, FIFO).

**The driver** does what the planner server does for these calls: on each call's end it feeds the
function's runtime to the state's estimates (``deadlines.observe_runtime``: ``batch.observe``) and
moves the batch queue's clock. The runtime model has one kind per function, ``a`` its spin time
(:func:`function_model`). Pure: no clocks or I/O.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from .runtime import KindModel, RuntimeModel
from .trace import Job

FUNCTIONS = {"fn2": 2.0, "fn5": 5.0, "fn10": 10.0, "fn20": 20.0}  # function -> seconds each call spins


def function_model(scale: float = 1.0) -> RuntimeModel:
    """Each function's calls run exactly their spin time (x ``scale``: a live replay's scaled calls), on one slot."""
    return RuntimeModel({name: KindModel(seconds * scale, 0.0, 0.0, "the call's spin time (synthetic)")
                         for name, seconds in FUNCTIONS.items()})


def with_functions(model: RuntimeModel, scale: float = 1.0) -> RuntimeModel:
    """``model`` and the synthetic functions' kinds (their calls' seconds x ``scale``)."""
    return RuntimeModel({**model.kinds, **function_model(scale).kinds}, model.aliases)


def is_call(job: Job) -> bool:
    return job.kind in FUNCTIONS


def mixed_trace(calls: int, slots: int, load: float = 0.8, seed: int = 1, burst: int = 0,
                burst_every: float = 0.0) -> list[Job]:
    """``calls`` calls (plus bursts) for a cluster of ``slots`` slots in all, ``load`` busy on average."""
    rng = random.Random(seed)
    names = list(FUNCTIONS)
    mean = sum(FUNCTIONS.values()) / len(FUNCTIONS)
    rate = load * slots / mean  # calls per second

    def tolerance(name: str) -> float:
        if rng.random() < 0.2:
            return 0.0
        kind = rng.random()
        if kind < 0.15:
            return -1.0
        if kind < 0.20:
            return round(FUNCTIONS[name] + rng.uniform(2.0, 10.0), 3)
        return round(rng.uniform(60.0, 600.0), 3)

    out: list[Job] = []
    clock = 0.0
    next_burst = burst_every if burst and burst_every > 0 else float("inf")
    while len(out) < calls:
        clock += rng.expovariate(rate)
        while next_burst <= clock:
            for _ in range(burst):
                name = rng.choice(names)
                tol = rng.choice([-1.0, round(rng.uniform(60.0, 600.0), 3)])
                out.append(Job(len(out), name, 1, round(next_burst + rng.uniform(0.0, 1.0), 3), tol))
            next_burst += burst_every
        name = rng.choice(names)
        out.append(Job(len(out), name, 1, round(clock, 3), tolerance(name)))
    out = sorted(out[:calls], key=lambda j: (j.arrival, j.job_id))  # (a burst may overshoot)
    return [Job(i, j.kind, j.size, j.arrival, j.tolerance) for i, j in enumerate(out)]


def deadline_outcomes(jobs: Sequence[Job], submitted: dict[int, float], ended: dict[int, float],
                      refused: set[int]) -> dict[str, int]:
    """Delay-tolerant calls by outcome: met (ended by submission + tolerance), missed, refused, whenever."""
    out = {"met": 0, "missed": 0, "refused": 0, "whenever": 0}
    for job in jobs:
        if job.tolerance == 0 or not is_call(job):
            continue
        if job.job_id in refused:
            out["refused"] += 1
        elif job.tolerance < 0:
            out["whenever"] += 1
        elif job.job_id in ended:
            out["met" if ended[job.job_id] <= submitted[job.job_id] + job.tolerance + 1e-9 else "missed"] += 1
    return out
