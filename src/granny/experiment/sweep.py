"""Run the original's configurations of a workload with several schedulers, and tabulate them
against the original's makespans: the table of docs/evaluation.md."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError
from . import paper
from .metrics import Metrics
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
          compare: Path | None = None, arrivals: str = "original", reserve: float | None = None,
          migrate_every: float | None = None) -> list[Row]:
    """``reserve``: granny-migrate's (bin-pack-reserve's share of slots kept free); None: as the original's
    harness ran it with ``arrivals="original"`` (:data:`.paper.HARNESS_RESERVE`), else none.
    ``migrate_every``: granny-migrate's distance between migration points (None: :data:`.paper.POINTS`)."""
    configs = paper.CONFIGS.get(workload)
    if configs is None:
        raise ConfigError(f"no known configurations for workload {workload!r}: {', '.join(paper.CONFIGS)}")
    rows = []
    for hosts, jobs in configs:
        trace = traces / f"trace_{workload}_{jobs}_8.csv"
        for name in schedulers:
            keep, every = None, None
            if name == "granny-migrate":
                every = migrate_every if migrate_every is not None else paper.POINTS.get(workload)
                keep = reserve if reserve is not None else (
                    paper.HARNESS_RESERVE.get((name, workload)) if arrivals == "original" else None)
            outcome = run(trace, hosts, slots, name, "sim", out / f"{workload}_{jobs}_{hosts}" / name,
                          arrivals=arrivals, reserve=keep, migrate_every=every)
            theirs = (paper.makespan(compare, paper.original_name(name, workload), hosts, workload, jobs)
                      if compare else None)
            rows.append(Row(workload, hosts, jobs, name, outcome, theirs))
    return rows


def table(rows: Sequence[Row]) -> str:
    """A Markdown table: makespan ours vs the original's, and our other metrics. "links / batch" is the
    original's normalisation: the run's time-integrated cross-host links over those of the batch run of
    the same trace and cluster ("-" when batch was not run)."""
    lines = ["| workload | hosts x 8 | jobs | scheduler | makespan ours (s) | makespan original (s) | ours / original "
             "| JCT median / p90 (s) | queue median (s) | idle % | links / optimum | links / batch |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    batch = {(r.workload, r.hosts, r.jobs): r.ours.metrics.link_seconds for r in rows if r.scheduler == "batch"}
    for r in rows:
        m = r.ours.metrics
        ratio = f"{m.makespan / r.original:.2f}" if r.original else "-"
        orig = f"{r.original:.0f}" if r.original else "-"
        lk = ("-" if m.links_vs_optimum is None else "> 0 (optimum 0)" if m.links_vs_optimum == float("inf")
              else f"{m.links_vs_optimum:.2f}")
        base = batch.get((r.workload, r.hosts, r.jobs))
        vs_batch = f"{m.link_seconds / base:.2f}" if base else "-"
        lines.append(f"| {r.workload} | {r.hosts} | {r.jobs} | {r.scheduler} | {m.makespan:.0f} | {orig} | {ratio} "
                     f"| {m.jct_median:.0f} / {m.jct_p90:.0f} | {m.queue_median:.0f} | {m.idle_pct:.1f} | {lk} "
                     f"| {vs_batch} |")
    return "\n".join(lines) + "\n"


def live_table(outcomes: Sequence[tuple[RunOutcome, RunOutcome]]) -> str:
    """Markdown: each scheduler's live run beside the simulated run of the same scaled trace, and
    whether both rank the schedulers alike by makespan."""
    lines = ["| scheduler | makespan live (s) | makespan sim (s) | sim / live | JCT median live / sim (s) "
             "| queue median live / sim (s) | idle % live / sim | links / optimum live / sim | moves live / sim |",
             "|---|---|---|---|---|---|---|---|---|"]

    def lk(m: Metrics) -> str:
        r = m.links_vs_optimum
        return "-" if r is None else "inf" if r == float("inf") else f"{r:.2f}"

    for live, sim in outcomes:
        a, b = live.metrics, sim.metrics
        lines.append(f"| {live.scheduler} | {a.makespan:.1f} | {b.makespan:.1f} | {b.makespan / a.makespan:.2f} "
                     f"| {a.jct_median:.1f} / {b.jct_median:.1f} | {a.queue_median:.1f} / {b.queue_median:.1f} "
                     f"| {a.idle_pct:.1f} / {b.idle_pct:.1f} | {lk(a)} / {lk(b)} | {a.migrations} / {b.migrations} |")
    live_ms = {o.scheduler: o.metrics.makespan for o, _ in outcomes}
    sim_ms = {o.scheduler: s.metrics.makespan for o, s in outcomes}
    swapped = swaps(live_ms, sim_ms)
    lines.append("")
    lines.append(f"Ranking by makespan, live: {ranked(live_ms)}; sim: {ranked(sim_ms)}: "
                 + ("the same (no pair of schedulers in the opposite order)." if not swapped else
                    "NOT the same: " + ", ".join(f"{a} / {b} (sim {gap:.1%} apart)" for a, b, gap in swapped) + "."))
    return "\n".join(lines) + "\n"


def ranking(makespans: Sequence[tuple[str, float]]) -> list[str]:
    return [name for name, _ in sorted(makespans, key=lambda p: (p[1], p[0]))]


def ranked(makespans: dict[str, float]) -> str:
    """"slurm = granny < batch": by makespan, equal makespans (a simulator's ties) joined by "="."""
    order = ranking(list(makespans.items()))
    out = order[:1]
    for prev, name in zip(order, order[1:], strict=False):
        out.append(("= " if abs(makespans[name] - makespans[prev]) <= 1e-9 * max(1.0, makespans[prev]) else "< ")
                   + name)
    return " ".join(out)


def swaps(live: dict[str, float], sim: dict[str, float]) -> list[tuple[str, str, float]]:
    """Pairs of schedulers in the opposite order live and simulated (a tie on either side is no swap),
    with the simulator's relative gap between them."""
    out = []
    names = sorted(live)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            if (live[a] - live[b]) * (sim[a] - sim[b]) < 0:
                out.append((a, b, abs(sim[a] - sim[b]) / min(sim[a], sim[b])))
    return out
