"""What a hostile unauthenticated peer costs the planner, and what large frames cost FrameReader.

Not a timed test: it prints figures. ``python benchmarks/preauth_bench.py [--old]``

- An in-process planner (PlannerServer on uvloop, real sockets) whose connection callbacks are
  timed: the event-loop time and the RSS one connection costs when it announces a 2 GiB body after a
  valid Hello header, and the RSS of 200 idle unauthenticated connections. ``--old`` emulates the
  reader before issue 10 (no pre-authentication limit, bodies always in a zeroed bytearray, a
  256 KiB buffer per connection) for comparison.
- FrameReader over a socketpair: 8 MiB and 64 MiB bodies, median ms per frame, with the current
  body buffers vs always-bytearray.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil

from granny.config import MAX_FRAME_BYTES, Config
from granny.planner import server as planner_server
from granny.planner.server import Conn, PlannerServer
from granny.wire import Challenge, FrameReader, Hello, Query, Role, encode_frame, encode_header, framing
from granny.wire.framing import PREFIX

MiB = 1 << 20


class TimedConn(Conn):
    """Conn whose event-loop callbacks add their duration to ``spent``."""

    spent = 0.0

    def connection_made(self, transport: Any) -> None:
        t = time.perf_counter()
        super().connection_made(transport)
        TimedConn.spent += time.perf_counter() - t

    def buffer_updated(self, nbytes: int) -> None:
        t = time.perf_counter()
        super().buffer_updated(nbytes)
        TimedConn.spent += time.perf_counter() - t


def old_reader(*_: Any) -> FrameReader:
    return FrameReader(MAX_FRAME_BYTES)


def _read_challenge(sock: socket.socket) -> None:
    reader = FrameReader()
    while True:
        frames = reader.buffer_updated(sock.recv_into(reader.get_buffer()))
        if frames:
            assert isinstance(frames[0][0], Challenge)
            return


def attack(addr: tuple[str, int], hold: float) -> int:
    """Announce 2 GiB; return the RSS while the connection is still open (or just closed by the planner)."""
    with socket.create_connection(addr) as sock:
        _read_challenge(sock)
        header = encode_header(Hello(role=Role.CLIENT, mac=b"m" * 32, nonce=b"n" * 16))
        sock.sendall(PREFIX.pack(len(header), (2 << 30) - len(header)) + header + b"\0" * 1024)
        sock.settimeout(hold)
        try:
            sock.recv(1)  # closed at once (now), or still open after ``hold`` seconds (before)
        except (TimeoutError, ConnectionResetError):
            pass
        return int(psutil.Process().memory_info().rss)


async def planner_figures(old: bool) -> dict[str, float]:
    loop = asyncio.get_running_loop()
    data = Path(tempfile.mkdtemp(prefix="granny-bench-"))
    # Before issue 10 nothing closed an unauthenticated connection: no deadline in that emulation.
    planner = PlannerServer(Config(data_dir=data, handshake_timeout=3600.0 if old else 5.0), "secret", "token")
    srv = await loop.create_server(lambda: TimedConn(planner), "127.0.0.1", 0)
    addr = srv.sockets[0].getsockname()[:2]
    proc = psutil.Process()
    await asyncio.sleep(0.2)
    rss0 = proc.memory_info().rss
    TimedConn.spent = 0.0
    rss = await loop.run_in_executor(None, attack, addr, 6.0)
    out = {"2gib_loop_ms": TimedConn.spent * 1e3, "2gib_rss_mib": (rss - rss0) / MiB}
    await asyncio.sleep(0.2)
    rss1 = proc.memory_info().rss
    socks: list[socket.socket] = []

    def idle() -> None:
        for _ in range(200):
            s = socket.create_connection(addr)
            _read_challenge(s)
            socks.append(s)

    await loop.run_in_executor(None, idle)
    out["200_idle_rss_mib"] = (proc.memory_info().rss - rss1) / MiB
    for s in socks:
        s.close()
    srv.close()
    planner.close()
    return out


def reader_ms(size: int, reps: int) -> float:
    """Median ms to receive one frame with a ``size``-byte body through FrameReader over a socketpair."""
    a, b = socket.socketpair()
    frame = encode_frame(Query(what="x"), [bytes(size)])

    def send() -> None:
        for _ in range(reps):
            a.sendmsg(frame)

    threading.Thread(target=send, daemon=True).start()
    reader = FrameReader()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        got: list[Any] = []
        while not got:
            got = reader.buffer_updated(b.recv_into(reader.get_buffer()))
        times.append(time.perf_counter() - t)
        del got
    a.close()
    b.close()
    return statistics.median(times) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--old", action="store_true", help="emulate the reader before issue 10")
    args = ap.parse_args()
    if args.old:
        planner_server.FrameReader = old_reader  # type: ignore[assignment,misc]
        framing.LAZY_BODY = 1 << 62
    try:
        import uvloop

        figures = uvloop.run(planner_figures(args.old))
    except ImportError:
        figures = asyncio.run(planner_figures(args.old))
    label = "before issue 10 (emulated)" if args.old else "now"
    print(f"planner, {label}:")
    for key, value in figures.items():
        print(f"  {key:18} {value:10.3f}")
    print("FrameReader, median ms per frame (body buffer: current | always bytearray):")
    for size in (8 * MiB, 64 * MiB):
        framing.LAZY_BODY = 16 * MiB
        now_ms = reader_ms(size, 30)
        framing.LAZY_BODY = 1 << 62
        old_ms = reader_ms(size, 30)
        print(f"  {size // MiB:3d} MiB  {now_ms:8.2f} | {old_ms:8.2f}")
    os._exit(0)  # the planner's journal thread is not worth a clean shutdown here


if __name__ == "__main__":
    main()
