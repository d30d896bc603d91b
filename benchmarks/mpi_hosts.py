"""MPI bandwidth between two testbed hosts vs raw TCP between the same network namespaces (needs root).

    sudo .venv/bin/python benchmarks/mpi_hosts.py [--mib 64] [--reps 5] [--out benchmarks/results/mpi_hosts.md]

A 2-host testbed (namespaces h1 and h2 behind a router namespace, links unshaped) runs a 4-rank world,
two ranks per host. The rank pair that straddles the hosts does `Send`/`Recv` of MIB MiB, one way,
timed at the receiver; the raw figure is one TCP stream of the same size between the same two
namespaces (`sendall` / `recv_into`), also timed at the receiver. Target: MPI >= 0.7x raw TCP.

Then ``Allreduce`` of 1M float64 (8 MiB) in a 2-rank world with one rank per host (issue 15's target),
against what raw TCP carries on the same link for it: a 2-rank allreduce must move the other rank's
8 MiB into each rank, so the reference is one TCP connection exchanging 8 MiB both ways at once (each
side a sending thread and a receiving loop), timed at h1. Ratio = raw exchange time ÷ Allreduce time,
target >= 0.7.

Then small collectives in a 4-rank world, two ranks per host (``--small``, or ``--only-small`` to run
just these): as OSU's latency tests time collectives (one call between untimed barriers), the median
over calls of the slowest rank's time, with the per-host legs through the
hosts' shared-memory regions (shmhosts.py) and, on a duplicate of the communicator with its region
turned off, through point-to-point legs. The raw reference is one TCP round trip of the same bytes
between the two namespaces (``TCP_NODELAY`` ping-pong): any collective over two hosts needs at least a
one-way crossing, and most need a round trip. The last row, ``Allreduce`` of 1M float64 over the same
2 + 2 ranks (hierarchical with the region: the ranks of a host reduce-scatter through each other's memory,
then exchange pieces pairwise across hosts), has the 8 MiB raw exchange above as its reference.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import granny
from granny.cluster import LocalCluster
from granny.testbed import Testbed

# Overridable, so that two runs on one machine do not tear down each other's testbed (as tests/dist).
PREFIX = os.environ.get("GRANNY_TEST_NETNS_PREFIX", "gtmb")
SUBNET = os.environ.get("GRANNY_TEST_SUBNET", "10.78.0.0/24")

RAW = textwrap.dedent("""
    import socket, sys, time
    role, host, port, nbytes, reps = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    buf = bytearray(nbytes)
    view = memoryview(buf)
    if role == "recv":
        srv = socket.create_server((host, port))
        print("ready", flush=True)
        conn, _ = srv.accept()
        for _ in range(reps):
            got = conn.recv_into(view, nbytes)
            t0 = time.perf_counter()
            while got < nbytes:
                got += conn.recv_into(view[got:], nbytes - got)
            print(nbytes / (time.perf_counter() - t0) / 1e9, flush=True)
            conn.sendall(b"k")
    else:
        conn = socket.create_connection((host, port))
        for _ in range(reps):
            conn.sendall(view)
            conn.recv(1)
""")


RAW_EXCHANGE = textwrap.dedent("""
    import socket, sys, threading, time
    role, host, port, nbytes, reps = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    out, inp = bytearray(nbytes), bytearray(nbytes)
    view = memoryview(inp)
    if role == "a":
        srv = socket.create_server((host, port))
        print("ready", flush=True)
        conn, _ = srv.accept()
    else:
        conn = socket.create_connection((host, port))
    for _ in range(reps + 1):
        if role == "a":  # start together: b waits for a's go
            conn.sendall(b"g")
        else:
            conn.recv(1)
        t0 = time.perf_counter()
        sender = threading.Thread(target=conn.sendall, args=(out,))
        sender.start()
        got = 0
        while got < nbytes:
            got += conn.recv_into(view[got:], nbytes - got)
        sender.join()
        if role == "a":
            print(time.perf_counter() - t0, flush=True)
""")


def allreduce_program(n: int, reps: int) -> Callable[[Any], list[float]]:
    def program(comm: Any) -> list[float]:
        import time

        import numpy as np

        src, out = np.ones(n), np.empty(n)
        times: list[float] = []
        for _ in range(reps + 1):
            comm.Barrier()
            t0 = time.perf_counter()
            comm.Allreduce(src, out)
            times.append(time.perf_counter() - t0)
        return times[1:] if comm.rank == 0 else []

    return program


PINGPONG = textwrap.dedent("""
    import socket, sys, time
    role, host, port, nbytes, iters = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    buf = bytearray(nbytes)
    view = memoryview(buf)
    if role == "a":
        srv = socket.create_server((host, port))
        print("ready", flush=True)
        conn, _ = srv.accept()
    else:
        conn = socket.create_connection((host, port))
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def recv_all():
        got = 0
        while got < nbytes:
            got += conn.recv_into(view[got:], nbytes - got)

    for rep in range(6):
        t0 = time.perf_counter()
        for _ in range(iters):
            if role == "a":
                conn.sendall(view)
                recv_all()
            else:
                recv_all()
                conn.sendall(view)
        if role == "a" and rep:
            print((time.perf_counter() - t0) / iters, flush=True)
""")

LARGE = "Allreduce of 1M float64 (8 MiB)"
SMALL = ("Barrier", "Bcast", "Reduce", "Allreduce", "Allreduce non-commutative", "Gather", "Scatter", "Allgather", LARGE)


def small_program(nbytes: int, iters: int) -> Callable[[Any], dict[str, list[float]]]:
    def program(comm: Any) -> dict[str, list[float]]:
        import time

        import numpy as np
        from mpi4py import MPI

        def matmul(a: Any, b: Any, dt: Any) -> None:
            x, y = np.frombuffer(a, np.float64).reshape(-1, 2, 2), np.frombuffer(b, np.float64).reshape(-1, 2, 2)
            y[...] = x @ y

        matop = MPI.Op.Create(matmul, commute=False)
        p2p = comm.Dup()
        p2p._coll = False  # no region: the general schedules, point-to-point legs inside hosts too
        n, size = nbytes // 8, comm.size
        a, b = np.ones(n), np.empty(n)
        whole = np.ones(n * size)
        big, big_out = np.ones(1 << 20), np.empty(1 << 20)

        def calls(c: Any) -> dict[str, Callable[[], Any]]:
            return {"Barrier": c.Barrier, "Bcast": lambda: c.Bcast(a, root=0),
                    "Reduce": lambda: c.Reduce(a, b, root=0), "Allreduce": lambda: c.Allreduce(a, b),
                    "Allreduce non-commutative": lambda: c.Allreduce(a, b, op=matop),
                    "Gather": lambda: c.Gather(a, whole, root=0), "Scatter": lambda: c.Scatter(whole, a, root=0),
                    "Allgather": lambda: c.Allgather(a, whole), LARGE: lambda: c.Allreduce(big, big_out)}

        mine: dict[str, list[float]] = {}
        with_region, without = calls(comm), calls(p2p)
        for name in with_region:
            reps = max(iters // 20, 5) if name == LARGE else iters
            for _ in range(min(reps, 10)):
                with_region[name]()
                without[name]()
            for _ in range(reps):  # the two kinds alternate call by call, so load from elsewhere hits both alike
                for kind, call in (("region", with_region[name]), ("p2p", without[name])):
                    comm.Barrier()  # as OSU's collective latency tests: one timed call between barriers
                    t0 = time.perf_counter()
                    call()
                    mine.setdefault(f"{kind} {name}", []).append(time.perf_counter() - t0)
        every = comm.gather(mine, root=0)
        out: dict[str, list[float]] = {}
        if every is not None:  # per call the slowest rank's time
            for key in mine:
                out[key] = [max(ts) for ts in zip(*(e[key] for e in every), strict=True)]
        p2p.Free()
        matop.Free()
        return out if comm.rank == 0 else {}

    return program


class Loopback:
    """``--local``: two local workers (``LocalCluster``) stand for the hosts, raw TCP runs over loopback."""

    def host(self, name: str) -> Any:
        return argparse.Namespace(ip="127.0.0.1")

    def popen(self, host: str, argv: list[str], **kwargs: Any) -> Any:
        return subprocess.Popen(argv, **kwargs)

    def run(self, host: str, argv: list[str], **kwargs: Any) -> Any:
        return subprocess.run(argv, **kwargs)


def raw_pingpong(tb: Any, nbytes: int, iters: int) -> list[float]:
    ip = tb.host("h1").ip
    argv = ["python3", "-c", PINGPONG]
    a = tb.popen("h1", [*argv, "a", ip, "7813", str(nbytes), str(iters)], stdout=-1, text=True)
    assert a.stdout is not None
    assert a.stdout.readline().strip() == "ready"
    tb.run("h2", [*argv, "b", ip, "7813", str(nbytes), str(iters)], check=True)
    out, _ = a.communicate(timeout=120)
    return [float(x) for x in out.split()]


def small_table(tb: Any, client: Any, nbytes: int, iters: int, hosts: str = "h1:2,h2:2") -> str:
    rtts = raw_pingpong(tb, nbytes, iters)
    times: dict[str, list[float]] = {}
    for per_rank in client.options(hosts=hosts).run_mpi(small_program(nbytes, iters), n=4, timeout=600):
        for k, v in per_rank.items():
            times.setdefault(k, []).extend(v)
    rtts += raw_pingpong(tb, nbytes, iters)
    rtt = statistics.median(rtts)
    x = statistics.median(raw_exchange(tb, 8 << 20, 5))
    rows = [f"| 4 ranks on 2 hosts (2 + 2), testbed unshaped; {nbytes} B per rank | host legs through the region, "
            "us | point-to-point legs, us | **region / point-to-point** | **region / raw TCP** |",
            "|---|---|---|---|---|"]
    for name in SMALL:
        reg, p2p = statistics.median(times[f"region {name}"]), statistics.median(times[f"p2p {name}"])
        raw = x if name == LARGE else rtt
        rows.append(f"| `{name}` | {reg * 1e6:.0f} | {p2p * 1e6:.0f} | **{reg / p2p:.2f}x** | **{reg / raw:.2f}x** |")
    rows.append(f"| raw TCP: a round trip of {nbytes} B between the namespaces (`TCP_NODELAY`) | {rtt * 1e6:.0f} | | | |")
    rows.append(f"| raw TCP: 8 MiB exchanged both ways at once on one connection (reference of the last row) | "
                f"{x * 1e6:.0f} | | | |")
    return "\n".join(rows) + "\n"


def raw_exchange(tb: Any, nbytes: int, reps: int) -> list[float]:
    ip = tb.host("h1").ip
    port = 7812
    argv = ["python3", "-c", RAW_EXCHANGE]
    a = tb.popen("h1", [*argv, "a", ip, str(port), str(nbytes), str(reps)], stdout=-1, text=True)
    assert a.stdout is not None
    assert a.stdout.readline().strip() == "ready"
    tb.run("h2", [*argv, "b", ip, str(port), str(nbytes), str(reps)], check=True)
    out, _ = a.communicate(timeout=120)
    return [float(x) for x in out.split()][1:]


def mpi_program(nbytes: int, reps: int) -> Callable[[Any], list[float]]:
    def program(comm: Any) -> list[float]:
        import os
        import time

        import numpy as np

        hosts = comm.allgather(os.environ["GRANNY_HOST_ID"])
        src = 0
        dst = next(r for r, h in enumerate(hosts) if h != hosts[0])
        buf = np.ones(nbytes, dtype=np.uint8)
        out: list[float] = []
        for _ in range(reps + 1):
            comm.Barrier()
            if comm.rank == src:
                comm.Send(buf, dest=dst, tag=1)
            elif comm.rank == dst:
                t0 = time.perf_counter()  # the sender starts as it leaves the same barrier
                comm.Recv(buf, source=src, tag=1)
                out.append(nbytes / (time.perf_counter() - t0) / 1e9)
        return out[1:]

    return program


def raw_tcp(tb: Testbed, nbytes: int, reps: int) -> list[float]:
    ip = tb.host("h2").ip
    port = 7811
    argv = ["python3", "-c", RAW]
    recv = tb.popen("h2", [*argv, "recv", ip, str(port), str(nbytes), str(reps)], stdout=-1, text=True)
    assert recv.stdout is not None
    assert recv.stdout.readline().strip() == "ready"
    tb.run("h1", [*argv, "send", ip, str(port), str(nbytes), str(reps)], check=True)
    out, _ = recv.communicate(timeout=120)
    return [float(x) for x in out.split()]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mib", type=int, default=64)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--out", default="benchmarks/results/mpi_hosts.md")
    ap.add_argument("--small", action="store_true", help="also time small collectives (host legs: region vs p2p)")
    ap.add_argument("--only-small", action="store_true", help="time only the small collectives")
    ap.add_argument("--small-bytes", type=int, default=64)
    ap.add_argument("--iters", type=int, default=300)
    ap.add_argument("--local", action="store_true", help="with --only-small: two local workers instead of the testbed")
    args = ap.parse_args()
    if args.only_small and args.local:
        with tempfile.TemporaryDirectory() as data:
            cluster = LocalCluster(workers=2, slots=2, data_dir=Path(data) / "data", granule_user="same")
            try:
                with granny.connect(cluster.address, cluster.token) as client:
                    small = small_table(Loopback(), client, args.small_bytes, args.iters, "local1:2,local2:2")
            finally:
                cluster.stop()
        print(small.replace("testbed unshaped", "two local workers, TCP over loopback"))
        return 0
    if args.only_small:
        with tempfile.TemporaryDirectory() as state, Testbed(["h1", "h2"], slots=2, prefix=PREFIX, subnet=SUBNET,
                                                            state_dir=state) as tb:
            client = granny.connect(tb.address, tb.token)
            try:
                small = small_table(tb, client, args.small_bytes, args.iters)
            finally:
                client.close()
        print(small)
        Path(args.out).write_text("# MPI between testbed hosts: small collectives\n\nGenerated by `sudo .venv/bin/python "
                                  f"benchmarks/mpi_hosts.py --only-small --small-bytes {args.small_bytes} --iters "
                                  f"{args.iters}`.\n\n{small}")
        return 0
    nbytes = args.mib << 20
    with tempfile.TemporaryDirectory() as state, Testbed(["h1", "h2"], slots=2, prefix=PREFIX, subnet=SUBNET,
                                                        state_dir=state) as tb:
        client = granny.connect(tb.address, tb.token)
        try:
            raws, mpis, xs, ars = [], [], [], []
            pinned = client.options(hosts="h1:1,h2:1")
            for _ in range(3):  # interleaved, so drift hits both alike
                raws += raw_tcp(tb, nbytes, args.reps)
                for per_rank in client.run_mpi(mpi_program(nbytes, args.reps), n=4, timeout=300):
                    mpis += per_rank  # only the receiving rank's list is not empty
                xs += raw_exchange(tb, 8 << 20, args.reps)
                for per_rank in pinned.run_mpi(allreduce_program(1 << 20, args.reps), n=2, timeout=300):
                    ars += per_rank  # rank 0's times
            small = small_table(tb, client, args.small_bytes, args.iters) if args.small else ""
        finally:
            client.close()
    raw, mpi = statistics.median(raws), statistics.median(mpis)
    x, ar = statistics.median(xs), statistics.median(ars)
    table = textwrap.dedent(f"""\
        | {args.mib} MiB one way, h1 -> h2 (testbed, unshaped) | GB/s (median) |
        |---|---|
        | raw TCP, one stream (`sendall` / `recv_into`) | {raw:.2f} |
        | granny MPI `Send` / `Recv`, ranks on different hosts | {mpi:.2f} |
        | **ratio granny / raw TCP** (target >= 0.7) | **{mpi / raw:.2f}x** |

        | `Allreduce` of 1M float64, 2 ranks, one per host | ms (median) |
        |---|---|
        | raw TCP: 8 MiB exchanged both ways at once on one connection | {x * 1e3:.2f} |
        | granny MPI `Allreduce` (SUM) | {ar * 1e3:.2f} |
        | **ratio raw TCP time / granny time** (target >= 0.7) | **{x / ar:.2f}x** |
        """) + (f"\n{small}" if small else "")
    print(table)
    Path(args.out).write_text("# MPI between testbed hosts\n\nGenerated by `sudo .venv/bin/python "
                              f"benchmarks/mpi_hosts.py --mib {args.mib} --reps {args.reps}`.\n\n{table}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
