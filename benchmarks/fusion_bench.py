"""Function fusion (DFaaS, issue 14): CPU-busy ÷ wall of one slot running the paper's image-processing workflow.

Usage (normally through ``scripts/bench fusion``)::

    python benchmarks/fusion_bench.py [--images 12] [--scale 0.1] [--no-write]

The workflow (the DFaaS paper's): three stages per image, upload 2.5 s, thumbnail 2.8 s, compression
3.7 s, each about half blocked on I/O. Here every stage is an ``async def`` call that downloads its input
from a local object server (a TCP server in this process that answers after the stage's I/O time: the
call really waits on a socket, it does not ``sleep``), computes for the other half of its time (a busy
loop that stops after that much CPU time of its own thread, ``time.thread_time``), and uploads its
output the same way. ``--scale`` shrinks the stage times (0.1: 0.25 / 0.28 / 0.37 s), ``--images``
workflows run at once; each image's next stage is submitted when its previous one returns.

Both phases run on a fresh 1-worker, 1-slot cluster, every call delay-tolerant (``-1``):
``unfused`` with ``GRANNY_FUSION_CAP=1`` (one call per granule at a time: the granule idles while its
call waits) and ``fused`` with the default cap (32). Reported: CPU-busy ÷ wall, where CPU-busy is the
sum of the stages' measured CPU seconds and wall runs from the first submit to the last result; the
paper's reference is 54 % unfused, 89 % fused; the issue's target ≥ 0.85 fused.

Not a test: nothing fails. Results: ``benchmarks/results/fusion.md`` and ``fusion.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO / "src"))

import _harness as H  # noqa: E402

import granny  # noqa: E402
from granny.cluster import LocalCluster  # noqa: E402

STAGES = (("upload", 2.5), ("thumbnail", 2.8), ("compression", 3.7))  # seconds, in the paper
IO_SHARE = 0.5  # of each stage's time blocked on I/O


class ObjectServer:
    """Answers ``<ms> <bytes>\\n`` with that many bytes after ``ms`` milliseconds (storage latency)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0), backlog=256)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rb") as rf:
            for line in rf:
                ms, size = (int(x) for x in line.split())
                done = threading.Event()
                done.wait(ms / 1000.0)  # the store's latency (this server's, not the call's)
                conn.sendall(b"x" * size + b"\n")

    def close(self) -> None:
        self.sock.close()


async def stage(port: int, io_s: float, cpu_s: float, size: int) -> tuple[float, float, float]:
    """Download (half the I/O), compute ``cpu_s`` of CPU, upload (the other half). Returns (CPU seconds, and
    the wall-clock start and end of the compute part)."""
    import asyncio
    import time

    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"{int(io_s * 500)} {size}\n".encode())
        await writer.drain()
        data = await reader.readline()
        c0, w0 = time.thread_time(), time.time()
        acc = 0
        while time.thread_time() - c0 < cpu_s:  # the image work: CPU only, no await
            for b in data[:256]:
                acc = (acc * 31 + b) & 0xFFFFFFFF
        cpu, w1 = time.thread_time() - c0, time.time()
        writer.write(f"{int(io_s * 500)} 16\n".encode())
        await writer.drain()
        await reader.readline()
    finally:
        writer.close()
    return cpu, w0, w1


def run_phase(name: str, cap: int, images: int, scale: float, port: int) -> dict[str, Any]:
    os.environ["GRANNY_FUSION_CAP"] = str(cap)  # the planner LocalCluster starts inherits it
    cluster = LocalCluster(workers=1, slots=1, granule_user="same", log_level="ERROR")
    try:
        with granny.connect(cluster.address, cluster.token) as client:
            batch = client.options(delay_tolerance=-1)
            batch.submit(stage, port, 0.01, 0.01, 1024).result(60)  # warm the granule
            results: list[tuple[float, float, float]] = []
            lock = threading.Lock()
            finished = threading.Event()
            left = [images]

            def submit(image: int, k: int) -> None:
                _, seconds = STAGES[k]
                fut = batch.submit(stage, port, seconds * scale * IO_SHARE, seconds * scale * (1 - IO_SHARE), 64 << 10)
                fut.add_done_callback(lambda f: step(image, k, f))

            def step(image: int, k: int, fut: Any) -> None:
                with lock:
                    results.append(fut.result())
                if k + 1 < len(STAGES):
                    submit(image, k + 1)
                    return
                with lock:
                    left[0] -= 1
                    if left[0] == 0:
                        finished.set()

            t0 = time.time()
            for image in range(images):
                submit(image, 0)
            if not finished.wait(600):
                raise RuntimeError(f"{name}: the workflows did not finish in 600 s")
            wall = time.time() - t0
            counters = client.query("counters")["batch"]
    finally:
        cluster.stop()
    cpu = sum(r[0] for r in results)
    computing = 0.0  # wall time during which some call of the slot was computing (the union of those spans)
    reach = 0.0
    for _, a, b in sorted(results, key=lambda r: r[1]):
        a = max(a, reach)
        if b > a:
            computing += b - a
            reach = b
    return {"phase": name, "cap": cap, "images": images, "calls": len(results), "cpu_s": cpu, "wall_s": wall,
            "busy_over_wall": cpu / wall, "computing_over_wall": computing / wall, "fused_peak": counters.get("fused_peak", 0),
            "fused": counters.get("fused", 0)}


def report(res: dict[str, dict[str, Any]], cfg: dict[str, Any]) -> str:
    rows = [[f"`{r['phase']}`", str(r["cap"]), str(r["calls"]), f"{r['cpu_s']:.2f} s", f"{r['wall_s']:.2f} s",
             f"{r['busy_over_wall']:.0%}", f"{r['computing_over_wall']:.0%}", str(r["fused_peak"])] for r in res.values()]
    stages = " / ".join(f"{n} {s * cfg['scale']:.2f} s" for n, s in STAGES)
    return "\n".join([
        "# Function fusion (DFaaS)\n",
        f"Generated by `python benchmarks/fusion_bench.py {cfg['argv']}` on {cfg['date']}, commit {cfg['rev']}, "
        f"{cfg['machine']['cpus']} CPUs, load average {cfg['load_start']} at the start, {cfg['load_end']} at the end "
        "(a shared machine).\n",
        f"The paper's image-processing workflow on **one slot**: {cfg['images']} images at once, three stages each "
        f"({stages}; the paper's times × {cfg['scale']:g}), half of each stage blocked on real socket I/O against a "
        "local object server, half CPU. Every call is delay-tolerant (`-1`).\n",
        H.md_table(["phase", "fusion cap", "calls", "CPU-busy", "wall", "CPU-busy ÷ wall", "computing ÷ wall",
                    "most calls on the granule"], rows),
        "\nCPU-busy = Σ of the stages' CPU seconds (each measured with `time.thread_time` around its compute "
        "part); wall = first submit → last result. *Computing ÷ wall*: the share of the wall during which some call "
        "of the slot was in its compute part (whether or not the kernel gave it a core): on a machine shared "
        "with other work the two differ by the core time other processes took. The paper: 54 % unfused → 89 % "
        "fused; the issue's target ≥ 85 % fused.\n",
    ])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=12, help="workflows at once (default 12)")
    ap.add_argument("--scale", type=float, default=0.1, help="stage times × this (default 0.1)")
    ap.add_argument("--results-dir", default=str(HERE / "results"))
    ap.add_argument("--no-write", action="store_true", help="print only")
    args = ap.parse_args()
    cfg: dict[str, Any] = {"argv": " ".join(sys.argv[1:]), "images": args.images, "scale": args.scale,
                           "date": dt.date.today().isoformat(), "rev": H.git_rev(REPO),
                           "machine": H.machine_info(), "load_start": H.loadavg()}
    server = ObjectServer()
    res: dict[str, dict[str, Any]] = {}
    try:
        for name, cap in (("unfused", 1), ("fused", 32)):
            print(f"[fusion] {name} ...", end="", file=sys.stderr, flush=True)
            res[name] = r = run_phase(name, cap, args.images, args.scale, server.port)
            print(f" {r['wall_s']:.1f} s  CPU-busy/wall {r['busy_over_wall']:.0%}  computing/wall "
                  f"{r['computing_over_wall']:.0%}  peak {r['fused_peak']}",
                  file=sys.stderr)
    finally:
        server.close()
    cfg["load_end"] = H.loadavg()
    md = report(res, cfg)
    print(md)
    if not args.no_write:
        out = Path(args.results_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "fusion.md").write_text(md)
        (out / "fusion.json").write_text(json.dumps({"config": cfg, "phases": res}, indent=1, default=str) + "\n")
        print(f"[fusion] wrote {out / 'fusion.md'} and {out / 'fusion.json'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
