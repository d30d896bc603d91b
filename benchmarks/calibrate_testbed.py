"""Fit the simulator's runtime model on the live replay's kernels, run on the namespace testbed (needs root).

    .venv/bin/python benchmarks/calibrate_testbed.py [--reps 2] [--hosts 4] [--slots 2]

Each kernel of ``granny.experiment.kernels`` (with the live replay's parameters,
``granny.experiment.live.Workload``, on links of ``live.LINKS``) runs alone on the testbed at every
size and per-host split a scaled trace gives (1-4 ranks on 2-slot hosts), placed by hand:
- MPI worlds are pinned (``options(hosts="h1:2,h2:1")``);
- an OpenMP-style job's thread 0 is pinned, and its team (leased by ``granny.parallel``, which the
  caller cannot pin) lands beside it under bin-pack, or on another host when a blocker call holds
  thread 0's host's other slots.
A run's time is from submission to result. The model ``runtime = (a + b/n) (1 + beta links/n)``
is fitted per kernel as ``benchmarks/calibrate_runtime.py`` does (least squares in relative error,
beta on a grid), and written to ``src/granny/sim/calibration/testbed.json`` with the measurements;
the raw runs go to ``benchmarks/results/calibrate_testbed.json``. It also measures how long a move of
the MPI kernel takes (``move_cost``, the median of the planner's journaled move times; the simulator
charges it to each move of granny-migrate in the scaled replays).
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from calibrate_runtime import fit

import granny
from granny.experiment import kernels
from granny.experiment.calibration import TESTBED
from granny.experiment.live import LINKS, Workload
from granny.testbed import Testbed

PREFIX = os.environ.get("GRANNY_TEST_NETNS_PREFIX", "gcal")
SUBNET = os.environ.get("GRANNY_TEST_SUBNET", "10.92.0.0/24")
MPI_SPLITS = [(1,), (2,), (1, 1), (2, 1), (1, 1, 1), (2, 2), (2, 1, 1), (1, 1, 1, 1)]
OMP_SPLITS = [(1,), (2,), (1, 1)]
ALIASES = {"mpi-locality": "tb-mpi-network", "mpi-migrate": "tb-mpi-compute", "mpi-spot": "tb-mpi-compute",
           "mpi-evict": "tb-mpi-compute",
           "omp-elastic": "tb-omp", "omp": "tb-omp"}


def log(msg: str) -> None:
    print(f"[calibrate {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def pin(split: tuple[int, ...]) -> str:
    return ",".join(f"h{i + 1}:{c}" for i, c in enumerate(split))


def run_mpi(client: Any, split: tuple[int, ...], w: Workload, rounds: int) -> float:
    n = sum(split)
    t = time.perf_counter()
    out = client.options(hosts=pin(split), migrate=False).submit_mpi(
        kernels.mpi_job, n, (w.steps, w.serial, w.work, w.nbytes, 0, rounds)).result(timeout=300)
    secs = time.perf_counter() - t
    assert sorted({r["hosts"][0] for r in out}) == [f"h{i + 1}" for i in range(len(split))], out
    return secs


def run_omp(client: Any, split: tuple[int, ...], w: Workload, slots: int) -> float:
    n = sum(split)
    blockers = []
    if len(split) > 1:  # hold thread 0's host's other slots, so that the team goes elsewhere
        hold = w.serial + w.work + 2.0
        blockers = [client.options(hosts="h1:1").submit(time.sleep, hold) for _ in range(slots - 1)]
    t = time.perf_counter()
    fut = client.options(hosts="h1:1").submit(kernels.omp_job, n, w.steps, w.serial, w.work, w.omp_nbytes)
    out = fut.result(timeout=300)
    secs = time.perf_counter() - t
    for b in blockers:
        b.result(timeout=60)
    assert out["host"] == "h1", out
    return secs


def run_move(client: Any, w: Workload, journal: Path, hosts: int) -> float | None:
    """How long one move of the MPI kernel takes (decision to every rank in the new generation, as the
    planner journals it): a 2-rank world is split over two hosts while a blocker call holds one slot
    of each host, and bin-pack moves it onto one host at its first point after the blockers end."""
    hold = 1.5
    blockers = [client.options(hosts=f"h{i + 1}:1").submit(time.sleep, hold) for i in range(hosts)]
    time.sleep(0.3)  # the blockers are placed first (a benchmark, not a test)
    every = max(1, round(0.1 * w.steps))
    out = client.options(migrate=True).submit_mpi(kernels.mpi_job, 2, (w.steps, w.serial, w.work, w.nbytes, every))
    out.result(timeout=300)
    for b in blockers:
        b.result(timeout=60)
    db = sqlite3.connect(f"file:{journal}?mode=ro", uri=True, timeout=5)
    try:
        deadline = time.monotonic() + 5
        while True:
            rows = db.execute("SELECT data FROM events WHERE app_id=? AND kind='migration.moved'",
                              (client.app_id,)).fetchall()
            if rows or time.monotonic() > deadline:
                break
            time.sleep(0.05)
    finally:
        db.close()
    return float(json.loads(rows[0][0])["seconds"]) if rows else None


def settle(client: Any) -> None:
    """Wait until every host is idle with its warm pool full (a run's granules are replaced after it)."""
    deadline = time.monotonic() + 60
    while not all(h.used == 0 and h.idle_granules >= h.slots for h in client.hosts()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"hosts not idle: {client.hosts()}")
        time.sleep(0.1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--slots", type=int, default=2)
    ap.add_argument("--out", default=str(TESTBED))
    ap.add_argument("--raw", default=str(Path(__file__).parent / "results" / "calibrate_testbed.json"))
    args = ap.parse_args()
    w = Workload()
    hosts = max(len(s) for s in MPI_SPLITS + OMP_SPLITS)
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="calibrate-") as tmp:
        tb = Testbed(hosts, slots=args.slots, prefix=PREFIX, subnet=SUBNET, state_dir=Path(tmp) / "tb",
                     heartbeat_timeout=5.0, ready_timeout=120.0, latency=LINKS["latency"], bandwidth=LINKS["bandwidth"])
        tb.up()
        try:
            for rep in range(args.reps):
                for kind, rounds in (("tb-mpi-compute", 1), ("tb-mpi-network", w.network_rounds)):
                    for split in MPI_SPLITS:
                        with granny.connect(tb.address, tb.token, app_id=f"cal-mpi-{rep}-{len(runs)}") as c:
                            settle(c)
                            secs = run_mpi(c, split, w, rounds)
                        runs.append({"kernel": kind, "split": list(split), "seconds": secs, "rep": rep})
                        log(f"{kind} {split}: {secs:.2f} s")
                for split in OMP_SPLITS:
                    with granny.connect(tb.address, tb.token, app_id=f"cal-omp-{rep}-{len(runs)}") as c:
                        settle(c)
                        secs = run_omp(c, split, w, args.slots)
                    runs.append({"kernel": "tb-omp", "split": list(split), "seconds": secs, "rep": rep})
                    log(f"omp {split}: {secs:.2f} s")
                with granny.connect(tb.address, tb.token, app_id=f"cal-move-{rep}") as c:
                    settle(c)
                    moved = run_move(c, w, Path(tb.state.data_dir) / "journal.sqlite", hosts)
                runs.append({"kernel": "move", "split": [1, 1], "seconds": moved, "rep": rep})
                log(f"move of a 2-rank world: {moved} s")
        finally:
            tb.down()
    moves = sorted(r["seconds"] for r in runs if r["kernel"] == "move" and r["seconds"] is not None)
    move_cost = round(statistics.median(moves), 3) if moves else None
    kinds = {}
    for kind in ("tb-mpi-compute", "tb-mpi-network", "tb-omp"):
        points = [(tuple(r["split"]), r["seconds"]) for r in runs if r["kernel"] == kind]
        kinds[kind] = {**fit(points), "source": f"benchmarks/calibrate_testbed.py: {len(points)} runs of the "
                       f"{'OpenMP-style' if kind == 'tb-omp' else 'MPI'} kernel{' (network-bound)' if 'network' in kind else ''} alone on the testbed, pinned splits"}
        log(f"{kind}: {kinds[kind]}")
    data = {"model": "runtime = (a + b/n) * (1 + beta * links(split)/n)",
            "fitted_by": "benchmarks/calibrate_testbed.py on the namespace testbed (this machine)",
            "workload": w.to_json(), "links": LINKS, "slots": args.slots, "kinds": kinds, "aliases": ALIASES,
            "move_cost": move_cost, "move_cost_source": f"median of {len(moves)} moves of a 2-rank world (journal)",
            "measurements": [{"kernel": r["kernel"], "split": r["split"], "seconds": round(r["seconds"], 3)}
                             for r in runs if r["kernel"] != "move"]}
    Path(args.out).write_text(json.dumps(data, indent=2) + "\n")
    Path(args.raw).write_text(json.dumps({"runs": runs, "when": time.strftime("%Y-%m-%d %H:%M:%S")}, indent=1) + "\n")
    print(json.dumps(kinds, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
