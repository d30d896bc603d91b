"""Probe: granny.mpi.tcp.TcpLinks against raw TCP between the same two processes on 127.0.0.1.

Measures small-record ping-pong latency (round trip / 2) and one-way bandwidth for 16 MiB and 64 MiB
records. The raw baselines are plain blocking socket pairs with TCP_NODELAY: ``sendall`` on one side,
``recv_into`` a preallocated buffer on the other. "raw" keeps the kernel's buffer autotuning; "raw tuned"
sets the same SO_SNDBUF/SO_RCVBUF as TcpLinks (``--sockbuf``), so the transport's own cost shows. Runs are
interleaved (raw, links, raw, links, ...) and each cell is the median over ``--reps`` runs; the ratios
are medians of the *paired* per-rep ratios (runs seconds apart), which shrugs off drift and load.

    .venv/bin/python benchmarks/_mpi_tcp_probe.py [--reps 5] [--sockbuf 4194304]   # --sockbuf 0: autotuning

Not a timed test: it prints a table and exits.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import select
import socket
import statistics
import time
from collections.abc import Callable
from multiprocessing.connection import Connection

import numpy as np

from granny.mpi import tcp
from granny.mpi.tcp import TcpLinks

MiB = 1 << 20
SMALL = 64  # bytes per ping-pong message (raw: 64 B; links: 24 B header + 40 B payload)


class Pair:
    def __init__(self, rank: int, links: TcpLinks, raw: socket.socket, tuned: socket.socket) -> None:
        self.rank, self.links, self.raw, self.tuned = rank, links, raw, tuned
        self.got: list[memoryview] = []

    def wait_record(self, spin: bool) -> None:
        """Until one record arrived: spin on poll, or sleep in select between polls."""
        links, got = self.links, self.got
        while not got:
            if links.poll(lambda s, h, p: got.append(p)) == 0 and not spin:
                select.select(links.fileno_list(), [], [])
        got.clear()


def raw_pingpong(p: Pair, n: int) -> float:
    buf = bytearray(SMALL)
    view = memoryview(buf)

    def recv_exact() -> None:
        pos = 0
        while pos < SMALL:
            pos += p.raw.recv_into(view[pos:])

    t0 = time.perf_counter()
    for _ in range(n):
        if p.rank == 0:
            p.raw.sendall(buf)
            recv_exact()
        else:
            recv_exact()
            p.raw.sendall(buf)
    return (time.perf_counter() - t0) / n / 2


def links_pingpong(p: Pair, n: int, spin: bool) -> float:
    header, payload = bytes(24), bytes(SMALL - 24)
    t0 = time.perf_counter()
    for _ in range(n):
        if p.rank == 0:
            p.links.send(1, header, payload)
            p.wait_record(spin)
        else:
            p.wait_record(spin)
            p.links.send(0, header, payload)
    return (time.perf_counter() - t0) / n / 2


def raw_bandwidth(p: Pair, sock: socket.socket, size: int, count: int) -> float:
    if p.rank == 0:
        data = np.ones(size, np.uint8).data
        t0 = time.perf_counter()
        for _ in range(count):
            sock.sendall(data)
        sock.recv(1)
        return size * count / (time.perf_counter() - t0)
    into = np.zeros(size, np.uint8).data  # one buffer, reused: pages are already mapped
    for _ in range(count):
        pos = 0
        while pos < size:
            pos += sock.recv_into(into[pos:])
    sock.sendall(b"k")
    return 0.0


def raw_pair(rank: int, pipe: Connection, sockbuf: int) -> socket.socket:
    """A blocking TCP pair; buffer sizes set before listen/connect, as TcpLinks does (window scaling)."""
    s = socket.socket()
    if sockbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF if rank == 0 else socket.SO_SNDBUF, sockbuf)
    if rank == 0:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        pipe.send(s.getsockname())
        conn = s.accept()[0]
        s.close()
    else:
        s.connect(pipe.recv())
        conn = s
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return conn


def links_bandwidth(p: Pair, size: int, count: int, sink: bool) -> float:
    if p.rank == 0:
        data = np.ones(size, np.uint8).data
        t0 = time.perf_counter()
        for _ in range(count):
            p.links.send(1, b"bw", data)
        p.wait_record(False)
        return size * count / (time.perf_counter() - t0)
    into = np.zeros(size, np.uint8).data
    p.links.set_sink((lambda src, header, n: into) if sink else None)  # sink: the MPI matched-receive path
    done = [0]
    while done[0] < count:
        if p.links.poll(lambda s, h, pl: done.__setitem__(0, done[0] + 1)) == 0:
            select.select(p.links.fileno_list(), [], [])
    p.links.set_sink(None)
    p.links.send(0, b"ack")
    return 0.0


def run(rank: int, pipe: Connection, reps: int) -> dict[str, list[float]] | None:
    links = TcpLinks(rank, b"probe", "127.0.0.1")
    pipe.send(links.address)
    links.connect({1 - rank: pipe.recv()})
    p = Pair(rank, links, raw_pair(rank, pipe, 0), raw_pair(rank, pipe, tcp.SOCKET_BUFFER_BYTES))
    plan: list[tuple[str, Callable[[], float]]] = [
        ("latency raw", lambda: raw_pingpong(p, 5000)),
        ("latency links (select)", lambda: links_pingpong(p, 5000, False)),
        ("latency links (spin)", lambda: links_pingpong(p, 5000, True)),
    ]
    for size, count in ((16 * MiB, 16), (64 * MiB, 4)):
        tag = f"{size // MiB} MiB"
        plan += [
            (f"bw {tag} raw", lambda s=size, c=count: raw_bandwidth(p, p.raw, s, c)),  # type: ignore[misc]
            (f"bw {tag} raw tuned", lambda s=size, c=count: raw_bandwidth(p, p.tuned, s, c)),  # type: ignore[misc]
            (f"bw {tag} links", lambda s=size, c=count: links_bandwidth(p, s, c, False)),  # type: ignore[misc]
            (f"bw {tag} links+sink", lambda s=size, c=count: links_bandwidth(p, s, c, True)),  # type: ignore[misc]
        ]
    results: dict[str, list[float]] = {name: [] for name, _ in plan}
    for rep in range(reps + 1):  # rep 0 warms up (page faults, TCP windows) and is dropped
        for name, fn in plan:
            value = fn()
            if rep:
                results[name].append(value)
    links.close()
    p.raw.close()
    p.tuned.close()
    return results if rank == 0 else None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--sockbuf", type=int, default=tcp.SOCKET_BUFFER_BYTES)
    args = ap.parse_args()
    tcp.SOCKET_BUFFER_BYTES = args.sockbuf  # before the fork: both ranks use it
    ctx = mp.get_context("fork")
    mine, theirs = ctx.Pipe()
    child = ctx.Process(target=run, args=(1, theirs, args.reps))
    child.start()
    results = run(0, mine, args.reps)
    assert results is not None
    child.join()
    med = {k: statistics.median(v) for k, v in results.items()}

    def ratio(k: str, base: str) -> float:
        return statistics.median(a / b for a, b in zip(results[k], results[base], strict=True))
    print(f"TcpLinks probe: 127.0.0.1, {os.cpu_count()} CPUs, SOCKET_BUFFER_BYTES={args.sockbuf}, "
          f"median of {args.reps} reps")
    print("| figure | median | min-max | paired vs raw | paired vs raw tuned |\n|---|---|---|---|---|")
    for k, v in results.items():
        if k.startswith("latency"):
            print(f"| {k} | {med[k] * 1e6:.1f} us | {min(v) * 1e6:.1f}-{max(v) * 1e6:.1f} | "
                  f"{ratio(k, 'latency raw'):.2f}x | |")
        else:
            prefix = k.split(" raw")[0].replace(" links+sink", "").replace(" links", "")
            print(f"| {k} | {med[k] / 1e9:.2f} GB/s | {min(v) / 1e9:.2f}-{max(v) / 1e9:.2f} | "
                  f"{ratio(k, prefix + ' raw'):.2f}x | {ratio(k, prefix + ' raw tuned'):.2f}x |")


if __name__ == "__main__":
    main()
