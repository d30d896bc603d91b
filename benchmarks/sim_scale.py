"""How fast the simulator replays traces (issue 13's targets): 32 hosts x 8 with the 200-job traces
in under 5 s, and 1,000 hosts x 8 with 10,000 jobs (a synthetic Poisson trace) in under 60 s.

    .venv/bin/python benchmarks/sim_scale.py [--big-only | --small-only] [--schedulers batch,slurm,granny]

The big trace: LAMMPS-compute jobs (mpi-migrate's model) of 2..15 ranks arriving as a Poisson
process at 90% of the cluster's capacity (``--load``), seed 1. Wall-clock times; the machine may be shared.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from granny.experiment import compute, load_model, load_trace
from granny.sim import poisson_trace, scheduler_named
from granny.sim.elastic import simulator_class

TRACES = Path("/work/shared/paper-data/traces")


def one(jobs: list, hosts: int, scheduler: str, gap: float | None) -> None:  # type: ignore[type-arg]
    t0, c0 = time.perf_counter(), time.process_time()
    sched = scheduler_named(scheduler)
    result = simulator_class(sched)(sched, hosts, 8, load_model(), submit_gap=gap).run(jobs)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    m = compute(result.events, result.cluster)
    print(f"  {scheduler:15s} {hosts:5d} hosts {len(jobs):6d} jobs: {wall:6.2f} s wall ({cpu:6.2f} s CPU)  "
          f"makespan {m.makespan:8.0f} s, migrations {m.migrations}", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--big-only", action="store_true")
    ap.add_argument("--small-only", action="store_true")
    ap.add_argument("--schedulers", default="batch,slurm,granny,granny-migrate,granny-elastic")
    ap.add_argument("--load", type=float, default=0.9,
                    help="the big trace's arrival rate as a share of the cluster's capacity (above 1 a queue builds)")
    ap.add_argument("--big-migrate", action="store_true", help="(no longer needed: granny-migrate runs at 1,000 hosts too)")
    args = ap.parse_args()
    names = args.schedulers.split(",")
    if not args.big_only:
        print("32 hosts x 8, the 200-job traces (arrivals as the original's harness made them):")
        for trace in ("trace_mpi-locality_200_8.csv", "trace_mpi-migrate_200_8.csv", "trace_omp-elastic_200_8.csv"):
            print(f" {trace}")
            for name in names:
                one(load_trace(TRACES / trace), 32, name, 1.0)
    if not args.small_only:
        hosts, count = 1000, 10_000
        rate = args.load * hosts * 8 / (8.5 * 200)  # mean size 8.5, mean runtime about 200 s
        jobs = poisson_trace(count, rate, "mpi-migrate", range(2, 16), seed=1)
        print(f"{hosts} hosts x 8, {count} jobs, Poisson arrivals at {rate:.2f} jobs/s:")
        for name in names:
            one(jobs, hosts, name, None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
