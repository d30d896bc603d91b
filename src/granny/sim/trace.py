"""Job traces: what arrives when. The original's CSV format, and synthetic Poisson traces.

A trace row is ``TaskId, App, Size, InterArrivalTimeSecs`` (the GRANNY artifact's format): the job's
id, its kind (``mpi-locality``, ``mpi-migrate``, ``omp-elastic``...), its number of ranks or
threads, and the seconds since the previous job arrived; an optional ``Tolerance`` column gives a
function call's delay tolerance (the dfaas family, :mod:`.dfaas`). Pure: text in, jobs out.
"""

from __future__ import annotations

import csv
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ..errors import ConfigError


@dataclass(frozen=True)
class Job:
    job_id: int
    kind: str  # the trace's App column: which runtime model applies
    size: int  # ranks (MPI) or threads (OpenMP)
    arrival: float  # seconds from the start of the run
    tolerance: float = 0.0  # a function call's delay tolerance (s; 0 latency-sensitive, -1 whenever): sim/dfaas.py


def parse_trace(lines: Iterable[str]) -> list[Job]:
    """Jobs from the lines of a trace CSV (with its header)."""
    rows = csv.DictReader(lines)
    need = {"TaskId", "App", "Size", "InterArrivalTimeSecs"}
    if rows.fieldnames is None or not need <= set(rows.fieldnames):
        raise ConfigError(f"a trace needs the columns {', '.join(sorted(need))}; got {rows.fieldnames}")
    jobs: list[Job] = []
    clock = 0.0
    for line, row in enumerate(rows, start=2):
        try:
            size, gap = int(row["Size"]), float(row["InterArrivalTimeSecs"])
            job_id = int(row["TaskId"])
            tolerance = float(row.get("Tolerance") or 0.0)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"trace line {line}: {exc}") from None
        if size < 1 or gap < 0:
            raise ConfigError(f"trace line {line}: size must be >= 1 and the gap >= 0 (got {size}, {gap})")
        clock += gap
        jobs.append(Job(job_id, row["App"], size, clock, tolerance))
    return jobs


def poisson_trace(jobs: int, rate: float, kind: str, sizes: Sequence[int], seed: int = 0) -> list[Job]:
    """``jobs`` jobs of ``kind`` arriving as a Poisson process of ``rate`` jobs/s, sizes drawn
    uniformly from ``sizes``; the same seed gives the same trace."""
    rng = random.Random(seed)
    clock = 0.0
    out: list[Job] = []
    for i in range(jobs):
        if i:
            clock += rng.expovariate(rate)
        out.append(Job(i, kind, rng.choice(list(sizes)), round(clock, 3)))
    return out


def to_csv(jobs: Sequence[Job]) -> str:
    """The trace as the original's CSV (inter-arrival gaps), so a synthetic trace can be replayed; with a
    ``Tolerance`` column when some job has one."""
    tolerant = any(job.tolerance for job in jobs)
    lines = ["TaskId,App,Size,InterArrivalTimeSecs" + (",Tolerance" if tolerant else "")]
    last = 0.0
    for job in jobs:
        lines.append(f"{job.job_id},{job.kind},{job.size},{round(job.arrival - last, 6):g}"
                     + (f",{job.tolerance:g}" if tolerant else ""))
        last = job.arrival
    return "\n".join(lines) + "\n"
