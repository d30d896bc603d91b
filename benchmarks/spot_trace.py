"""The original's spot experiment, scaled down to the namespace testbed (issue 12, last target; needs root).

    .venv/bin/python benchmarks/spot_trace.py [--jobs 12] [--steps 24] [--step-s 0.5] [--period 12]

A trace of ``--jobs`` MPI jobs (2 ranks each, ``--steps`` steps of ``--step-s`` seconds of sleep, so that
the 2 shared cores do not decide the makespan; a migration point after each step) is submitted at once
to a 4-host testbed with 2 slots per host. With evictions, the testbed's evictor gives a quarter of the
hosts (one) a notice every ``--period`` seconds, with a grace of ``--grace`` s, and keeps it away for
``--period`` seconds (the original: every minute, for a minute; time is scaled down here, and said so).

- granny: the spot policy; jobs move off a host under notice at their next point, or freeze and thaw.
- baseline: the same jobs with ``migrate=False`` (no moves, no freezes): a job on an evicted host fails
  at the deadline and is resubmitted from its start, as a batch scheduler would.

Either system also resubmits a job that failed for any reason (counted). Makespan = first submit to the
last job's result. The ratio reported per system is makespan with evictions ÷ without.
"""

from __future__ import annotations

import argparse
import json
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


def run_trace(system: str, evict: bool, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from granny.testbed import evictions, topology  # evictions: in main since the s5-evict merge

    plan = evictions.EvictionPlan(every=args.period, away=args.period, fraction=0.25, grace=args.grace,
                        start=args.period / 2) if evict else None
    state_dir = work / f"tb-{system}-{int(evict)}"
    tb = Testbed(topology=topology.Topology(hosts=["h1", "h2", "h3", "h4"], slots=2, evictions=plan), prefix=PREFIX,
                 subnet=SUBNET, state_dir=state_dir, heartbeat_timeout=2.0, ready_timeout=120.0)
    tb.up()
    try:
        with granny.connect(tb.address, tb.token) as client:
            client.query("set-policy", "spot" if system == "granny" else "bin-pack")
            opts = client.options() if system == "granny" else client.options(migrate=False)
            job = make_job()
            t0 = time.perf_counter()
            futures = {opts.submit_mpi(job, 2, (args.steps, args.step_s)): i for i in range(args.jobs)}
            done: dict[int, float] = {}
            restarts: list[str] = []
            results: dict[int, Any] = {}
            while futures:
                finished, _ = wait(list(futures), timeout=args.timeout, return_when=FIRST_COMPLETED)
                if not finished:
                    raise TimeoutError(f"{len(futures)} jobs still running after {args.timeout} s")
                for fut in finished:
                    i = futures.pop(fut)
                    try:
                        results[i] = fut.result()
                        done[i] = time.perf_counter() - t0
                    except Exception as exc:  # noqa: BLE001 - resubmitted from its start, counted
                        restarts.append(f"job {i}: {type(exc).__name__}: {str(exc)[:120]}")
                        futures[opts.submit_mpi(job, 2, (args.steps, args.step_s))] = i
            makespan = max(done.values())
            counters = client.query("counters").get("migration", {})
        expected = sum(range(args.steps)) * 2.0 * (1 << 17)
        correct = all(r[0]["sum"] == expected and r[1]["sum"] == expected for r in results.values())
        evlog = Path(state_dir, "logs", "evictor.log")
        evictions = evlog.read_text().count(" evict ") if evlog.exists() else 0
        return {"makespan": makespan, "restarts": restarts, "correct": correct, "evictions": evictions,
                "migration": {k: counters.get(k, 0) for k in ("completed", "freezes", "frozen", "thawed", "failed")}}
    finally:
        tb.down()


def run_all(args: argparse.Namespace, work: Path, into: dict[str, Any],
            save: Callable[[], None] = lambda: None) -> None:
    """Every system with and without evictions, ``args.reps`` times; rows go into ``into["runs"]``."""
    into["args"] = {k: getattr(args, k) for k in ("jobs", "steps", "step_s", "period", "grace", "reps")}
    runs: list[dict[str, Any]] = into.setdefault("runs", [])
    for rep in range(args.reps):
        for system in ("granny", "baseline"):
            for evict in (False, True):
                row: dict[str, Any] = {"system": system, "evict": evict, "rep": rep}
                try:
                    row.update(run_trace(system, evict, args, work))
                except Exception as exc:  # noqa: BLE001 - reported
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
    for system, label in (("granny", "granny (spot policy: move or freeze at migration points)"),
                          ("baseline", "baseline (no migration: an evicted job restarts from its start)")):
        calm = {r["rep"]: r["makespan"] for r in runs if r["system"] == system and not r["evict"]}
        hit = {r["rep"]: r["makespan"] for r in runs if r["system"] == system and r["evict"]}
        if not calm or not hit:
            continue
        c, e = statistics.median(calm.values()), statistics.median(hit.values())
        paired = [hit[k] / calm[k] for k in sorted(hit) if k in calm]
        restarts = [len(r["restarts"]) for r in runs if r["system"] == system and r["evict"]]
        rows.append([f"trace makespan, {label}: without / with evictions",
                     f"{c:.1f} s / {e:.1f} s (restarts per run: {', '.join(map(str, restarts))})"])
        verdict = ("✅ pass" if e / c <= 1.2 else "❌ FAIL") if system == "granny" else "(reference)"
        aim = "aim ≤ 1.2; original 1.21–1.34" if system == "granny" else "the original's baselines: 1.5–2.2"
        targets.append([f"spot trace, {system}: makespan with evictions ÷ without ({aim})",
                        f"{e / c:.2f}×", f"{min(paired):.2f}–{max(paired):.2f}×" if paired else "–", verdict])
    if runs:
        ok = all(r["correct"] for r in runs)
        moves = [r["migration"] for r in runs if r["system"] == "granny" and r["evict"]]
        notes.append(
            f"spot trace: {a.get('jobs')} jobs of 2 ranks × {a.get('steps')} steps of {a.get('step_s')} s (sleep) on 4 "
            f"testbed hosts × 2 slots; every {a.get('period'):g} s one host (a quarter) gets a {a.get('grace'):g} s "
            f"notice and stays away {a.get('period'):g} s: the original's minute is scaled down to "
            f"{a.get('period'):g} s. Results correct in every run: {ok}. granny's migrations per evicted run: "
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
    ap.add_argument("--jobs", type=int, default=12)
    ap.add_argument("--steps", type=int, default=24)
    ap.add_argument("--step-s", type=float, default=0.5)
    ap.add_argument("--period", type=float, default=12.0, help="seconds between eviction rounds, and away")
    ap.add_argument("--grace", type=float, default=3.0)
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=600.0)
    ap.add_argument("--out", default="benchmarks/results/spot_trace.json")
    return ap


def main() -> int:
    args = parser().parse_args()
    res: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="spot-trace-") as tmp:
        run_all(args, Path(tmp), res, lambda: Path(args.out).write_text(json.dumps(res, indent=1)))
    for line in summarize(res)[1]:
        print(" | ".join(line))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
