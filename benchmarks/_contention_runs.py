"""The contention half of ``calibrate_testbed.py --contention``: k concurrent jobs on the testbed's shared cores.

The testbed's hosts are network namespaces of one machine: their slots (4 x 2) share its few
physical cores (``os.cpu_count()``), so jobs running side by side slow each other down where they use
the CPU (their all-to-alls, the rank processes' Python, the links' shaping), though their "compute"
is a sleep. Measured here, per kernel and split: ``k`` = 1..hosts identical jobs submitted at once, each
pinned to its own host (or pair of hosts), and each job's time from submission to result. The model
(``granny.sim.contention``) is processor sharing for the part of a job that needs a core:

    slowdown(busy) = 1 + share * max(0, busy - cores) / cores

where ``busy`` is the slots running ranks; ``share`` (per kernel) is fitted by least squares on
T_k / T_1 - 1 (T_1: the same job alone in the same rep, so that the machine's background load at the
time cancels out as far as it can). Also measured: ``release``, the seconds from the planner's record
of an MPI job's last result to the dispatch of a job waiting for its slots (the ranks' processes
retire after a world; the worker forks fresh ones), from the journal of two jobs queued on one host.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import granny
from granny.experiment import kernels
from granny.experiment.live import Workload
from granny.experiment.loadprobe import LoadProbe

# (kernel, per-job split): the splits the scaled traces run most (2 ranks on a host, 2 ranks on 2 hosts)
CONFIGS = [("tb-mpi-compute", (2,)), ("tb-mpi-compute", (1, 1)), ("tb-mpi-network", (2,)),
           ("tb-mpi-network", (1, 1)), ("tb-omp", (2,))]


def placement(split: tuple[int, ...], i: int, hosts: int) -> str:
    """Job ``i``'s pin: a one-host job on host i; a two-host job on the i-th pair (h1+h2, h3+h4, then again)."""
    if len(split) == 1:
        return f"h{i % hosts + 1}:{split[0]}"
    first = (2 * i) % hosts
    return ",".join(f"h{(first + j) % hosts + 1}:{c}" for j, c in enumerate(split))


def run_batch(address: str, token: str, kernel: str, split: tuple[int, ...], k: int, hosts: int, w: Workload,
              tag: str) -> list[float]:
    """``k`` copies of a job submitted at once; each one's seconds from submission to result."""
    clients = [granny.connect(address, token, app_id=f"{tag}-{i}") for i in range(k)]
    done: dict[int, float] = {}
    lock = threading.Lock()
    futures = []
    try:
        starts = []
        for i, c in enumerate(clients):
            pin = placement(split, i, hosts)
            starts.append(time.perf_counter())
            if kernel == "tb-omp":  # thread 0 pinned; the team leased beside it (bin-pack), as the calibration's solo runs
                fut = c.options(hosts=pin.split(":")[0] + ":1").submit(
                    kernels.omp_job, sum(split), w.steps, w.serial, w.work, w.omp_nbytes)
            else:
                rounds = w.network_rounds if kernel == "tb-mpi-network" else 1
                fut = c.options(hosts=pin, migrate=False).submit_mpi(
                    kernels.mpi_job, sum(split), (w.steps, w.serial, w.work, w.nbytes, 0, rounds))

            def stamp(_f: Any, i: int = i) -> None:
                with lock:
                    done[i] = time.perf_counter()
            fut.add_done_callback(stamp)
            futures.append(fut)
        for fut in futures:
            fut.result(timeout=300)
        deadline = time.monotonic() + 5
        while len(done) < k and time.monotonic() < deadline:
            time.sleep(0.01)
        return [done[i] - starts[i] for i in range(k)]
    finally:
        for c in clients:
            c.close()


def run_chain(address: str, token: str, journal: Path, w: Workload, tag: str,
              rows: Any) -> dict[str, float] | None:
    """Two 2-rank jobs pinned to h1's two slots, submitted together: the second waits for the first's
    slots. Returns the planner's times: the first's last result, and the second's placement."""
    a = granny.connect(address, token, app_id=f"{tag}-a")
    b = granny.connect(address, token, app_id=f"{tag}-b")
    try:
        fa = a.options(hosts="h1:2", migrate=False).submit_mpi(kernels.mpi_job, 2, (w.steps, w.serial, w.work, w.nbytes, 0, 1))
        time.sleep(0.2)  # a benchmark: a is placed first
        fb = b.options(hosts="h1:2", migrate=False).submit_mpi(kernels.mpi_job, 2, (w.steps, w.serial, w.work, w.nbytes, 0, 1))
        fa.result(timeout=300)
        fb.result(timeout=300)
    finally:
        a.close()
        b.close()
    fin = rows(journal, "SELECT MAX(r.finished) FROM results r JOIN requests q ON q.req_id=r.req_id WHERE q.app_id=?",
               (f"{tag}-a",), 1)
    placed = rows(journal, "SELECT at FROM events WHERE app_id=? AND kind='app.placed' ORDER BY at", (f"{tag}-b",), 1)
    if not fin or fin[0][0] is None or not placed:
        return None
    return {"finished": float(fin[0][0]), "placed": float(placed[0][0]),
            "release": float(placed[0][0]) - float(fin[0][0])}


def fit_share(samples: list[dict[str, Any]], cores: int) -> dict[str, float]:
    """Least squares through the origin of (T_k / T_1 - 1) on max(0, busy - cores) / cores, per kernel."""
    out: dict[str, float] = {}
    for kernel in sorted({s["kernel"] for s in samples}):
        xs, ys = [], []
        for s in samples:
            if s["kernel"] != kernel:
                continue
            x = max(0.0, s["busy"] - cores) / cores
            xs.append(x)
            ys.append(s["slowdown"] - 1.0)
        sxx = sum(x * x for x in xs)
        out[kernel] = max(0.0, sum(x * y for x, y in zip(xs, ys, strict=True)) / sxx) if sxx else 0.0
    return out


def contention_runs(tb: Any, journal: Path, reps: int, hosts: int, slots: int, settle: Any, rows: Any,
                    log: Any, hog_counts: tuple[int, ...] = (0,)) -> dict[str, Any]:
    """``hog_counts``: also run each batch beside that many CPU-bound processes (a controlled background)."""
    mark = str(tb.state.state_dir)
    w = Workload()
    cores = os.cpu_count() or 1
    runs: list[dict[str, Any]] = []
    chains: list[dict[str, float]] = []
    loads: list[float] = []
    for rep in range(reps):
        for hogs in hog_counts:
            spinning = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(hogs)]
            try:
                for kernel, split in CONFIGS:
                    solo = None
                    for k in (range(1, hosts + 1) if hogs == 0 else (1, hosts)):
                        with granny.connect(tb.address, tb.token) as c:
                            settle(c)
                        with LoadProbe(mark) as probe:
                            secs = run_batch(tb.address, tb.token, kernel, split, k, hosts, w,
                                             f"ct-{rep}-{hogs}-{kernel}-{len(runs)}")
                        load = probe.result()
                        loads.append(load.loadavg[1])
                        mean = statistics.mean(secs)
                        solo = mean if k == 1 else solo
                        assert solo is not None
                        runs.append({"kernel": kernel, "split": list(split), "k": k, "busy": k * sum(split),
                                     "hogs": hogs, "background": load.background, "seconds": secs,
                                     "slowdown": mean / solo, "rep": rep, "load1": load.loadavg[1]})
                        log(f"contention {kernel} {split} x{k}, {hogs} hogs: {[round(s, 2) for s in secs]} "
                            f"(x{mean / solo:.3f}), background {load.background:.2f}, load {load.loadavg[1]:.1f}")
            finally:
                for h in spinning:
                    h.kill()
                    h.wait()
        with granny.connect(tb.address, tb.token) as c:
            settle(c)
        chain = run_chain(tb.address, tb.token, journal, w, f"chain-{rep}", rows)
        log(f"chain: {chain}")
        if chain is not None:
            chains.append(chain)
    share = fit_share(runs, cores)
    releases = [c["release"] for c in chains]
    return {
        "model": "slowdown = 1 + share * max(0, busy - cores) / cores (busy: slots running ranks)",
        "cores": cores, "share": {k: round(v, 4) for k, v in share.items()},
        "release": round(statistics.median(releases), 3) if releases else 0.0,
        "source": (f"benchmarks/calibrate_testbed.py --contention: {len(runs)} batches of k = 1..{hosts} concurrent "
                   f"jobs ({', '.join(f'{k} {s}' for k, s in CONFIGS)}), {reps} rep(s), on {hosts} x {slots} hosts "
                   f"sharing {cores} cores, load average {min(loads):.1f}-{max(loads):.1f}; release: median of "
                   f"{len(releases)} queued jobs (journal: last result -> next placement)"),
        "runs": runs, "chains": chains,
    }


def merge(path: Path, contention: dict[str, Any]) -> None:
    """Add (or replace) the ``contention`` entry of testbed.json, leaving the solo fit alone."""
    data = json.loads(path.read_text())
    data["contention"] = {k: v for k, v in contention.items() if k not in ("runs", "chains")}
    data["contention"]["measurements"] = [
        {"kernel": r["kernel"], "split": r["split"], "k": r["k"], "busy": r["busy"],
         "seconds": [round(s, 3) for s in r["seconds"]], "slowdown": round(r["slowdown"], 4)}
        for r in contention["runs"]]
    data["contention"]["releases"] = [round(c["release"], 3) for c in contention["chains"]]
    path.write_text(json.dumps(data, indent=2) + "\n")
