"""Fit the simulator's runtime model on the live replay's kernels, run on the namespace testbed (needs root).

    .venv/bin/python benchmarks/calibrate_testbed.py [--reps 2] [--slots 2] [--contention | --only-contention]

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
``--contention`` also measures how jobs running side by side slow each other down on the testbed's
shared cores, and how long a queued job waits for a finished MPI job's slots (``_contention_runs.py``),
and writes the ``contention`` entry of testbed.json; ``--only-contention`` measures that alone and
leaves the solo fit as it is.
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

from _contention_runs import contention_runs, merge
from calibrate_runtime import fit

import granny
from granny.experiment import kernels
from granny.experiment.calibration import TESTBED
from granny.experiment.live import LINKS, Workload
from granny.planner.policies import links
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


def journal_rows(journal: Path, sql: str, args: tuple[Any, ...], want: int) -> list[tuple[Any, ...]]:
    """Rows of the planner's journal, once at least ``want`` are committed (it writes in batches)."""
    deadline = time.monotonic() + 5
    while True:
        db = sqlite3.connect(f"file:{journal}?mode=ro", uri=True, timeout=5)
        try:
            rows = db.execute(sql, args).fetchall()
        finally:
            db.close()
        if len(rows) >= want or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)


def team_delay(journal: Path, app_id: str) -> float | None:
    """Seconds from an OpenMP-style job's submission (its thread 0 placed at once) to its team's request."""
    rows = journal_rows(journal, "SELECT created FROM requests WHERE app_id=? ORDER BY created", (app_id,), 2)
    return float(rows[1][0] - rows[0][0]) if len(rows) >= 2 else None


def run_move(client: Any, w: Workload, journal: Path, hosts: int) -> dict[str, float] | None:
    """One move of the MPI kernel: a 2-rank world is split over two hosts while a blocker call holds one
    slot of each host, and bin-pack moves it onto one host at its first point after the blockers end.
    Returns the job's submission, the move's decision and the job's end (wall clock), and how long the
    planner says the move took; the move's cost is fitted once the kernel's model is known."""
    hold = 1.5
    blockers = [client.options(hosts=f"h{i + 1}:1").submit(time.sleep, hold) for i in range(hosts)]
    time.sleep(0.3)  # the blockers are placed first (a benchmark, not a test)
    every = max(1, round(0.1 * w.steps))
    submitted = time.time()
    client.options(migrate=True).submit_mpi(kernels.mpi_job, 2, (w.steps, w.serial, w.work, w.nbytes, every)).result(
        timeout=300)
    ended = time.time()
    for b in blockers:
        b.result(timeout=60)
    rows = journal_rows(journal, "SELECT at, data FROM events WHERE app_id=? AND kind='migration.moved'",
                        (client.app_id,), 1)
    if len(rows) != 1:
        return None
    seconds = float(json.loads(rows[0][1])["seconds"])
    return {"submitted": submitted, "decided": float(rows[0][0]) - seconds, "ended": ended, "seconds": seconds}


def move_cost(move: dict[str, float], model: dict[str, float]) -> float:
    """What a move added to the job: its runtime less the model's (split until the decision, then on one host)."""
    def runtime(split: tuple[int, ...]) -> float:
        n = sum(split)
        return (model["a"] + model["b"] / n) * (1 + model["beta"] * links(split) / n)

    split, whole = runtime((1, 1)), runtime((2,))
    before = move["decided"] - move["submitted"]
    return (move["ended"] - move["submitted"]) - (before + max(0.0, 1 - before / split) * whole)


def testbed(tmp: str, hosts: int, slots: int) -> Testbed:
    """The testbed every calibration runs on, up: the live replays' links between its hosts."""
    tb = Testbed(hosts, slots=slots, prefix=PREFIX, subnet=SUBNET, state_dir=Path(tmp) / "tb",
                 heartbeat_timeout=5.0, ready_timeout=120.0, latency=LINKS["latency"], bandwidth=LINKS["bandwidth"])
    tb.up()
    return tb


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
    ap.add_argument("--contention", action="store_true", help="also measure k concurrent jobs (the contention model)")
    ap.add_argument("--only-contention", action="store_true", help="measure the contention model alone")
    ap.add_argument("--hogs", default="0", help="contention: also beside this many CPU-bound processes (e.g. 0,2,4)")
    ap.add_argument("--only-moves", action="store_true",
                    help="measure a move of the MPI kernel beside each --hogs count of CPU-bound processes alone")
    args = ap.parse_args()
    if args.only_contention:
        return only_contention(args)
    if args.only_moves:
        return only_moves(args)
    w = Workload()
    hosts = max(len(s) for s in MPI_SPLITS + OMP_SPLITS)
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="calibrate-") as tmp:
        tb = testbed(tmp, hosts, args.slots)
        journal = Path(tb.state.data_dir) / "journal.sqlite"
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
                    app = f"cal-omp-{rep}-{len(runs)}"
                    with granny.connect(tb.address, tb.token, app_id=app) as c:
                        settle(c)
                        secs = run_omp(c, split, w, args.slots)
                    delay = team_delay(journal, app) if split == (2,) else None
                    runs.append({"kernel": "tb-omp", "split": list(split), "seconds": secs, "rep": rep,
                                 "team_delay": delay})
                    log(f"omp {split}: {secs:.2f} s")
                with granny.connect(tb.address, tb.token, app_id=f"cal-move-{rep}") as c:
                    settle(c)
                    moved = run_move(c, w, journal, hosts)
                runs.append({"kernel": "move", "split": [1, 1], "seconds": None, "move": moved, "rep": rep})
                log(f"move of a 2-rank world: {moved}")
            contention = contention_runs(tb, journal, args.reps, hosts, args.slots, settle, journal_rows, log,
                                         tuple(int(h) for h in args.hogs.split(","))) if args.contention else None
        finally:
            tb.down()
    kinds = {}
    for kind in ("tb-mpi-compute", "tb-mpi-network", "tb-omp"):
        points = [(tuple(r["split"]), r["seconds"]) for r in runs if r["kernel"] == kind]
        kinds[kind] = {**fit(points), "source": f"benchmarks/calibrate_testbed.py: {len(points)} runs of the "
                       f"{'OpenMP-style' if kind == 'tb-omp' else 'MPI'} kernel{' (network-bound)' if 'network' in kind else ''} alone on the testbed, pinned splits"}
        log(f"{kind}: {kinds[kind]}")
    moves = [r["move"] for r in runs if r["kernel"] == "move" and r["move"] is not None]
    costs = [move_cost(m, kinds["tb-mpi-compute"]) for m in moves]
    delays = [r["team_delay"] for r in runs if r.get("team_delay") is not None]
    log(f"move costs {costs}, team delays {delays}")
    planner_times = ", ".join(f"{m['seconds']:.3f}" for m in moves)
    data = {"model": "runtime = (a + b/n) * (1 + beta * links(split)/n)",
            "fitted_by": "benchmarks/calibrate_testbed.py on the namespace testbed (this machine)",
            "workload": w.to_json(), "links": LINKS, "slots": args.slots, "kinds": kinds, "aliases": ALIASES,
            "move_cost": round(max(0.0, statistics.median(costs)), 3) if costs else None,
            "move_cost_source": f"median of {len(costs)} moves of a 2-rank world: its runtime less the model's "
                                f"(the planner's own move times: {planner_times} s)",
            "team_delay": round(statistics.median(delays), 3) if delays else None,
            "team_delay_source": f"median of {len(delays)} omp jobs: thread 0's request to its team's (journal)",
            "measurements": [{"kernel": r["kernel"], "split": r["split"], "seconds": round(r["seconds"], 3)}
                             for r in runs if r["kernel"] != "move"]}
    Path(args.out).write_text(json.dumps(data, indent=2) + "\n")
    Path(args.raw).write_text(json.dumps({"runs": runs, "when": time.strftime("%Y-%m-%d %H:%M:%S")}, indent=1) + "\n")
    if contention is not None:
        merge(Path(args.out), contention)
        raw_contention(args.raw, contention)
    print(json.dumps(kinds, indent=2))
    return 0


def raw_contention(raw: str, contention: dict[str, Any]) -> None:
    path = Path(raw).with_name("calibrate_contention.json")
    path.write_text(json.dumps({**contention, "when": time.strftime("%Y-%m-%d %H:%M:%S")}, indent=1) + "\n")


def only_contention(args: argparse.Namespace) -> int:
    hosts = max(len(s) for s in MPI_SPLITS + OMP_SPLITS)
    with tempfile.TemporaryDirectory(prefix="calibrate-") as tmp:
        tb = testbed(tmp, hosts, args.slots)
        try:
            contention = contention_runs(tb, Path(tb.state.data_dir) / "journal.sqlite", args.reps, hosts, args.slots,
                                         settle, journal_rows, log, tuple(int(h) for h in args.hogs.split(",")))
        finally:
            tb.down()
    merge(Path(args.out), contention)
    raw_contention(args.raw, contention)
    print(json.dumps({k: contention[k] for k in ("cores", "share", "release", "source")}, indent=2))
    return 0


def only_moves(args: argparse.Namespace) -> int:
    """Moves of a 2-rank world beside 0, 2, 4... CPU-bound processes, with the other work measured during
    each (``LoadProbe``): what a move costs on a loaded machine (benchmarks/results/calibrate_moves.json)."""
    import subprocess

    from granny.experiment.loadprobe import LoadProbe

    hosts = max(len(s) for s in MPI_SPLITS + OMP_SPLITS)
    model = json.loads(Path(args.out).read_text())["kinds"]["tb-mpi-compute"]
    w = Workload()
    moves: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="calibrate-") as tmp:
        tb = testbed(tmp, hosts, args.slots)
        journal = Path(tb.state.data_dir) / "journal.sqlite"
        try:
            for rep in range(args.reps):
                for hogs in (int(h) for h in args.hogs.split(",")):
                    spinning = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(hogs)]
                    try:
                        with granny.connect(tb.address, tb.token, app_id=f"mv-{rep}-{hogs}") as c:
                            settle(c)
                            with LoadProbe(str(tb.state.state_dir)) as probe:
                                moved = run_move(c, w, journal, hosts)
                    finally:
                        for h in spinning:
                            h.kill()
                            h.wait()
                    load = probe.result()
                    cost = move_cost(moved, model) if moved is not None else None
                    moves.append({"rep": rep, "hogs": hogs, "background": load.background, "move": moved, "cost": cost})
                    log(f"move beside {hogs} hogs: cost {cost}, background {load.background:.2f}")
        finally:
            tb.down()
    path = Path(args.raw).with_name("calibrate_moves.json")  # added to the moves measured before
    before = json.loads(path.read_text())["moves"] if path.exists() else []
    path.write_text(json.dumps({"moves": before + moves, "when": time.strftime("%Y-%m-%d %H:%M:%S")}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
