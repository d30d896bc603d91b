"""Cluster metrics from a run's job events (:class:`granny.sim.JobEvent`), simulated or live.

- makespan: first arrival to last end;
- job completion time (JCT, arrival to end): median, p90, and the CDF;
- time in queue (arrival to start);
- idle slot-seconds as % of capacity over the makespan (a slot is idle when no rank runs on it;
  under whole-host allocation the unused slots of a job's hosts count as idle too);
- cross-host links over time, and normalised to the optimum: Σ links of the running jobs
  against Σ links each would have on the fewest hosts (``links(optimal_counts)``), both
  integrated over time, over the same run (``link_seconds`` is the first integral). The original
  normalised instead to another run's, its batch baseline's (:func:`.sweep.table` shows that too);
  a job split over more hosts runs longer, so over the same run the optimum's integral grows with it;
  against batch's run, whose jobs all run at their optimal split, it does not;
- migrations, freezes, thaws and elastic resizes (``move``, ``freeze``, ``thaw``, ``resize`` events), and restarts
  (``evicted``: a job lost ranks to an eviction and runs again from the start).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from ..planner.policies import links
from ..sim import Cluster, JobEvent, optimal_counts


@dataclass
class JobTimes:
    job_id: int
    size: int
    kind: str
    submit: float
    start: float | None = None
    end: float | None = None
    failed: bool = False


@dataclass
class Metrics:
    jobs: int
    finished: int
    failed: int
    makespan: float
    jct_median: float
    jct_p90: float
    queue_median: float
    queue_mean: float
    idle_pct: float  # idle slot-seconds, % of capacity x makespan
    links_vs_optimum: float | None  # None: no job needed a cross-host link
    migrations: int
    freezes: int
    jct_cdf: list[tuple[float, float]] = field(default_factory=list)
    restarts: int = 0  # jobs that lost ranks to an eviction and ran again from the start
    thaws: int = 0
    resizes: int = 0  # elastic teams that grew or shrank
    link_seconds: float = 0.0  # cross-host links integrated over time (links_vs_optimum's numerator)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def job_times(events: Sequence[JobEvent]) -> dict[int, JobTimes]:
    jobs: dict[int, JobTimes] = {}
    for e in events:
        if e.what == "submit":
            jobs[e.job_id] = JobTimes(e.job_id, e.size, e.kind, e.t)
        elif e.job_id in jobs:
            j = jobs[e.job_id]
            if e.what == "start":
                j.start = e.t
            elif e.what == "end":
                j.end = e.t
            elif e.what == "fail":
                j.failed = True
    return jobs


def quantile(values: Sequence[float], q: float) -> float:
    if not values:
        return math.nan
    s = sorted(values)
    pos = (len(s) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def series(events: Sequence[JobEvent], cluster: Cluster) -> list[tuple[float, int, int, int]]:
    """Step function of (t, busy slots, cross-host links, optimal links) after each event."""
    now: dict[int, tuple[int, int, int]] = {}  # job -> (slots, links, optimal links)
    out: list[tuple[float, int, int, int]] = []
    for e in sorted(events, key=lambda e: e.t):
        if e.what in ("start", "move", "thaw", "resize"):
            n = sum(c for _, c in e.counts) or e.size  # an elastic team's size changes as it runs
            now[e.job_id] = (n, links(c for _, c in e.counts), links(optimal_counts(n, cluster.slots)))
        elif e.what in ("end", "fail", "freeze", "evicted"):
            now.pop(e.job_id, None)
        else:
            continue
        point = (e.t, sum(v[0] for v in now.values()), sum(v[1] for v in now.values()), sum(v[2] for v in now.values()))
        if out and out[-1][0] == e.t:
            out[-1] = point
        else:
            out.append(point)
    return out


def compute(events: Sequence[JobEvent], cluster: Cluster) -> Metrics:
    jobs = job_times(events)
    done = [j for j in jobs.values() if j.end is not None]
    first = min((j.submit for j in jobs.values()), default=0.0)
    last = max((j.end for j in done if j.end is not None), default=first)
    makespan = last - first
    jct = [j.end - j.submit for j in done if j.end is not None]
    queue = [j.start - j.submit for j in jobs.values() if j.start is not None]
    steps = series(events, cluster)
    busy = links_int = opt_int = 0.0
    for (t0, b, lk, opt), (t1, *_) in zip(steps, steps[1:], strict=False):
        busy += b * (t1 - t0)
        links_int += lk * (t1 - t0)
        opt_int += opt * (t1 - t0)
    capacity = cluster.capacity * makespan
    idle = 100.0 * (1 - busy / capacity) if capacity > 0 else 0.0
    ratio = links_int / opt_int if opt_int > 0 else (None if links_int == 0 else math.inf)
    cdf = [(x, (i + 1) / len(jct)) for i, x in enumerate(sorted(jct))]
    return Metrics(
        jobs=len(jobs), finished=len(done), failed=sum(1 for j in jobs.values() if j.failed), makespan=makespan,
        jct_median=quantile(jct, 0.5), jct_p90=quantile(jct, 0.9), queue_median=quantile(queue, 0.5),
        queue_mean=sum(queue) / len(queue) if queue else math.nan, idle_pct=idle, links_vs_optimum=ratio,
        migrations=sum(1 for e in events if e.what == "move"), freezes=sum(1 for e in events if e.what == "freeze"),
        jct_cdf=cdf, restarts=sum(1 for e in events if e.what == "evicted"),
        thaws=sum(1 for e in events if e.what == "thaw"), resizes=sum(1 for e in events if e.what == "resize"),
        link_seconds=links_int)
