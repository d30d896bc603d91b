"""MPI benchmark: granny's MPI layer vs mpi4py + Open MPI, 2 ranks (and 4, for collectives) on one host.

Usage (normally through ``scripts/bench mpi``, which also installs the peer)::

    python benchmarks/mpi_bench.py [--reps N] [--systems granny,openmpi] [--budget 1.0]
                                   [--launches 5] [--update-readme]

The same file is also **the MPI program** (``--rank OUT.json``), run as 2 ranks by either
``granny run -n 2 benchmarks/mpi_bench.py --rank OUT`` (inside a granule ``from mpi4py import MPI``
is granny's implementation) or ``mpirun -n 2 PEERS_PY benchmarks/mpi_bench.py --rank OUT``. Rank 0
writes the medians to OUT (an absolute path). It measures, in order (ping-pong values are one-way,
RTT/2):

* buffer ``Send/Recv`` of 8 B, 1 KiB, 64 KiB, 1 MiB, 4 MiB, 16 MiB (uint8)
* ``send/recv`` (pickled) of an 8 B numpy array, and of 1 MiB
* ``Allreduce`` of 1M float64 (SUM), ``Alltoall`` of 1 MiB per pair, ``Bcast`` of 8 MiB
* small collectives: ``Barrier``, ``Allreduce`` of one float64, ``Bcast`` of 8 B, ``allreduce`` and ``bcast``
  of a Python float; then these and the 1M ``Allreduce`` again at 4 ranks (``--small-only``, a second job)
* one-sided: ``Put``/``Get`` of 8 B with ``Fence`` and with ``Lock``/``Unlock`` (``_rma_bench.py``)
* the CPU time used by rank 1 while blocked 3 s in ``comm.recv`` (rank 0 sleeps 3 s, then sends):
  ``time.process_time()`` of the whole rank process ÷ wall time, in % of one core

The driver runs every system REPS times (env ``REPS``, default 3) in fresh child processes,
interleaved round-robin (see ``_harness``). A child (``--child SYSTEM``) runs the MPI program once,
then measures launch latency ``--launches`` times (plus one untimed warm-up): from starting the
launcher process to the first line on its stdout, for ``examples/mpi/hello.py``:

* granny:  ``granny run -n 2 examples/mpi/hello.py`` against a ``granny up --workers 1 --slots 2``
  that the child started beforehand (and stops at the end); the CLI's own start-up is included
* openmpi: ``mpirun -n 2 PEERS_PY examples/mpi/hello.py``

Results: ``benchmarks/results/mpi.md`` and ``mpi.json``, a table metric | granny | mpi4py+Open MPI |
ratio (granny ÷ peer) | target | verdict. A system that cannot run is reported ("failed: <reason>" or
"unavailable"), never fatal: the other column still runs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CACHE = Path(os.environ.get("GRANNY_CACHE", Path.home() / ".cache" / "granny"))
PEER_PY = Path(os.environ.get("PEERS_MPI_VENV", CACHE / "peers-mpi")) / "bin" / "python"
HELLO = REPO / "examples" / "mpi" / "hello.py"
MIB = 1 << 20
BLOCK_S = 3.0


# ================================================================================ the MPI program (ranks)
def rank_main(out: str, budget: float, small_only: bool = False) -> int:
    import numpy as np
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    if size != 2 and not small_only:
        raise SystemExit(f"run with exactly 2 ranks, not {size} (or pass --small-only)")
    peer = 1 - rank
    now = time.perf_counter
    res: dict[str, Any] = {}

    def stats(samples: list[float]) -> dict[str, float]:
        a = sorted(samples)
        return {"median": float(np.median(a)), "p10": a[int(0.1 * (len(a) - 1))],
                "p90": a[int(0.9 * (len(a) - 1))], "min": a[0], "n": len(a)}

    def loop(body: Any, iters: int, warm: int, div: float = 1.0) -> dict[str, float]:
        """``warm`` untimed calls of ``body``, then up to ``iters`` timed ones; every 64 calls rank 0
        decides (bcast, outside the timing) whether the budget is spent, so both ranks stop together."""
        for _ in range(warm):
            body()
        out: list[float] = []
        t_end = now() + budget
        for i in range(1, iters + 1):
            t0 = now()
            body()
            out.append((now() - t0) / div)
            if i % 64 == 0 and comm.bcast(now() > t_end if rank == 0 else None, root=0):
                break
        return stats(out)

    def put(key: str, value: dict[str, float]) -> None:
        res[key] = value
        if rank == 0:  # rewrite after every metric: a crash or a hang still leaves the earlier figures
            tmp = out + ".part"
            with open(tmp, "w") as f:
                json.dump(res, f, indent=1)
            os.replace(tmp, out)

    def small_collectives() -> None:
        """Collectives of one number / 8 bytes, every rank taking part. Symmetric ones are timed per call on
        rank 0 (each call waits for every rank); rooted ones (root 0) in batches of 64 closed by a Barrier,
        whose cost is spread over the batch, since a root may otherwise run ahead of its receivers."""
        one, res1 = np.array([rank + 1.0]), np.empty(1)
        eight = np.zeros(8, np.uint8)
        comm.Barrier()
        put("Barrier_s", loop(comm.Barrier, 20000, 200))
        comm.Barrier()
        put("Allreduce_1_f64_s", loop(lambda: comm.Allreduce(one, res1, op=MPI.SUM), 20000, 200))
        assert res1[0] == size * (size + 1) / 2, "Allreduce: wrong result"
        comm.Barrier()
        put("allreduce_float_s", loop(lambda: comm.allreduce(1.5), 20000, 200))

        def batch(body: Any) -> Any:
            def run() -> None:
                for _ in range(64):
                    body()
                comm.Barrier()
            return run

        comm.Barrier()
        put("Bcast_8B_s", loop(batch(lambda: comm.Bcast(eight, root=0)), 500, 5, div=64))
        comm.Barrier()
        put("bcast_float_s", loop(batch(lambda: comm.bcast(2.5 if rank == 0 else None, root=0)), 500, 5, div=64))
        assert comm.bcast(2.5 if rank == 0 else None, root=0) == 2.5

    def allreduce_1m() -> None:
        s = np.random.default_rng(rank).random(1_000_000)
        r = np.empty_like(s)
        samples = []
        for i in range(5 + 200):
            comm.Barrier()  # as in the peer-bench: time the collective, not the skew between ranks
            t0 = now()
            comm.Allreduce(s, r, op=MPI.SUM)
            if i >= 5:
                samples.append(now() - t0)
            if i >= 15 and i % 8 == 0 and comm.bcast(sum(samples) > budget if rank == 0 else None, root=0):
                break
        expect = sum(np.random.default_rng(k).random(1_000_000) for k in range(size))
        assert np.allclose(r, expect), "Allreduce: wrong result"
        put("Allreduce_1M_f64_s", stats(samples))

    def alltoall_1m() -> None:
        """``Alltoall`` of 1 MiB per pair (a matrix transpose's exchange), with a Barrier before each."""
        sa = np.full(size * MIB, rank, dtype=np.uint8)
        ra = np.empty_like(sa)
        samples = []
        for i in range(3 + 100):
            comm.Barrier()
            t0 = now()
            comm.Alltoall(sa, ra)
            if i >= 3:
                samples.append(now() - t0)
            if i >= 13 and i % 8 == 0 and comm.bcast(sum(samples) > budget if rank == 0 else None, root=0):
                break
        assert (ra.reshape(size, MIB)[:, 0] == np.arange(size)).all(), "Alltoall: wrong result"
        put("Alltoall_1MiB_s", stats(samples))

    if small_only:  # the 4-rank run: collectives only
        small_collectives()
        allreduce_1m()
        alltoall_1m()
        comm.Barrier()
        return 0

    # --- buffer Send/Recv
    for nbytes, name, iters in ((8, "8B", 5000), (1024, "1KiB", 5000), (64 * 1024, "64KiB", 2000),
                                (MIB, "1MiB", 300), (4 * MIB, "4MiB", 100), (16 * MIB, "16MiB", 40)):
        sbuf = np.ones(nbytes, dtype=np.uint8)
        rbuf = np.empty(nbytes, dtype=np.uint8)

        def pp_buf(sbuf: Any = sbuf, rbuf: Any = rbuf) -> None:
            if rank == 0:
                comm.Send(sbuf, dest=peer, tag=1)
                comm.Recv(rbuf, source=peer, tag=1)
            else:
                comm.Recv(rbuf, source=peer, tag=1)
                comm.Send(sbuf, dest=peer, tag=1)

        comm.Barrier()
        put(f"SendRecv_{name}_s", loop(pp_buf, iters, 5 if nbytes >= MIB else 20, div=2))
        if rank == 0:
            assert rbuf[0] == 1 and rbuf[-1] == 1

    # --- pickled send/recv (after the buffers, as in peer-bench/mpi_bench.py: the 16 MiB buffers
    # raised glibc's mmap threshold, so 1 MiB unpickles are not fresh mmaps + page faults each time)
    for nbytes, name, iters in ((8, "8B", 5000), (MIB, "1MiB", 200)):
        obj = np.ones(nbytes, dtype=np.uint8)

        def pp_obj(obj: Any = obj) -> None:
            if rank == 0:
                comm.send(obj, dest=peer, tag=2)
                comm.recv(source=peer, tag=2)
            else:
                comm.recv(source=peer, tag=2)
                comm.send(obj, dest=peer, tag=2)

        comm.Barrier()
        put(f"sendrecv_pickle_{name}_s", loop(pp_obj, iters, 20, div=2))

    # --- collectives
    allreduce_1m()
    alltoall_1m()
    small_collectives()

    b = np.ones(MIB, dtype=np.float64) if rank == 0 else np.zeros(MIB, dtype=np.float64)
    samples = []
    for i in range(3 + 100):
        comm.Barrier()
        t0 = now()
        comm.Bcast(b, root=0)
        if i >= 3:
            samples.append(now() - t0)
        if i >= 13 and i % 8 == 0 and comm.bcast(sum(samples) > budget if rank == 0 else None, root=0):
            break
    assert b[-1] == 1.0, "Bcast: wrong result"
    put("Bcast_8MiB_s", stats(samples))

    # --- one-sided (benchmarks/_rma_bench.py)
    sys.path.insert(0, str(HERE))
    import _rma_bench

    _rma_bench.measure(MPI, comm, loop, put)

    # --- CPU burnt by a rank blocked in recv
    comm.Barrier()
    if rank == 0:
        time.sleep(BLOCK_S)
        comm.send("wake", dest=1, tag=7)
        cpu = comm.recv(source=1, tag=8)
        put("blocked_recv_cpu_frac", {"median": cpu["cpu_s"] / cpu["wall_s"], "n": 1, **cpu})
    else:
        c0, w0 = time.process_time(), now()
        msg = comm.recv(source=0, tag=7)
        c1, w1 = time.process_time(), now()
        assert msg == "wake"
        comm.send({"cpu_s": c1 - c0, "wall_s": w1 - w0}, dest=0, tag=8)

    if rank == 0:
        vendor = MPI.get_vendor() if hasattr(MPI, "get_vendor") else ("?", ())
        try:
            lib = MPI.Get_library_version().replace("\0", "").strip().splitlines()[0]  # Open MPI pads it with a NUL
        except Exception:
            lib = "?"
        mpi4py = sys.modules.get("mpi4py")
        res["_meta"] = {"library": lib, "vendor": list(vendor), "numpy": np.__version__,
                        "mpi4py": getattr(mpi4py, "__version__", "?"),
                        "mpi4py_file": getattr(mpi4py, "__file__", "?")}
        granny_rt = sys.modules.get("granny.mpi.runtime")
        if granny_rt is not None:  # which same-host rings granny used: the C extension or the fallback
            fast = granny_rt.get().world.fabric.fast
            res["_meta"]["rings"] = "C (granny.mpi._fastring)" if fast else "pure Python (GRANNY_MPI_PURE or no C build)"
        put("_meta", res["_meta"])
        for k, v in res.items():
            if k != "_meta":
                print(f"{k:28s} median {v['median'] * (1 if k.endswith('frac') else 1e6):12.2f}"
                      f"{'' if k.endswith('frac') else ' us'}", flush=True)
    comm.Barrier()
    return 0


# ==================================================================================== child (one launch)
def _granny_cli() -> list[str]:
    from granny.cluster import granny_command

    return granny_command()


def _peer_env() -> dict[str, str]:
    return {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
            "OMPI_MCA_rmaps_base_oversubscribe": "1"}


def GrannyUp(data_dir: str) -> Any:  # granny.cluster.UpProcess, the one implementation
    from granny.cluster import UpProcess  # here, not at the top: this file also runs under the peer's python

    return UpProcess(data_dir, slots=4)


def first_line_latency(cmd: list[str], env: dict[str, str], timeout: float) -> tuple[float, float, int, str]:
    """(seconds to the first stdout line, seconds to exit, exit code, first line)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env,
                            start_new_session=True)
    assert proc.stdout is not None and proc.stderr is not None
    err: list[bytes] = []
    t_err = threading.Thread(target=lambda: err.append(proc.stderr.read()), daemon=True)  # type: ignore[union-attr]
    t_err.start()
    timer = threading.Timer(timeout, lambda: os.killpg(proc.pid, signal.SIGKILL))
    timer.start()
    try:
        line = proc.stdout.readline()
        t_first = time.perf_counter() - t0
        proc.stdout.read()
        rc = proc.wait()
        t_exit = time.perf_counter() - t0
    finally:
        timer.cancel()
    t_err.join(5)
    if rc != 0 or not line:
        tail = b"".join(err).decode(errors="replace").strip().splitlines()[-3:]
        raise RuntimeError(f"`{' '.join(Path(c).name for c in cmd[:4])} ...` exited {rc}: {' | '.join(tail)[-400:]}")
    return t_first, t_exit, rc, line.decode(errors="replace").strip()


def child(system: str, out: str, budget: float, launches: int, job_timeout: float) -> int:
    sys.path.insert(0, str(HERE))
    import _harness as H

    res = H.ChildResult(out, system)
    scratch = tempfile.mkdtemp(prefix=f"mpi-bench-{system}-")
    rank_out = os.path.join(scratch, "ranks.json")
    up: Any = None
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    errors: dict[str, str] = {}
    try:
        if system == "granny":
            env.pop("GRANNY_ADDRESS", None)
            env.pop("GRANNY_TOKEN", None)
            up = GrannyUp(os.path.join(scratch, "state"))  # 4 slots: the 4-rank run (oversubscribed)
            env.update(up.env)
            res.put("up_ready_s", H.single(up.ready_s))
            launch = [*_granny_cli(), "run", "-n", "2"]
            res.meta(launcher="granny run -n 2 (against granny up --workers 1 --slots 4)")
        else:
            env.update(_peer_env())
            mpirun = shutil.which("mpirun")
            if not mpirun or not PEER_PY.exists():
                res.meta(skipped=f"unavailable (mpirun: {mpirun}, {PEER_PY}: {PEER_PY.exists()})")
                return 0
            launch = [mpirun, "--oversubscribe", "-n", "2", str(PEER_PY)]
            res.meta(launcher="mpirun -n 2 " + str(PEER_PY))

        # 1. the MPI program
        cmd = [*launch, str(Path(__file__).resolve()), "--rank", rank_out, "--budget", str(budget)]
        print("$ " + " ".join(cmd), flush=True)
        t0 = time.perf_counter()
        try:
            p = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               timeout=job_timeout, start_new_session=True)
            text = p.stdout.decode(errors="replace")
            print(text, flush=True)
            if p.returncode != 0:
                tail = [ln.strip() for ln in text.strip().splitlines()][-4:]
                errors["program"] = f"exit code {p.returncode}: {' | '.join(tail)[-500:]}"
        except subprocess.TimeoutExpired as e:
            errors["program"] = f"timed out after {job_timeout:.0f} s (a hang?)"
            print((e.stdout or b"").decode(errors="replace"), flush=True)
        res.put("program_wall_s", H.single(time.perf_counter() - t0))
        if os.path.exists(rank_out):
            for k, v in json.loads(Path(rank_out).read_text()).items():
                if k == "_meta":
                    res.meta(**{f"mpi_{kk}": vv for kk, vv in v.items()})
                else:
                    res.put(k, v)

        # 1b. the collectives again at 4 ranks (on 2 cores: oversubscribed, as mpirun --oversubscribe)
        rank4 = os.path.join(scratch, "ranks4.json")
        launch4 = [*launch[:-1], "4"] if system == "granny" else [*launch[:3], "4", *launch[4:]]
        cmd4 = [*launch4, str(Path(__file__).resolve()), "--rank", rank4, "--budget", str(budget), "--small-only"]
        print("$ " + " ".join(cmd4), flush=True)
        try:
            p = subprocess.run(cmd4, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, timeout=job_timeout, start_new_session=True)
            print(p.stdout.decode(errors="replace"), flush=True)
            if p.returncode != 0:
                errors["program4"] = f"exit code {p.returncode}"
        except subprocess.TimeoutExpired:
            errors["program4"] = f"timed out after {job_timeout:.0f} s (a hang?)"
        if os.path.exists(rank4):
            for k, v in json.loads(Path(rank4).read_text()).items():
                if k != "_meta":
                    res.put(f"{k}@4", v)

        # 2. launch latency of hello.py
        firsts, exits = [], []
        try:
            hello = [*launch, str(HELLO)]
            first_line_latency(hello, env, job_timeout)  # warm-up: page cache, the cluster's first app
            for _ in range(launches):
                t_first, t_exit, _, line = first_line_latency(hello, env, job_timeout)
                firsts.append(t_first)
                exits.append(t_exit)
            res.meta(hello_first_line=line)
            res.put("launch_first_output_s", H.stats(firsts))
            res.put("launch_exit_s", H.stats(exits))
        except (RuntimeError, OSError) as e:
            errors["launch"] = str(e)
    finally:
        if up is not None:
            up.stop()
        shutil.rmtree(scratch, ignore_errors=True)
        if errors:
            res.meta(errors=errors)
    for k, v in errors.items():
        print(f"{system}: {k} failed: {v}", file=sys.stderr)
    return 0


# ============================================================================================= driver
SYSTEMS = ["granny", "openmpi"]
LABEL = {"granny": "granny", "openmpi": "mpi4py + Open MPI"}
ROWS = [  # key, label, kind, target op, target bound, target text
    ("sendrecv_pickle_8B_s", "`send/recv` pickled, 8 B ndarray, one-way", "time", "<=", 1.25, "≤ 1.25×"),
    ("sendrecv_pickle_1MiB_s", "`send/recv` pickled, 1 MiB ndarray, one-way", "time", None, None, ""),
    ("SendRecv_8B_s", "`Send/Recv` buffer 8 B, one-way", "time", "<=", 3.0, "≤ 3×"),
    ("SendRecv_1KiB_s", "`Send/Recv` buffer 1 KiB, one-way", "time", None, None, ""),
    ("SendRecv_64KiB_s", "`Send/Recv` buffer 64 KiB, one-way", "time", "<=", 1.25, "≤ 1.25×"),
    ("SendRecv_1MiB_s", "`Send/Recv` buffer 1 MiB, one-way", "time", "<=", 1.25, "≤ 1.25×"),
    ("SendRecv_4MiB_s", "`Send/Recv` buffer 4 MiB, one-way", "time", "<=", 1.25, "≤ 1.25×"),
    ("SendRecv_16MiB_s", "`Send/Recv` buffer 16 MiB, one-way (bandwidth)", "bw16", "<=", 1.25,
     "bandwidth ≥ 0.8× (time ≤ 1.25×)"),
    ("Allreduce_1M_f64_s", "`Allreduce` 1M float64, SUM", "time", "<=", 1.1, "≤ 1.1×"),
    ("Alltoall_1MiB_s", "`Alltoall` 1 MiB per pair", "time", "<=", 1.25, "≤ 1.25×"),
    ("Barrier_s", "`Barrier`", "time", "<=", 2.0, "≤ 2×"),
    ("Allreduce_1_f64_s", "`Allreduce` 1 float64, SUM", "time", "<=", 2.0, "≤ 2×"),
    ("Bcast_8B_s", "`Bcast` 8 B ³", "time", "<=", 2.0, "≤ 2×"),
    ("allreduce_float_s", "`allreduce` of a Python float", "time", "<=", 1.25, "≤ 1.25×"),
    ("bcast_float_s", "`bcast` of a Python float ³", "time", "<=", 1.25, "≤ 1.25×"),
    ("Allreduce_1M_f64_s@4", "4 ranks: `Allreduce` 1M float64, SUM", "time", "<=", 1.1, "≤ 1.1×"),
    ("Alltoall_1MiB_s@4", "4 ranks: `Alltoall` 1 MiB per pair", "time", "<=", 1.25, "≤ 1.25×"),
    ("Barrier_s@4", "4 ranks: `Barrier`", "time", "<=", 2.0, "≤ 2×"),
    ("Allreduce_1_f64_s@4", "4 ranks: `Allreduce` 1 float64, SUM", "time", "<=", 2.0, "≤ 2×"),
    ("Bcast_8B_s@4", "4 ranks: `Bcast` 8 B ³", "time", "<=", 2.0, "≤ 2×"),
    ("allreduce_float_s@4", "4 ranks: `allreduce` of a Python float", "time", "<=", 1.25, "≤ 1.25×"),
    ("bcast_float_s@4", "4 ranks: `bcast` of a Python float ³", "time", "<=", 1.25, "≤ 1.25×"),
    ("Bcast_8MiB_s", "`Bcast` 8 MiB", "time", None, None, ""),
    ("Put_8B_fence_s", "`Put` 8 B + `Fence` (`Win.Allocate`)", "time", "<=", 3.0, "≤ 3×"),
    ("Get_8B_fence_s", "`Get` 8 B + `Fence` (`Win.Allocate`)", "time", "<=", 3.0, "≤ 3×"),
    ("Put_8B_lock_s", "`Lock`, `Put` 8 B, `Unlock` (`Win.Allocate`)", "time", "<=", 3.0, "≤ 3×"),
    ("Get_8B_lock_s", "`Lock`, `Get` 8 B, `Unlock` (`Win.Allocate`)", "time", "<=", 3.0, "≤ 3×"),
    ("launch_first_output_s", "launch → first output, `hello.py` on 2 ranks ¹", "time", "<=", 0.3, "≤ 0.3×"),
    ("launch_exit_s", "launch → exit, `hello.py` on 2 ranks", "time", None, None, ""),
    ("blocked_recv_cpu_frac", f"CPU of a rank blocked {BLOCK_S:.0f} s in `recv` (% of a core)", "pct", None, None,
     "report"),
]


def available(system: str) -> str | None:
    if system == "openmpi":
        if not shutil.which("mpirun"):
            return "unavailable: no `mpirun` (apt-get install openmpi-bin libopenmpi-dev)"
        if not PEER_PY.exists():
            return f"unavailable: no peer venv at {PEER_PY.parent.parent} (scripts/_peers_mpi.sh)"
        p = subprocess.run([str(PEER_PY), "-c", "import mpi4py, numpy; print(mpi4py.__version__)"],
                           capture_output=True, text=True)
        if p.returncode != 0:
            return f"unavailable: mpi4py not importable in {PEER_PY}"
    return None


def report(launches: list[Any], systems: list[str], status: dict[str, str], cfg: dict[str, Any]) -> tuple[str, dict]:
    import _harness as H

    agg = {s: {k: H.aggregate(launches, s, k) for k, *_ in ROWS} for s in systems}

    def cell(s: str, key: str, kind: str) -> str:
        if s not in systems:
            return "–"
        if status[s] != "ok":
            return status[s].split(":")[0]
        a = agg[s][key]
        if not a:
            errs = sorted({e for ln in launches if ln.system == s
                           for e in ln.data.get("_meta", {}).get("errors", {}).values()})
            return "failed ²" if errs else "–"
        if kind == "pct":
            f = lambda v: f"{100 * v:.0f} %"  # noqa: E731
        else:
            f = H.fmt_time
        txt = f(a["median"])
        if a["n"] > 1:
            txt += f" ({H.fmt_range(f, a['min'], a['max'])})"
        if kind == "bw16":
            txt += f", {16 * MIB / a['median'] / 1e9:.1f} GB/s"
        return txt

    rows, targets = [], []
    for key, label, kind, op, bound, ttext in ROWS:
        a, b = agg.get("granny", {}).get(key), agg.get("openmpi", {}).get(key)
        ratio = a["median"] / b["median"] if a and b and b["median"] else None
        pr = H.paired_ratios(a, b)
        if kind == "pct":
            rtxt = "–"
        else:
            rtxt = H.fmt_ratio(ratio)
            if ratio is not None and len(pr) > 1:
                rtxt += f" ({H.fmt_range(H.fmt_ratio, min(pr), max(pr))})"
        if op is None:
            verdict = "report" if kind == "pct" else ""
        elif ratio is None:
            verdict = "n/a"
        else:
            ok = ratio <= bound if op == "<=" else ratio >= bound
            verdict = "✅ pass" if ok else "❌ FAIL"
        if op is not None:
            targets.append({"metric": key, "target": ttext, "op": op, "bound": bound, "ratio": ratio,
                            "paired_ratios": pr, "verdict": verdict})
        rows.append([label, cell("granny", key, kind), cell("openmpi", key, kind), rtxt, ttext, verdict])
    table = H.md_table(["metric (median of launch medians, min–max)", "granny", "mpi4py + Open MPI",
                        "ratio (granny ÷ peer)", "target", "verdict"], rows, align="lrrrll")

    def meta(s: str, k: str) -> str:
        return next((str(ln.data["_meta"][k]) for ln in launches
                     if ln.system == s and k in ln.data.get("_meta", {})), "?")

    notes = []
    for s in systems:
        if status[s] != "ok":
            notes.append(f"- **{LABEL[s]}**: {status[s]}")
    for ln in launches:
        for what, e in ln.data.get("_meta", {}).get("errors", {}).items():
            notes.append(f"- ² {LABEL[ln.system]} launch {ln.rep}: {what} failed: {e}")
        if ln.error:
            notes.append(f"- {LABEL[ln.system]} launch {ln.rep}: {ln.error}")
        if ln.stragglers:
            notes.append(f"- {LABEL[ln.system]} launch {ln.rep}: had to end {len(ln.stragglers)} leftover "
                         f"process(es): {'; '.join(ln.stragglers)[:300]}")
    m = cfg["machine"]
    peer_lib = str(meta("openmpi", "mpi_library")).replace("\0", "")
    body = f"""Generated by `scripts/bench mpi` (`benchmarks/mpi_bench.py`) on {cfg['date']}: {cfg['reps']} launches per
system, interleaved round-robin, 2 ranks on one host. Each cell is the median of the launch medians
(min–max over launches); ping-pong figures are one-way (RTT/2). Ratios are granny ÷ peer of the medians,
with the range of the paired per-launch ratios. granny's same-host rings: {meta('granny', 'mpi_rings')}.
Peer: {peer_lib}, mpi4py {meta('openmpi', 'mpi_mpi4py')}.
Machine: {m['cpus']} CPUs ({m['cpu_model']}), {m['mem_gib']} GiB, Python {m['python']}; load average
{cfg['load_start']} at start, {cfg['load_end']} at end; granny rev {cfg['git']}. Absolute times drift 20–50 %
between runs on this shared machine: compare the ratios, which were measured side by side.

{table}

¹ From starting the launcher process to the first line on its stdout, {cfg['launches']} launches per child
(after one warm-up): granny = `granny run -n 2 examples/mpi/hello.py` against an already running
`granny up --workers 1 --slots 2` (the CLI's start-up is included); peer = `mpirun -n 2 python
examples/mpi/hello.py`. The blocked-`recv` row is `time.process_time()` of rank 1's whole process ÷ wall
time while it waits {BLOCK_S:.0f} s for a message (Open MPI busy-polls).
³ Root 0, timed in batches of 64 calls closed by a `Barrier` (whose cost is spread over the batch). Rows
"4 ranks" run the collectives again as 4 ranks on this machine's {m['cpus']} cores (oversubscribed:
`mpirun --oversubscribe`, and granny's 4 slots).
"""
    if notes:
        body += "\n### Notes\n\n" + "\n".join(notes) + "\n"
    md = "# MPI: granny vs mpi4py + Open MPI\n\n" + body
    js = {"benchmark": "mpi", "config": cfg, "status": status, "targets": targets, "aggregate": agg,
          "launches": [{"system": ln.system, "rep": ln.rep, "rc": ln.rc, "wall_s": ln.wall_s, "error": ln.error,
                        "stragglers": ln.stragglers, "data": ln.data} for ln in launches]}
    return md, js


def driver(args: argparse.Namespace) -> int:
    sys.path.insert(0, str(HERE))
    import _harness as H

    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    if [s for s in systems if s not in SYSTEMS]:
        sys.exit(f"unknown system(s) in {systems}; known: {SYSTEMS}")
    status = {}
    for s in systems:
        why = available(s)
        status[s] = "ok" if why is None else why
        if why:
            print(f"[mpi] {LABEL[s]}: {why}", file=sys.stderr)
    runnable = [s for s in systems if status[s] == "ok"]
    cfg: dict[str, Any] = {"reps": args.reps, "budget_s": args.budget, "launches": args.launches, "systems": systems,
                           "date": dt.datetime.now().strftime("%Y-%m-%d %H:%M"), "machine": H.machine_info(),
                           "load_start": H.loadavg(), "git": H.git_rev(REPO)}
    workdir = Path(tempfile.mkdtemp(prefix="mpi-bench-"))
    print(f"[mpi] {len(runnable)} systems x {args.reps} launches; raw results and logs in {workdir}", file=sys.stderr)
    extra = ["--budget", str(args.budget), "--launches", str(args.launches), "--job-timeout", str(args.job_timeout)]
    launches = []
    for rep in range(1, args.reps + 1):
        for s in H.rotate(runnable, rep - 1):
            print(f"[mpi] rep {rep}/{args.reps} {LABEL[s]:18s} load {H.loadavg()} ...", end="", file=sys.stderr,
                  flush=True)
            ln = H.run_child(Path(__file__).resolve(), s, rep, workdir, args.timeout, extra)
            launches.append(ln)
            errs = ln.data.get("_meta", {}).get("errors", {})
            msg = "ok" if not ln.error and not errs else "FAILED (" + "; ".join(
                [*(f"{k}: {v}" for k, v in errs.items()), *([ln.error] if ln.error else [])])[:300] + ")"
            print(f" {ln.wall_s:5.1f} s {msg}", file=sys.stderr)
    for s in runnable:
        mine = [ln for ln in launches if ln.system == s]
        if not any(k in ln.data for ln in mine for k, *_ in ROWS):
            reasons = sorted({e for ln in mine for e in ln.data.get("_meta", {}).get("errors", {}).values()}
                             | {ln.error for ln in mine if ln.error})
            status[s] = "failed: " + ("; ".join(reasons)[:600] or "no figures")
    cfg["load_end"] = H.loadavg()
    cfg["raw_dir"] = str(workdir)
    md, js = report(launches, systems, status, cfg)
    out = Path(args.results_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "mpi.md").write_text(md)
    (out / "mpi.json").write_text(json.dumps(js, indent=1, default=str) + "\n")
    print(md)
    print(f"[mpi] wrote {out / 'mpi.md'} and {out / 'mpi.json'}", file=sys.stderr)
    if args.update_readme:
        body = md.split("\n", 2)[2]
        for path in (REPO / "README.md", HERE / "README.md"):
            ok = H.replace_between_markers(path, "<!-- bench:mpi:start -->", "<!-- bench:mpi:end -->", body)
            print(f"[mpi] {'updated' if ok else 'no bench:mpi markers in'} {path}", file=sys.stderr)
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=int(os.environ.get("REPS", "3")), help="launches per system (env REPS)")
    ap.add_argument("--systems", default=os.environ.get("MPI_SYSTEMS", ",".join(SYSTEMS)),
                    help=f"subset of {SYSTEMS} (env MPI_SYSTEMS)")
    ap.add_argument("--budget", type=float, default=float(os.environ.get("BUDGET", "1.0")),
                    help="seconds of sampling per metric per launch (env BUDGET, default 1)")
    ap.add_argument("--launches", type=int, default=5, help="hello.py launches per child for the launch latency")
    ap.add_argument("--job-timeout", type=float, default=120.0, help="seconds before an MPI job is abandoned")
    ap.add_argument("--timeout", type=float, default=400.0, help="seconds before a child launch is abandoned")
    ap.add_argument("--results-dir", default=str(HERE / "results"))
    ap.add_argument("--update-readme", action="store_true",
                    help="copy the table between <!-- bench:mpi:start/end --> markers (README.md, benchmarks/README.md)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("--rank", metavar="OUT", help="run as the MPI program (a rank); rank 0 writes OUT (absolute path)")
    ap.add_argument("--small-only", action="store_true", help="with --rank: the collectives only, at any size")
    args = ap.parse_args()
    if args.rank:
        return rank_main(os.path.abspath(args.rank), args.budget, args.small_only)
    if args.child:
        return child(args.child, args.out, args.budget, args.launches, args.job_timeout)
    return driver(args)


if __name__ == "__main__":
    sys.exit(main())
