"""Run the original's configurations of a workload with several schedulers, and tabulate them
against the original's makespans: the table of docs/evaluation.md."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError
from . import paper
from .run import RunOutcome, run


@dataclass
class Row:
    workload: str
    hosts: int
    jobs: int
    scheduler: str
    ours: RunOutcome
    original: float | None  # the original's makespan for that baseline, if it ran it


def sweep(traces: Path, workload: str, schedulers: Sequence[str], out: Path, slots: int = 8,
          compare: Path | None = None, arrivals: str = "original") -> list[Row]:
    configs = paper.CONFIGS.get(workload)
    if configs is None:
        raise ConfigError(f"no known configurations for workload {workload!r}: {', '.join(paper.CONFIGS)}")
    rows = []
    for hosts, jobs in configs:
        trace = traces / f"trace_{workload}_{jobs}_8.csv"
        for name in schedulers:
            outcome = run(trace, hosts, slots, name, "sim", out / f"{workload}_{jobs}_{hosts}" / name,
                          arrivals=arrivals)
            theirs = (paper.makespan(compare, paper.original_name(name, workload), hosts, workload, jobs)
                      if compare else None)
            rows.append(Row(workload, hosts, jobs, name, outcome, theirs))
    return rows


def table(rows: Sequence[Row]) -> str:
    """A Markdown table: makespan ours vs the original's, and our other metrics."""
    lines = ["| workload | hosts x 8 | jobs | scheduler | makespan ours (s) | makespan original (s) | ours / original "
             "| JCT median / p90 (s) | queue median (s) | idle % | links / optimum |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        m = r.ours.metrics
        ratio = f"{m.makespan / r.original:.2f}" if r.original else "-"
        orig = f"{r.original:.0f}" if r.original else "-"
        lk = ("-" if m.links_vs_optimum is None else "> 0 (optimum 0)" if m.links_vs_optimum == float("inf")
              else f"{m.links_vs_optimum:.2f}")
        lines.append(f"| {r.workload} | {r.hosts} | {r.jobs} | {r.scheduler} | {m.makespan:.0f} | {orig} | {ratio} "
                     f"| {m.jct_median:.0f} / {m.jct_p90:.0f} | {m.queue_median:.0f} | {m.idle_pct:.1f} | {lk} |")
    return "\n".join(lines) + "\n"
