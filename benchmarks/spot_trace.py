"""The original's spot experiment, scaled down to the namespace testbed (issue 12, last target; needs root).

    .venv/bin/python benchmarks/spot_trace.py [--trace PATH] [--scale 0.1] [--slots 8] [--step-s 0.25]

The trace is the original's own (``trace_mpi-spot_10_8.csv`` of its artifact: 10 jobs of 2-15 ranks on 4
VMs of 8 cores, Poisson arrivals), replayed on 4 testbed hosts of ``--slots`` slots (8 by default, the
original's VMs and job sizes: the jobs sleep, so 32 granules fit these 2 cores; with fewer slots a job
of S ranks runs on ceil(S × slots / 8)). Every time is multiplied by ``--scale``: the inter-arrivals,
the eviction rounds, and each job's length, which is how long that job ran in the original's own run without evictions
(its exec-task-info; 114-554 s: its LAMMPS jobs ran shorter the wider they were). A job is steps of
``--step-s`` seconds of sleep, so that the 2 shared cores do not decide the makespan, with a
migration point after each step.

Evictions follow the original's fault injector (its nominal rule, as granny experiment's
``every=60,fraction=0.25,grace=60,down=0``): every round a quarter of the hosts (one) gets a notice, is
taken back when the notice runs out a round later, and comes back at once (a new worker, started as soon
as the host is taken back and registering when it is due back: ``--down``
seconds). The round is the original's 60 s, scaled.

- granny: the spot policy; jobs use a host under notice until their last point before its deadline,
  then move off it, or freeze and thaw.
- baseline: the same jobs with ``migrate=False`` (no moves, no freezes): a job on an evicted host fails
  at the deadline and is resubmitted from its start, as a batch scheduler would.

Either system also resubmits a job that failed for any reason (counted). Makespan = first submit to the
last job's result. The ratio reported per system is makespan with evictions ÷ without.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, wait
from pathlib import Path
from typing import Any

import granny
from granny.testbed import Testbed

PREFIX = os.environ.get("GRANNY_TEST_NETNS_PREFIX", "gb12")
SUBNET = os.environ.get("GRANNY_TEST_SUBNET", "10.83.0.0/24")
PAPER = Path(__file__).resolve().parents[2] / "shared" / "paper-data"
TRACE = PAPER / "traces" / "trace_mpi-spot_10_8.csv"
# How long each job of that trace ran in the original's own run without evictions (granny, 4 VMs)
RUNTIMES = PAPER / "results" / "makespan" / "makespan_exec-task-info_granny_4_mpi-spot_10_8.csv"
ORIGINAL_ROUND_S = 60.0  # its eviction round and grace


def load_trace(path: Path, runtimes: Path, scale: float, step_s: float, slots: int = 8) -> list[tuple[float, int, int]]:
    """(arrival time in our seconds, ranks, steps) per job: sizes for 8-core VMs onto ``slots``-slot hosts,
    times scaled; each job runs as long as it ran in the original (its LAMMPS jobs run shorter the wider
    they are)."""
    with open(runtimes, newline="") as fh:
        ran = {int(r["TaskId"]): float(r["TimeExecuting"]) for r in csv.DictReader(fh)}
    jobs, t = [], 0.0
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            t += float(row["InterArrivalTimeSecs"]) * scale
            steps = max(2, round(ran[int(row["TaskId"])] * scale / step_s))
            jobs.append((t, max(1, math.ceil(int(row["Size"]) * slots / 8)), steps))
    return jobs


def log(msg: str) -> None:
    print(f"[spot-trace {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def make_job() -> Callable[..., dict[str, Any]]:
    def steps(comm: Any, start: int, n: int, step_s: float, state: Any, hosts: list[str]) -> dict[str, Any]:
        import os
        import time

        import granny as g

        for step in range(start, n):
            time.sleep(step_s)  # the job's "compute" for this step
            state += comm.allreduce(float(step))
            hosts.append(os.environ.get("GRANNY_HOST_ID", ""))
            if step + 1 < n:
                g.migration_point(steps, comm, step + 1, n, step_s, state, hosts)
        return {"sum": float(state.sum()), "hosts": hosts}

    def program(comm: Any, n: int, step_s: float) -> dict[str, Any]:
        import numpy as np

        return steps(comm, 0, n, step_s, np.zeros(1 << 17), [])

    return program


def run_trace(system: str, evict: bool, args: argparse.Namespace, work: Path, rep: int = 0) -> dict[str, Any]:
    from granny.testbed import evictions, topology

    scale = args.scale
    period = ORIGINAL_ROUND_S * scale
    plan = evictions.EvictionPlan(every=period, away=args.down, fraction=0.25, grace=period,
                                  start=period / 2) if evict else None
    trace = load_trace(Path(args.trace), Path(args.runtimes), scale, args.step_s, args.slots)
    state_dir = work / f"tb-{system}-{int(evict)}-{rep}"
    tb = Testbed(topology=topology.Topology(hosts=["h1", "h2", "h3", "h4"], slots=args.slots, evictions=plan),
                 prefix=PREFIX,
                 subnet=SUBNET, state_dir=state_dir, heartbeat_timeout=2.0, ready_timeout=120.0)
    tb.up()
    try:
        with granny.connect(tb.address, tb.token) as client:
            client.query("set-policy", args.policy if system == "granny" else "bin-pack")
            opts = client.options() if system == "granny" else client.options(migrate=False)
            job = make_job()
            t0 = time.perf_counter()
            t0_wall = time.time()
            reqs: dict[str, list[Any]] = {}  # req_id -> [job, submitted at (s since t0)]
            futures: dict[Any, int] = {}
            done: dict[int, float] = {}
            restarts: list[str] = []
            results: dict[int, Any] = {}
            arrivals = list(enumerate(trace))
            while futures or arrivals:
                now = time.perf_counter() - t0
                while arrivals and arrivals[0][1][0] <= now:
                    i, (_, size, steps) = arrivals.pop(0)
                    fut = opts.submit_mpi(job, size, (steps, args.step_s))
                    futures[fut] = i
                    reqs[fut.req_id] = [i, time.perf_counter() - t0]
                if not futures:
                    time.sleep(max(0.0, arrivals[0][1][0] - now))  # the next arrival (a benchmark, not a test)
                    continue
                if now > args.timeout:  # a baseline that keeps restarting jobs: its makespan is at least this
                    break
                until = min(arrivals[0][1][0] - now if arrivals else args.timeout, args.timeout - now)
                finished, _ = wait(list(futures), timeout=max(0.01, until), return_when=FIRST_COMPLETED)
                for fut in finished:
                    i = futures.pop(fut)
                    try:
                        results[i] = fut.result()
                        done[i] = time.perf_counter() - t0
                    except Exception as exc:  # resubmitted from its start, counted
                        restarts.append(f"job {i}: {type(exc).__name__}: {str(exc)[:120]}")
                        fut = opts.submit_mpi(job, trace[i][1], (trace[i][2], args.step_s))
                        futures[fut] = i
                        reqs[fut.req_id] = [i, time.perf_counter() - t0]
            unfinished = len(futures) + len(arrivals)
            makespan = time.perf_counter() - t0 if unfinished else max(done.values())
            for fut in futures:
                fut.cancel()
            counters = client.query("counters").get("migration", {})
            if args.events_dir:
                dump_events(client, Path(args.events_dir) / f"{system}-{'evict' if evict else 'calm'}-{rep}.json",
                            {"t0_wall": t0_wall, "jobs": reqs, "done": done, "trace": trace})
        correct = all(r["sum"] == sum(range(trace[i][2])) * float(1 << 17) * len(rs)
                      for i, rs in results.items() for r in rs)
        evlog = Path(state_dir, "logs", "evictor.log")
        evictions_seen = evlog.read_text().count(" evict ") if evlog.exists() else 0
        return {"makespan": makespan, "unfinished": unfinished, "restarts": restarts, "correct": correct, "evictions": evictions_seen,
                "migration": {k: counters.get(k, 0) for k in ("completed", "freezes", "frozen", "thawed", "failed",
                                                               "stays")}}
    finally:
        tb.down()


def dump_events(client: Any, path: Path, meta: dict[str, Any]) -> None:
    """The planner's events of this run with the client's side (which request is which job, when each was
    submitted and finished), for ``spot_timeline.py``."""
    rows: list[dict[str, Any]] = []
    while batch := client.query("events", str(rows[-1]["id"] if rows else 0)):
        rows.extend(batch)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**meta, "events": rows}, indent=0))


def run_all(args: argparse.Namespace, work: Path, into: dict[str, Any],
            save: Callable[[], None] = lambda: None) -> None:
    """Every system with and without evictions, ``args.reps`` times; rows go into ``into["runs"]``."""
    into["args"] = {k: getattr(args, k) for k in ("trace", "scale", "step_s", "down", "reps", "systems", "slots", "policy")}
    runs: list[dict[str, Any]] = into.setdefault("runs", [])
    for rep in range(args.reps):
        for system in args.systems.split(","):
            for evict in (False, True):
                # boot_ahead: the testbed starts a taken-back host's worker at once (it registers when the
                # host is due back); before session 7 it started it then, so the host was away longer.
                row: dict[str, Any] = {"system": system, "evict": evict, "rep": rep, "down": args.down, "boot_ahead": True,
                                       "policy": args.policy if system == "granny" else "bin-pack"}
                try:
                    row.update(run_trace(system, evict, args, work, rep))
                except Exception as exc:  # reported
                    row["error"] = f"{type(exc).__name__}: {exc}"
                log(str(row))
                runs.append(row)
                save()


def summarize(res: dict[str, Any]) -> tuple[list[list[str]], list[list[str]], list[str]]:
    """(metric rows, target rows, notes) for the report: makespan with evictions ÷ without, per system."""
    rows: list[list[str]] = []
    targets: list[list[str]] = []
    notes: list[str] = []
    a = res.get("args", {})
    runs = [r for r in res.get("runs", []) if "makespan" in r]
    for r in runs:  # rows written before the policy and --down were recorded per row
        r.setdefault("policy", a.get("policy", "spot") if r["system"] == "granny" else "bin-pack")
        r.setdefault("down", a.get("down", 1.0))
        r.setdefault("boot_ahead", False)
    groups = sorted({(r["system"], r["policy"], r["down"], r["boot_ahead"]) for r in runs},
                    key=lambda g: (g[0] != "granny", g[1], -g[2], g[3]))
    for system, policy, down, ahead in groups:
        label = (f"granny ({policy} policy: move or freeze at migration points" if system == "granny" else
                 "baseline (no migration: an evicted job restarts from its start")
        label += f"; evicted hosts away {down:g} s" if down != a.get("down", 1.0) else ""
        label += "; worker booted while away)" if ahead else "; worker started when back)"
        mine = [r for r in runs if (r["system"], r["policy"], r["down"], r["boot_ahead"]) == (system, policy, down, ahead)]
        calm = {r["rep"]: r["makespan"] for r in mine if not r["evict"]}
        hit = {r["rep"]: r["makespan"] for r in mine if r["evict"]}
        if not calm or not hit:
            continue
        c, e = statistics.median(calm.values()), statistics.median(hit.values())
        paired = [hit[k] / calm[k] for k in sorted(hit) if k in calm]
        restarts = [len(r["restarts"]) for r in mine if r["evict"]]
        cut = sum(r.get("unfinished", 0) for r in mine)
        ge = "≥ " if cut else ""  # stopped at --timeout with jobs unfinished: the makespan is at least that
        rows.append([f"trace makespan, {label}: without / with evictions",
                     f"{c:.1f} s / {ge}{e:.1f} s (restarts per run: {', '.join(map(str, restarts))}"
                     + (f"; {cut} jobs unfinished when the run was stopped" if cut else "") + ")"])
        verdict = ("✅ pass" if e / c <= 1.2 else "❌ FAIL") if system == "granny" else "(reference)"
        aim = "aim ≤ 1.2; original 1.21–1.34" if system == "granny" else "the original's baselines: 1.5–2.2"
        name = system if system != "granny" else f"granny {policy}" + (f", away {down:g} s" if down != a.get("down", 1.0) else "")
        name += ", worker booted while away" if ahead else ""
        targets.append([f"spot trace, {name}: makespan with evictions ÷ without ({aim})",
                        f"{ge}{e / c:.2f}×", f"{min(paired):.2f}–{max(paired):.2f}×" if paired else "–", verdict])
    if runs:
        ok = all(r["correct"] for r in runs)
        moves = [r["migration"] for r in runs if r["system"] == "granny" and r["evict"]]
        scale = a.get("scale", 0)
        notes.append(
            f"spot trace: the original's {Path(str(a.get('trace'))).name} (sizes × {a.get('slots', 8)}/8, times × "
            f"{scale:g}: each job runs as long as in the original's own run, scaled, in steps of {a.get('step_s')} s "
            f"of sleep) on 4 testbed hosts × {a.get('slots', 8)} slots; every "
            f"{ORIGINAL_ROUND_S * scale:.1f} s one host (a quarter) gets a notice of as long, is taken back at its "
            f"end and comes back {a.get('down'):g} s later (the original's 60 s rounds, scaled). "
            f"Results correct in every run: {ok}. granny's migrations per evicted run: "
            + "; ".join(f"{m['completed']} moves, {m['frozen']} freezes, {m['thawed']} thaws" for m in moves))
    errors = [f"{r['system']}/{'evict' if r['evict'] else 'calm'} rep {r['rep']}: {r['error']}"
              for r in res.get("runs", []) if "error" in r]
    if errors:
        notes.append("spot trace runs that FAILED: " + "; ".join(errors))
    return rows, targets, notes


def defaults(reps: int) -> argparse.Namespace:
    return parser().parse_args(["--reps", str(reps)])


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trace", default=str(TRACE), help="a trace of the original's artifact (mpi-spot)")
    ap.add_argument("--runtimes", default=str(RUNTIMES), help="the original's exec-task-info of that trace")
    ap.add_argument("--scale", type=float, default=0.1, help="our seconds per second of the original's")
    ap.add_argument("--step-s", type=float, default=0.25, help="seconds between two migration points")
    ap.add_argument("--down", type=float, default=1.0, help="seconds an evicted host stays away")
    ap.add_argument("--systems", default="granny,baseline", help="which to run (comma-separated)")
    ap.add_argument("--slots", type=int, default=8,
                    help="slots per host (8: the original's VMs and job sizes; the jobs sleep, so the 2 cores "
                         "carry 32 granules; fewer: sizes scaled down with it)")
    ap.add_argument("--policy", default="spot",
                    help="granny's policy: spot, or spot-late (a world stays on a host under notice until its last point)")
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=400.0,
                    help="a run still going after this many seconds stops (its makespan is reported as at least that)")
    ap.add_argument("--out", default="benchmarks/results/spot_trace.json")
    ap.add_argument("--keep", default="", help="keep each run's testbed directory (its logs) under this directory (default with --events-dir: its "
                         "testbed/ subdirectory)")
    ap.add_argument("--events-dir", default="",
                    help="write each run's planner events (and which request is which job) here as JSON")
    return ap


def main() -> int:
    args = parser().parse_args()
    res: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="spot-trace-") as tmp:
        run_all(args, Path(args.keep or (Path(args.events_dir) / "testbed" if args.events_dir else tmp)), res, lambda: Path(args.out).write_text(json.dumps(res, indent=1)))
    for line in summarize(res)[1]:
        print(" | ".join(line))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
