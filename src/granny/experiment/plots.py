"""The figures of the cluster evaluation, ours beside the original's: ``granny experiment plot``.

- ``makespan_<workload>.png``: makespan by cluster size, a bar per scheduler, ours solid and the
  original's hatched beside it;
- ``timeline_<workload>_<hosts>.png``: idle cores and cross-host links over time per scheduler,
  the original's dashed;
- ``jct_cdf_<workload>_<hosts>.png``: the CDF of job completion times.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from . import paper
from .metrics import series
from .run import StoredRun, read_runs

COLOURS = {"batch": "tab:blue", "slurm": "tab:orange", "granny": "tab:green", "granny-migrate": "tab:red",
           "granny-elastic": "tab:purple", "dfaas": "tab:brown"}


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ConfigError("plots need matplotlib: pip install 'granny[test]'") from None
    return plt


def _key(run: StoredRun) -> tuple[str, int, int] | None:
    name = paper.trace_name(run.meta.get("trace") or "")
    return (name[0], name[1], run.cluster.hosts) if name else None


def plot(root: Path, compare: Path | None = None, out: Path | None = None) -> list[Path]:
    runs = read_runs(root)
    out = out or root / "plots"
    out.mkdir(parents=True, exist_ok=True)
    by_workload: dict[str, dict[tuple[int, int], dict[str, StoredRun]]] = defaultdict(lambda: defaultdict(dict))
    for r in runs:
        if r.meta.get("mode") == "sim" and (r.path.parent / "run.json").is_file():
            continue  # the simulated twin of a live run (``<run>/sim``): the live run is drawn
        key = _key(r)
        if key is not None:
            by_workload[key[0]][(key[2], key[1])][r.meta["scheduler"]] = r
    files: list[Path] = []
    for workload, configs in sorted(by_workload.items()):
        files.append(_makespans(workload, configs, compare, out))
        for (hosts, jobs), scheds in sorted(configs.items()):
            files.append(_timeline(workload, hosts, jobs, scheds, compare, out))
            files.append(_cdf(workload, hosts, jobs, scheds, out))
    return files


def _makespans(workload: str, configs: dict[tuple[int, int], dict[str, StoredRun]], compare: Path | None,
               out: Path) -> Path:
    plt = _pyplot()
    names = sorted({s for c in configs.values() for s in c}, key=lambda s: list(COLOURS).index(s) if s in COLOURS else 99)
    keys = sorted(configs)
    fig, ax = plt.subplots(figsize=(max(6, 1.8 * len(keys)), 4.4))
    width = 0.8 / (2 * len(names) if compare else len(names))
    for i, (hosts, jobs) in enumerate(keys):
        for j, name in enumerate(names):
            run = configs[(hosts, jobs)].get(name)
            slot = j * (2 if compare else 1)
            x = i + (slot - (len(names) * (2 if compare else 1) - 1) / 2) * width
            if run is not None:
                ax.bar(x, run.metrics["makespan"], width, color=COLOURS.get(name, "grey"),
                       label=f"{name} (ours, sim)" if i == 0 else None)
            if compare:
                theirs = paper.makespan(compare, paper.original_name(name, workload), hosts, workload, jobs)
                if theirs is not None:
                    ax.bar(x + width, theirs, width, color="white", edgecolor=COLOURS.get(name, "grey"), hatch="//",
                           label=f"{name} (original)" if i == 0 else None)
    ax.set_xticks(range(len(keys)), [f"{h} hosts\n{j} jobs" for h, j in keys])
    ax.set_ylabel("makespan (s)")
    ax.set_title(f"{workload}: makespan by cluster size")
    ax.legend(fontsize=7, ncol=4, loc="upper center", bbox_to_anchor=(0.5, -0.2))
    fig.tight_layout()
    path = out / f"makespan_{workload}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _timeline(workload: str, hosts: int, jobs: int, scheds: dict[str, StoredRun], compare: Path | None,
              out: Path) -> Path:
    plt = _pyplot()
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(7, 5), sharex=True)
    for name, run in scheds.items():
        steps = series(run.events, run.cluster)
        t = [s[0] for s in steps]
        colour = COLOURS.get(name, "grey")
        ax1.step(t, [run.cluster.capacity - s[1] for s in steps], where="post", color=colour, label=f"{name} (ours)")
        ax2.step(t, [s[2] for s in steps], where="post", color=colour, label=f"{name} (ours)")
        if compare:
            base = paper.original_name(name, workload)
            idle = paper.idle_cores(compare, base, hosts, workload, jobs)
            if idle:
                ax1.plot([p[0] for p in idle], [p[1] for p in idle], "--", color=colour, alpha=0.6, lw=0.8,
                         label=f"{name} (original)")
            lk = paper.cross_links(compare, base, hosts, workload, jobs)
            if lk:
                ax2.step([p[0] for p in lk], [p[1] for p in lk], "--", where="post", color=colour, alpha=0.6, lw=0.8,
                         label=f"{name} (original)")
    ax1.set_ylabel("idle slots")
    ax2.set_ylabel("cross-host links")
    ax2.set_xlabel("time (s)")
    slots = next(iter(scheds.values())).cluster.slots
    ax1.set_title(f"{workload}, {jobs} jobs on {hosts} hosts x {slots} slots")
    ax1.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    path = out / f"timeline_{workload}_{hosts}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _cdf(workload: str, hosts: int, jobs: int, scheds: dict[str, StoredRun], out: Path) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.4))
    for name, run in scheds.items():
        cdf = run.metrics.get("jct_cdf") or []
        ax.step([p[0] for p in cdf], [p[1] for p in cdf], where="post", color=COLOURS.get(name, "grey"), label=name)
    ax.set_xlabel("job completion time (s)")
    ax.set_ylabel("CDF")
    ax.set_title(f"{workload}, {jobs} jobs on {hosts} hosts (sim)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = out / f"jct_cdf_{workload}_{hosts}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
