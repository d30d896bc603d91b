"""The spot experiment (the original's Fig 8): makespan with evictions over makespan without, per
scheduler and cluster size, beside the original's ratios: ``granny experiment sweep --workload mpi-spot``.

Each pair is a scheduler without evictions and its counterpart under the eviction schedule:
granny / granny-spot (the original's granny / granny-ft), granny / granny-spot-late (the spot policy's
option to stay on a host under notice until the last point), slurm / slurm-ft, batch / batch-ft.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..sim import ORIGINAL_EVICTIONS, EvictionSchedule
from . import paper
from .run import RunOutcome, run

CONFIGS = [(4, 10), (8, 25), (16, 50), (24, 75), (32, 100)]  # the original's (VMs, jobs) for mpi-spot
TOP = 4.0  # the figure's y range: larger slowdowns are clipped and labelled
PAIRS = [("granny", "granny-spot", "granny-ft"), ("granny", "granny-spot-late", "granny-ft"), ("slurm", "slurm-ft", "slurm-ft"), ("batch", "batch-ft", "batch-ft")]


@dataclass
class Pair:
    hosts: int
    jobs: int
    base: str
    spot: str
    calm: RunOutcome  # without evictions
    evicted: RunOutcome  # under the schedule
    original: tuple[float, float] | None  # the original's makespans (without, with), if it ran both

    @property
    def slowdown(self) -> float:
        return self.evicted.metrics.makespan / self.calm.metrics.makespan

    @property
    def original_slowdown(self) -> float | None:
        return self.original[1] / self.original[0] if self.original else None


def spot_sweep(traces: Path, out: Path, slots: int = 8, compare: Path | None = None, arrivals: str = "original",
               evictions: EvictionSchedule = ORIGINAL_EVICTIONS,
               configs: Sequence[tuple[int, int]] = CONFIGS) -> list[Pair]:
    pairs = []
    for hosts, jobs in configs:
        trace = traces / f"trace_mpi-spot_{jobs}_8.csv"
        where = out / f"mpi-spot_{jobs}_{hosts}"
        for base, spot, theirs in PAIRS:
            calm = run(trace, hosts, slots, base, "sim", where / base, arrivals=arrivals)
            evicted = run(trace, hosts, slots, spot, "sim", where / spot, arrivals=arrivals, evictions=evictions)
            original = None
            if compare is not None:
                a = paper.makespan(compare, base, hosts, "mpi-spot", jobs)
                b = paper.makespan(compare, theirs, hosts, "mpi-spot", jobs)
                original = (a, b) if a and b else None
            pairs.append(Pair(hosts, jobs, base, spot, calm, evicted, original))
    return pairs


def spot_table(pairs: Sequence[Pair]) -> str:
    lines = ["| hosts x 8 | jobs | scheduler | makespan without (s) | with evictions (s) | slowdown ours "
             "| slowdown original | restarts | freezes / thaws | moves |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for p in pairs:
        m = p.evicted.metrics
        theirs = f"{p.original_slowdown:.2f}" if p.original_slowdown else "-"
        if p.original:
            theirs += f" ({p.original[0]:.0f} → {p.original[1]:.0f} s)"
        lines.append(f"| {p.hosts} | {p.jobs} | {p.spot} | {p.calm.metrics.makespan:.0f} | {m.makespan:.0f} "
                     f"| {p.slowdown:.2f} | {theirs} | {m.restarts} | {m.freezes} / {m.thaws} | {m.migrations} |")
    return "\n".join(lines) + "\n"


def plot_spot(pairs: Sequence[Pair], path: Path) -> Path:
    """The original's Fig 8 (left): slowdown per cluster size and scheduler, ours solid, the original's hatched."""
    from .plots import _pyplot

    plt = _pyplot()
    sizes = sorted({(p.hosts, p.jobs) for p in pairs})
    colours = {"granny-spot": "tab:green", "granny-spot-late": "tab:olive", "slurm-ft": "tab:orange", "batch-ft": "tab:blue"}
    fig, ax = plt.subplots(figsize=(9, 4))
    width = 0.11
    for k, (_, spot, _) in enumerate(PAIRS):
        for j, size in enumerate(sizes):
            p = next((q for q in pairs if (q.hosts, q.jobs) == size and q.spot == spot), None)
            if p is None:
                continue
            x = j + (2 * k - 3.5) * width
            ax.bar(x, min(p.slowdown, TOP), width, color=colours[spot], label=f"{spot} (ours)" if j == 0 else None)
            if p.slowdown > TOP:  # clipped, so that the others stay readable: the value is written on it
                ax.text(x, TOP * 0.97, f"{p.slowdown:.1f}", ha="center", va="top", fontsize=7, rotation=90)
            if p.original_slowdown and spot != "granny-spot-late":  # (the original's granny-ft: drawn once)
                ax.bar(x + width, p.original_slowdown, width, color=colours[spot], alpha=0.4, hatch="//",
                       label=f"{spot} (original)" if j == 0 else None)
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_ylim(0, TOP)
    ax.set_xticks(range(len(sizes)), [f"{h} VMs\n({n} jobs)" for h, n in sizes])
    ax.set_ylabel("makespan with evictions / without")
    ax.legend(fontsize=7, ncols=3)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
