"""Sim against live on scaled traces (issue 13, item 4; needs root): makespan within 10%, same ranking.

    .venv/bin/python benchmarks/sim_vs_live.py [--traces mpi-migrate_10,mpi-locality_10,omp-elastic_10]
                                               [--hosts 4] [--slots 2] [--reps 1]

For each trace of the original's artifact, ``granny experiment sweep --mode testbed`` runs it scaled
down (sizes x slots/8, arrival times x our jobs' runtime over the original's) with batch, slurm,
granny and granny-migrate (and granny-elastic on the omp traces) as real jobs on a testbed of
``--hosts`` x ``--slots`` (one testbed per trace and rep), and simulates the same scaled trace with the
testbed-calibrated runtime model (``src/granny/sim/calibration/testbed.json``, from
``benchmarks/calibrate_testbed.py``) and its contention model (jobs sharing the machine's cores;
``granny.sim.contention``), given the other work measured on the machine during each live run
(``granny.experiment.loadprobe``); the simulation without the contention model (jobs as if alone, as
before it existed) is reported beside it. Writes
``benchmarks/results/sim_vs_live.json`` and ``.md``, and each run's directory under
``benchmarks/results/sim_vs_live/``.

Ranking (``granny.experiment.ranking``): live makespans of one scheduler vary from rep to rep, so
the live runs of a trace give a partial order: a scheduler is faster than another only if it is in
every rep (each rep runs every scheduler back to back), each time by more than 2%; the rest are tied. The simulator agrees
when its order keeps every pair the live runs order (pairs tied live may come in any order). The
strict per-rep order is reported too ("same ranking"), for comparison with earlier runs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from granny.experiment import load_trace
from granny.experiment.live import LIVE_SCHEDULERS, schedulers_for
from granny.experiment.ranking import agree, live_order
from granny.experiment.run import run_testbed
from granny.experiment.sweep import live_table, ranked, swaps

PREFIX = os.environ.get("GRANNY_TEST_NETNS_PREFIX", "gsvl")
SUBNET = os.environ.get("GRANNY_TEST_SUBNET", "10.93.0.0/24")
PAPER = Path(os.environ.get("GRANNY_PAPER_DATA", "/work/shared/paper-data")) / "traces"
RESULTS = Path(__file__).resolve().parent / "results"
TIE = 0.05


def plot(report: dict[str, Any], path: Path) -> Path:
    """Makespan per scheduler, live (solid) beside simulated (hatched), one panel per trace (first rep)."""
    from granny.experiment.plots import COLOURS, _pyplot

    plt = _pyplot()
    runs = [r for r in report["runs"] if r["rep"] == 0]
    fig, axes = plt.subplots(1, len(runs), figsize=(4.2 * len(runs), 3.4), squeeze=False)
    for ax, run in zip(axes[0], runs, strict=True):
        names = list(run["live"])
        for i, name in enumerate(names):
            colour = COLOURS.get(name, "grey")
            ax.bar(i - 0.2, run["live"][name], 0.4, color=colour, label="live" if i == 0 else None)
            ax.bar(i + 0.2, run["sim"][name], 0.4, color=colour, alpha=0.45, hatch="//",
                   label="sim" if i == 0 else None)
            ax.text(i, max(run["live"][name], run["sim"][name]), f"{run['ratio'][name]:.2f}", ha="center",
                    va="bottom", fontsize=7)
        ax.set_xticks(range(len(names)), names, fontsize=7)
        ax.set_title(f"{run['trace']} on {report['hosts']} x {report['slots']}", fontsize=9)
        ax.set_ylabel("makespan (s)")
        ax.legend(fontsize=7)
    fig.suptitle("live replay on the testbed (solid) vs the simulator (hatched); sim / live above the bars",
                 fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def common_sim(trace: Path, loads: list[dict[str, Any]], names: list[str], hosts: int,
               slots: int) -> tuple[dict[str, float], float]:
    """Each scheduler's simulated makespan of the scaled trace at one background load (the median of the
    live runs'), as the replay simulates it; and that load."""
    from granny.experiment.calibration import TESTBED, load_model, measured
    from granny.experiment.metrics import compute
    from granny.experiment.replay import scaled, simulate
    from granny.experiment.run import load_trace

    backgrounds = [ld["background"] for per_run in loads for ld in per_run.values() if ld]
    common = statistics.median(backgrounds) if backgrounds else 0.0
    _, jobs = scaled(load_trace(trace), slots)
    model, ids = load_model(TESTBED), [f"h{i + 1}" for i in range(hosts)]
    out = {}
    for name in names:
        r = simulate(jobs, name, hosts, slots, model, ids, measured("move_cost"), measured("team_delay"), background=common)
        out[name] = compute(r.events, r.cluster).makespan
    return out, common


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--traces", default="mpi-migrate_10,mpi-locality_10,omp-elastic_10")
    ap.add_argument("--hosts", type=int, default=4)
    ap.add_argument("--slots", type=int, default=2)
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--schedulers", default=",".join(LIVE_SCHEDULERS))
    ap.add_argument("--out", default=str(RESULTS / "sim_vs_live.json"))
    ap.add_argument("--plot", default=str(Path(__file__).resolve().parents[1] / "docs" / "img" / "eval_sim_vs_live.png"))
    ap.add_argument("--plot-only", action="store_true", help="redraw the figure from --out")
    ap.add_argument("--runs", default=str(RESULTS / "sim_vs_live"), help="where each run's directory goes")
    args = ap.parse_args()
    if args.plot_only:
        print(plot(json.loads(Path(args.out).read_text()), Path(args.plot)))
        return 0
    names = args.schedulers.split(",")
    report: dict[str, Any] = {"when": time.strftime("%Y-%m-%d %H:%M:%S"), "hosts": args.hosts, "slots": args.slots,
                              "runs": []}
    md = [f"# Sim against live on the testbed ({args.hosts} hosts x {args.slots} slots)", ""]
    for name in args.traces.split(","):
        trace = PAPER / f"trace_{name}_8.csv"
        for rep in range(args.reps):
            where = Path(args.runs) / f"{name}-r{rep}"
            print(f"[sim-vs-live] {name} rep {rep}", file=sys.stderr, flush=True)
            mine = [n for n in schedulers_for(load_trace(trace)) if n in names]  # (elastic: OpenMP-style jobs only)
            pairs = run_testbed(trace, args.hosts, args.slots, mine, where, prefix=PREFIX, subnet=SUBNET)
            live = {o.scheduler: o.metrics.makespan for o, _ in pairs}
            sim = {o.scheduler: s.metrics.makespan for o, s in pairs}
            metas = {o.scheduler: json.loads((where / o.scheduler / "run.json").read_text()) for o, _ in pairs}
            solo = {k: m["sim_solo_makespan"] for k, m in metas.items() if "sim_solo_makespan" in m}
            swapped = swaps(live, sim)
            row = {"trace": name, "rep": rep, "live": live, "sim": sim,
                   "ratio": {k: sim[k] / live[k] for k in live},
                   "sim_solo": solo, "ratio_solo": {k: solo[k] / live[k] for k in solo},
                   "load": {k: m.get("load") for k, m in metas.items()},
                   "live_ranking": ranked(live), "sim_ranking": ranked(sim),
                   "same_ranking": not swapped, "swaps": swapped,
                   "swaps_only_within_sim_ties": all(gap < TIE for *_, gap in swapped),
                   "scaling": json.loads((where / mine[0] / "run.json").read_text())["scaling"]}
            report["runs"].append(row)
            md += [f"## {name} (rep {rep})", "", row["scaling"]["note"] + ".", "", live_table(pairs)]
            md.append("Without the contention model (jobs as if alone), sim / live: "
                      + ", ".join(f"{k} {v:.2f}" for k, v in row["ratio_solo"].items())
                      + ". Other work on the machine during each live run (runnable processes, mean; 1-min load "
                      "average at its start and end): "
                      + ", ".join(f"{k} {ld['background']:.1f} ({ld['loadavg_1min'][0]:.1f}-{ld['loadavg_1min'][1]:.1f})"
                                  for k, ld in row["load"].items() if ld) + ".\n")
            if swapped:
                md.append("Swapped pairs (sim gap): " + ", ".join(f"{a}/{b} ({g:.1%})" for a, b, g in swapped) + "\n")
            Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
            Path(args.out).with_suffix(".md").write_text("\n".join(md) + "\n")
        reps = [r for r in report["runs"] if r["trace"] == name]
        order = live_order([r["live"] for r in reps])
        # The simulator is deterministic, but each live run's background load goes into its twin's contention model,
        # and it changes from minute to minute: the ranking is the simulator's at one load, the median of the trace's runs.
        sim, common = common_sim(trace, [r["load"] for r in reps], list(reps[0]["sim"]), args.hosts, args.slots)
        verdict = agree(order, sim)
        report.setdefault("ranking", []).append({
            "trace": name, "reps": len(reps), "live_order": order.text(), "live_ordered_pairs": sorted(order.before),
            "sim_ranking": ranked(sim), "sim_background": common, "sim_makespans": sim,
            "spread": order.spread, "consistent": verdict.consistent,
            "contradicted": verdict.contradicted, "sim_apart_live_tied": verdict.sim_only})
        md += [f"**{name}: ranking over {len(reps)} reps.** Live, the pairs faster in every rep by more than "
               f"{order.floor:.0%}: {order.ordered()} (the rest tied; tiers {order.text()}); rep-to-rep spread "
               + ", ".join(f"{k} {v:.1%}" for k, v in sorted(order.spread.items()))
               + f". Sim (background {common:.1f}, the median of the live runs'): {ranked(sim)}. "
               + ("Consistent: the simulator orders every pair the live runs order, the same way."
                  if verdict.consistent else
                  "NOT consistent: live " + ", ".join(f"{a} < {b}" for a, b in verdict.contradicted)
                  + ", the simulator not.")
               + ("" if not verdict.sim_only else " Tied live, apart in the sim: "
                  + ", ".join(f"{a}/{b} ({g:.1%})" for a, b, g in verdict.sim_only) + "."), ""]
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
        Path(args.out).with_suffix(".md").write_text("\n".join(md) + "\n")
    ratios = [r for run in report["runs"] for r in run["ratio"].values()]
    solos = [r for run in report["runs"] for r in run.get("ratio_solo", {}).values()]
    loads = [ld["background"] for run in report["runs"] for ld in run.get("load", {}).values() if ld]
    avgs = [x for run in report["runs"] for ld in run.get("load", {}).values() if ld for x in ld["loadavg_1min"]]
    if ratios:
        before = "" if not solos else (
            f" (without the contention model: median {statistics.median(solos):.3f}, range "
            f"{min(solos):.3f}-{max(solos):.3f}, within 10%: {sum(1 for r in solos if abs(r - 1) <= 0.1)}/{len(solos)})")
        machine = "" if not loads else (
            f"; other work during the live runs: {min(loads):.1f}-{max(loads):.1f} runnable processes, 1-min load "
            f"average {min(avgs):.1f}-{max(avgs):.1f} on {os.cpu_count()} cores")
        summary = (f"sim / live makespan over {len(ratios)} runs: median {statistics.median(ratios):.3f}, "
                   f"range {min(ratios):.3f}-{max(ratios):.3f}; within 10%: "
                   f"{sum(1 for r in ratios if abs(r - 1) <= 0.1)}/{len(ratios)}{before}{machine}; same ranking: "
                   f"{sum(1 for run in report['runs'] if run['same_ranking'])}/{len(report['runs'])} trace runs (strict); "
                   f"sim consistent with the live partial order: "
                   f"{sum(1 for r in report['ranking'] if r['consistent'])}/{len(report['ranking'])} traces")
        report["summary"] = summary
        md.insert(2, summary + "\n")
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
        Path(args.out).with_suffix(".md").write_text("\n".join(md) + "\n")
        print(summary)
        print(plot(report, Path(args.plot)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
