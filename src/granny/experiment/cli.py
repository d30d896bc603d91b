"""``granny experiment``: replay traces (run, sweep) and draw the figures (plot)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..errors import ConfigError, GrannyError
from ..sim import SCHEDULERS, SPOT
from .run import ARRIVALS, MODES, parse_evictions, run
from .sweep import live_table, sweep, table

PAPER = Path("/work/shared/paper-data")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="granny experiment", description="cluster experiments: replay traces of jobs")
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    r = sub.add_parser("run", help="replay one trace with one scheduler")
    r.add_argument("--trace", required=True, type=Path, help="CSV: TaskId,App,Size,InterArrivalTimeSecs")
    r.add_argument("--hosts", required=True, type=int)
    r.add_argument("--slots", type=int, default=8)
    r.add_argument("--scheduler", required=True, help=f"one of {', '.join(SCHEDULERS)}")
    r.add_argument("--mode", choices=MODES, default="sim",
                   help="sim: the simulator; testbed: real jobs on the namespace testbed, the trace scaled down (root)")
    r.add_argument("--out", required=True, type=Path, help="run directory (events.jsonl, metrics.json)")
    r.add_argument("--arrivals", choices=list(ARRIVALS), default="trace",
                   help="trace: at the trace's times; original: as the original's harness submitted them for "
                        "its figures (the next job 1 s after the previous one started)")
    r.add_argument("--migrate-every", type=float, default=None,
                   help="granny-migrate: a migration point every this fraction of a job's work (default 0.1)")
    r.add_argument("--reserve", type=float, default=None,
                   help="a scheduler that bin-packs keeps this share of the slots free for split worlds to gather "
                        "into (the bin-pack-reserve policy; the original's harness: 0.05 for granny-migrate on "
                        "mpi-locality)")
    r.add_argument("--evictions", default="every=60,fraction=0.25,grace=60,down=0",
                   help="for granny-spot, batch-ft, slurm-ft: every=S,fraction=F,grace=S,down=S,seed=N (default: the "
                        "original's rule, a quarter of the hosts every 60 s with 60 s notice, back at once), or none")
    _testbed_flags(r)
    s = sub.add_parser("sweep", help="the original's cluster sizes of a workload, several schedulers, and a table")
    s.add_argument("--workload", default=None,
                   help="mpi-locality, mpi-migrate, omp-elastic, mpi-spot or dfaas (synthetic, generated; sim mode)")
    s.add_argument("--mode", choices=MODES, default="sim",
                   help="testbed: one scaled --trace on --hosts x --slots, live with every scheduler, beside the sim")
    s.add_argument("--trace", type=Path, default=None, help="testbed mode: the trace to replay")
    s.add_argument("--hosts", type=int, default=4, help="testbed mode (default 4)")
    s.add_argument("--slots", type=int, default=2, help="testbed mode (default 2)")
    _testbed_flags(s)
    s.add_argument("--schedulers", default=None,
                   help="default: every scheduler (mpi-spot: each of granny, slurm, batch with and without evictions)")
    s.add_argument("--traces", type=Path, default=PAPER / "traces")
    s.add_argument("--compare", type=Path, default=PAPER / "results" / "makespan")
    s.add_argument("--out", required=True, type=Path)
    s.add_argument("--arrivals", choices=list(ARRIVALS), default="original")
    s.add_argument("--migrate-every", type=float, default=None,
                   help="granny-migrate: a migration point every this fraction of a job's work (default: 0.01 on "
                        "the MPI traces, else the scheduler's 0.1)")
    s.add_argument("--reserve", type=float, default=None,
                   help="granny-migrate keeps this share of the slots free (bin-pack-reserve; default: as the "
                        "original's harness with --arrivals original, 0.05 on mpi-locality, else 0)")
    s.add_argument("--evictions", default="every=60,fraction=0.25,grace=60,down=0",
                   help="mpi-spot: the eviction schedule (as for run)")
    t = sub.add_parser("trace", help="write a synthetic dfaas trace (mixed latency-sensitive and delay-tolerant calls)")
    t.add_argument("--calls", type=int, default=400)
    t.add_argument("--hosts", type=int, default=8)
    t.add_argument("--slots", type=int, default=8)
    t.add_argument("--load", type=float, default=0.8, help="mean share of the slots busy (Poisson arrivals)")
    t.add_argument("--seed", type=int, default=1)
    t.add_argument("--burst", type=int, default=0, help="delay-tolerant calls arriving together every --burst-every s")
    t.add_argument("--burst-every", type=float, default=0.0)
    t.add_argument("--out", required=True, type=Path)
    pl = sub.add_parser("plot", help="figures of the runs under DIR, beside the original's")
    pl.add_argument("dir", type=Path)
    pl.add_argument("--compare", type=Path, default=None, help="the original's results/makespan directory")
    pl.add_argument("--out", type=Path, default=None, help="where the PNGs go (default DIR/plots)")
    return p


def _testbed_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("testbed mode")
    g.add_argument("--netns-prefix", default=None, help="the testbed's namespace prefix (default gxp)")
    g.add_argument("--subnet", default=None, help="the testbed's private /24 (default 10.91.0.0/24)")
    g.add_argument("--time-scale", type=float, default=None,
                   help="multiply the trace's arrival times by this (default: our jobs' runtime over the original's)")
    g.add_argument("--kernel", default=None,
                   help="the kernels' parameters, e.g. steps=4,serial=0.5,work=1,nbytes=65536,omp_nbytes=65536 "
                        "(default: the calibrated ones; others make the simulated prediction meaningless)")


def _testbed_options(args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = {"scale": args.time_scale}
    if args.netns_prefix:
        options["prefix"] = args.netns_prefix
    if args.subnet:
        options["subnet"] = args.subnet
    if args.kernel:
        from .live import Workload

        fields: dict[str, Any] = {}
        for part in filter(None, (p.strip() for p in args.kernel.split(","))):
            key, _, value = part.partition("=")
            if key not in Workload.__dataclass_fields__:
                raise ConfigError(f"--kernel: unknown field {key!r} ({', '.join(Workload.__dataclass_fields__)})")
            try:
                fields[key] = int(value) if key in ("steps", "nbytes", "omp_nbytes") else float(value)
            except ValueError:
                raise ConfigError(f"--kernel: {key} needs a number, got {value!r}") from None
        options["workload"] = Workload(**fields)
    return options


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.action == "run":
            testbed = _testbed_options(args) if args.mode == "testbed" else None
            outcome = run(args.trace, args.hosts, args.slots, args.scheduler, args.mode, args.out,
                          arrivals=args.arrivals, migrate_every=args.migrate_every,
                          evictions=parse_evictions(args.evictions), testbed=testbed, reserve=args.reserve)
            summary = {k: v for k, v in outcome.metrics.to_json().items() if k != "jct_cdf"}
            extra = {}
            if testbed is not None:
                meta = json.loads((args.out / "run.json").read_text())
                extra = {"scaling": meta["scaling"]["note"], "sim_makespan": meta["sim_makespan"],
                         "sim_over_live": meta["sim_over_live"]}
            print(json.dumps({"scheduler": args.scheduler, "mode": args.mode, "hosts": args.hosts, "slots": args.slots,
                              "wall_seconds": round(outcome.wall_seconds, 3), **extra, **summary}, indent=2))
        elif args.action == "sweep" and args.mode == "testbed":
            from .live import schedulers_for
            from .run import load_trace, run_testbed

            if args.trace is None:
                raise ConfigError("sweep --mode testbed needs --trace")
            names = args.schedulers.split(",") if args.schedulers else schedulers_for(load_trace(args.trace))
            outcomes = run_testbed(args.trace, args.hosts, args.slots, names, args.out, **_testbed_options(args))
            text = live_table(outcomes)
            (args.out / "table_testbed.md").write_text(text)
            print(text, end="")
        elif args.action == "sweep" and args.workload is None:
            raise ConfigError("sweep needs --workload (sim mode)")
        elif args.action == "sweep" and args.workload == "dfaas":
            from .dfaas import SCHEDULERS as DFAAS
            from .dfaas import dfaas_sweep, dfaas_table, plot_dfaas

            calls = dfaas_sweep(args.out, args.schedulers.split(",") if args.schedulers else DFAAS)
            text = dfaas_table(calls)
            (args.out / "table_dfaas.md").write_text(text)
            print(text, end="")
            print(plot_dfaas(calls, args.out / "dfaas.png"))
        elif args.action == "trace":
            from ..sim.dfaas import mixed_trace
            from ..sim.trace import to_csv

            jobs = mixed_trace(args.calls, args.hosts * args.slots, load=args.load, seed=args.seed, burst=args.burst,
                               burst_every=args.burst_every)
            args.out.write_text(to_csv(jobs))
            print(f"{args.out}: {len(jobs)} calls")
        elif args.action == "sweep" and args.workload == "mpi-spot":
            from .spot import plot_spot, spot_sweep, spot_table

            schedule = parse_evictions(args.evictions)
            if schedule is None:
                raise ConfigError("a spot sweep needs an eviction schedule (--evictions none makes no sense here)")
            pairs = spot_sweep(args.traces, args.out, compare=args.compare, arrivals=args.arrivals, evictions=schedule)
            text = spot_table(pairs)
            (args.out / "table_mpi-spot.md").write_text(text)
            print(text, end="")
            print(plot_spot(pairs, args.out / "spot_slowdown.png"))
        elif args.action == "sweep":
            names = (args.schedulers.split(",") if args.schedulers else
                     [n for n in SCHEDULERS if n not in SPOT and n != "dfaas"  # (dfaas: its own family)
                      and (n != "granny-elastic" or args.workload.startswith("omp"))])
            rows = sweep(args.traces, args.workload, names, args.out, compare=args.compare, arrivals=args.arrivals,
                         reserve=args.reserve, migrate_every=args.migrate_every)
            text = table(rows)
            (args.out / f"table_{args.workload}.md").write_text(text)
            print(text, end="")
        else:
            from .plots import plot

            for path in plot(args.dir, args.compare, args.out):
                print(path)
        return 0
    except GrannyError as exc:
        print(f"granny experiment: {exc}")
        return 2
