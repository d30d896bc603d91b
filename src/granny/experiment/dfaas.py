"""The dfaas family: synthetic mixed traces of function calls (:mod:`granny.sim.dfaas`), each run with
``dfaas`` (delay tolerance honoured by the planner's batch queue) and ``granny`` (every call at once),
and their table: ``granny experiment sweep --workload dfaas``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..sim import Job, JobEvent
from ..sim.dfaas import deadline_outcomes, is_call, mixed_trace
from ..sim.trace import to_csv
from .metrics import quantile
from .run import RunOutcome, run

# (hosts, calls) of 8 slots; the load and the bursts as in TRACE
CONFIGS = [(8, 1600), (16, 3200), (32, 6400)]
TRACE = {"load": 0.7, "seed": 1, "burst_per_host": 8, "burst_every": 120.0}
SCHEDULERS = ("granny", "dfaas")


def trace_for(hosts: int, calls: int, slots: int = 8) -> list[Job]:
    return mixed_trace(calls, hosts * slots, load=TRACE["load"], seed=int(TRACE["seed"]),
                       burst=int(TRACE["burst_per_host"]) * hosts, burst_every=TRACE["burst_every"])


@dataclass
class CallSummary:
    ls_wait_p50: float
    ls_wait_p99: float
    dt_wait_median: float
    outcomes: dict[str, int]  # delay-tolerant calls: met, missed, refused, whenever
    peak_busy: int  # most slots busy at once

    def to_json(self) -> dict[str, Any]:
        return {"ls_wait_p50": self.ls_wait_p50, "ls_wait_p99": self.ls_wait_p99,
                "dt_wait_median": self.dt_wait_median, **self.outcomes, "peak_busy": self.peak_busy}


def summarise(jobs: Sequence[Job], events: Sequence[JobEvent]) -> CallSummary:
    submitted = {e.job_id: e.t for e in events if e.what == "submit"}
    started = {e.job_id: e.t for e in events if e.what == "start"}
    ended = {e.job_id: e.t for e in events if e.what == "end"}
    refused = {e.job_id for e in events if e.what == "fail"}
    calls = [j for j in jobs if is_call(j)]
    ls = [started[j.job_id] - submitted[j.job_id] for j in calls if j.tolerance == 0 and j.job_id in started]
    dt = [started[j.job_id] - submitted[j.job_id] for j in calls if j.tolerance != 0 and j.job_id in started]
    busy = peak = 0
    for e in sorted(events, key=lambda e: (e.t, e.what != "end")):  # ends first at the same instant
        if e.what == "start":
            busy += e.size
            peak = max(peak, busy)
        elif e.what == "end":
            busy -= e.size
    return CallSummary(quantile(ls, 0.5), quantile(ls, 0.99), quantile(dt, 0.5),
                       deadline_outcomes(jobs, submitted, ended, refused), peak)


def dfaas_sweep(out: Path, schedulers: Sequence[str] = SCHEDULERS) -> list[tuple[int, int, str, RunOutcome, CallSummary]]:
    rows = []
    for hosts, calls in CONFIGS:
        jobs = trace_for(hosts, calls)
        out.mkdir(parents=True, exist_ok=True)
        path = out / f"trace_dfaas_{calls}_{hosts}.csv"
        path.write_text(to_csv(jobs))
        for name in schedulers:
            outcome = run(path, hosts, 8, name, "sim", out / f"dfaas_{calls}_{hosts}" / name)
            rows.append((hosts, len(jobs), name, outcome, summarise(jobs, outcome.result.events)))
    return rows


def dfaas_table(rows: Sequence[tuple[int, int, str, RunOutcome, CallSummary]]) -> str:
    lines = ["| hosts x 8 | calls | scheduler | makespan (s) | latency-sensitive wait p50 / p99 (s) "
             "| delay-tolerant wait median (s) | deadlines met / missed / refused (whenever) | peak slots busy "
             "| idle % |", "|---|---|---|---|---|---|---|---|---|"]
    for hosts, calls, name, outcome, s in rows:
        o = s.outcomes
        lines.append(f"| {hosts} | {calls} | {name} | {outcome.metrics.makespan:.0f} | {s.ls_wait_p50:.1f} / "
                     f"{s.ls_wait_p99:.1f} | {s.dt_wait_median:.1f} | {o['met']} / {o['missed']} / {o['refused']} "
                     f"({o['whenever']}) | {s.peak_busy} | {outcome.metrics.idle_pct:.1f} |")
    return "\n".join(lines) + "\n"


def plot_dfaas(rows: Sequence[tuple[int, int, str, RunOutcome, CallSummary]], path: Path) -> Path:
    """The latency-sensitive calls' p99 wait and the delay-tolerant deadlines missed, per scheduler and size."""
    from .plots import COLOURS, _pyplot

    plt = _pyplot()
    sizes = sorted({hosts for hosts, *_ in rows})
    names = list(dict.fromkeys(name for _, _, name, _, _ in rows))
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.4))
    width = 0.8 / len(names)
    for j, name in enumerate(names):
        mine = {hosts: s for hosts, _, n, _, s in rows if n == name}
        xs = [i + (j - (len(names) - 1) / 2) * width for i in range(len(sizes))]
        ax1.bar(xs, [mine[h].ls_wait_p99 for h in sizes], width, color=COLOURS.get(name, "grey"), label=name)
        ax2.bar(xs, [mine[h].outcomes["missed"] for h in sizes], width, color=COLOURS.get(name, "grey"), label=name)
    for ax, title in ((ax1, "latency-sensitive calls: wait p99 (s)"), (ax2, "delay-tolerant deadlines missed")):
        ax.set_xticks(range(len(sizes)), [f"{h} hosts" for h in sizes])
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=7)
    fig.suptitle("dfaas: mixed trace (sim)", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
