"""Peers that never authenticate cost the planner a few KiB and a few seconds, never gigabytes or a stall.

Real `granny planner` processes on 127.0.0.1; the hostile peer is a raw socket speaking the wire.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

import granny
from granny.wire import Hello, Role, encode_header
from granny.wire.framing import PREFIX

from ..polling import wait_for
from .netprocs import PlannerProc, WorkerProc, closed_by_peer, raw_unauthenticated, read_frame

MiB = 1 << 20


def hello_header(**fields: object) -> bytes:
    return encode_header(Hello(role=Role.CLIENT, mac=b"m" * 32, nonce=b"n" * 16, **fields))  # type: ignore[arg-type]


@pytest.fixture
def planner(tmp_path: Path) -> Iterator[PlannerProc]:
    # A long deadline: in these tests only the size checks may close a connection quickly.
    p = PlannerProc(tmp_path / "data", "--handshake-timeout", "600")
    try:
        yield p
    finally:
        p.stop()


@pytest.fixture
def worker(planner: PlannerProc) -> Iterator[WorkerProc]:
    w = WorkerProc(planner)
    try:
        yield w
    finally:
        w.stop()


def test_a_2gib_announcement_before_authentication_is_refused_without_allocating(
        planner: PlannerProc, worker: WorkerProc) -> None:
    client = granny.connect(planner.address, planner.token)
    try:
        assert client.submit(pow, 2, 3).result(timeout=60) == 8
        proc = psutil.Process(planner.pid)
        before = proc.memory_info().rss
        header = hello_header()
        with raw_unauthenticated(planner.addr) as sock:
            # A valid Hello header announcing a 2 GiB body: the body used to be allocated and zeroed
            # on the event loop (2 GiB of RSS, seconds of stall) while the peer sent nothing more.
            sock.sendall(PREFIX.pack(len(header), (2 << 30) - len(header)) + header + b"\0" * 4096)
            assert closed_by_peer(sock), "the planner kept a connection that announced a 2 GiB frame"
        grown = proc.memory_info().rss - before
        assert grown < 16 * MiB, f"the planner's RSS grew by {grown / MiB:.1f} MiB"
        assert client.submit(pow, 2, 4).result(timeout=60) == 16  # it kept serving
    finally:
        client.close()
    assert "exceeds the 4096-byte limit before authentication" in planner.log()


@pytest.mark.parametrize("shape", ["body", "header"])
def test_a_frame_over_the_preauth_limit_closes_the_connection(planner: PlannerProc, shape: str) -> None:
    if shape == "body":  # 64 KiB: fine after authentication, far too big for a hello
        header = hello_header()
        prefix = PREFIX.pack(len(header), 64 << 10)
    else:
        header = hello_header(name="x" * 8000)
        prefix = PREFIX.pack(len(header), 0)
    with raw_unauthenticated(planner.addr) as sock:
        sock.sendall(prefix + header[:100])  # only the start: the prefix alone must decide
        assert closed_by_peer(sock)
    assert "before authentication" in planner.log()


def test_an_idle_unauthenticated_connection_is_closed_after_the_deadline(tmp_path: Path) -> None:
    planner = PlannerProc(tmp_path / "data", "--handshake-timeout", "1")
    try:
        with raw_unauthenticated(planner.addr, timeout=60) as sock:
            assert closed_by_peer(sock), "an unauthenticated connection outlived the handshake deadline"
        assert "did not authenticate within 1s" in planner.log()
    finally:
        planner.stop()


def test_idle_unauthenticated_connections_cost_little_memory(planner: PlannerProc) -> None:
    proc = psutil.Process(planner.pid)
    # Let the first connections' one-off costs (imports, allocator arenas) land before measuring.
    warm = [raw_unauthenticated(planner.addr) for _ in range(20)]
    before = proc.memory_info().rss
    socks = [raw_unauthenticated(planner.addr) for _ in range(200)]
    try:
        grown = proc.memory_info().rss - before
        # Each used to hold a 256 KiB read buffer (200 of them: 50 MiB); now a few KiB.
        assert grown < 10 * MiB, f"200 idle connections grew the planner's RSS by {grown / MiB:.1f} MiB"
    finally:
        for s in socks + warm:
            s.close()


def test_the_cap_on_unauthenticated_connections(tmp_path: Path) -> None:
    planner = PlannerProc(tmp_path / "data", "--max-unauthenticated", "3", "--handshake-timeout", "600")
    worker = WorkerProc(planner)  # authenticated connections do not count against the cap
    client = granny.connect(planner.address, planner.token)
    try:
        assert client.submit(pow, 2, 2).result(timeout=60) == 4  # the worker's granule is connected
        held = [raw_unauthenticated(planner.addr) for _ in range(3)]
        with socket.create_connection(planner.addr, timeout=30) as extra:
            assert read_frame(extra) is None, "a connection beyond the cap got a challenge"
        assert "already waiting to authenticate" in planner.log()
        assert client.submit(pow, 3, 2).result(timeout=60) == 9  # authenticated work goes on
        held.pop().close()

        def admitted() -> bool:
            with socket.create_connection(planner.addr, timeout=30) as again:
                return read_frame(again) is not None

        wait_for(admitted, timeout=30, what="a slot under the cap to free up")
        for s in held:
            s.close()
    finally:
        client.close()
        worker.stop()
        planner.stop()
