"""Function fusion on real processes (planner/fusion.py, worker/fused.py): delay-tolerant ``async def`` calls
share one granule, and one slot, while they wait on I/O; results, errors, cancellation, output and
metadata work as for calls run one at a time."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from concurrent.futures import CancelledError
from pathlib import Path

import pytest

import granny
from granny.cluster import LocalCluster

from ..polling import wait_for

N = 20


class GateServer:
    """A TCP server that answers nobody until ``open()``: a call that awaits it is blocked on real I/O."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.gate = threading.Event()
        self.lock = threading.Lock()
        self.waiting: dict[int, socket.socket] = {}  # call index -> its connection
        self.hung_up: set[int] = set()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            index = int(conn.makefile().readline())
            with self.lock:
                self.waiting[index] = conn
            conn.settimeout(0.05)
            while not self.gate.is_set():
                try:
                    if conn.recv(1) == b"":  # the caller went away (its call was cancelled)
                        with self.lock:
                            self.hung_up.add(index)
                        return
                except TimeoutError:
                    continue  # a read timeout, to look at the gate again (not a sleep)
            conn.sendall(f"answer-{index}\n".encode())

    def connected(self) -> int:
        with self.lock:
            return len(self.waiting)

    def close(self) -> None:
        self.gate.set()
        self.sock.close()


async def fetch(port: int, index: int) -> tuple[int, str, int]:
    import asyncio
    import os

    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"{index}\n".encode())
    await writer.drain()
    answer = (await reader.readline()).decode().strip()
    writer.close()
    if index == 0:
        raise ValueError(f"call {index} fails after {answer}")
    print(f"call {index} got {answer}")
    return index, answer, os.getpid()


@pytest.fixture
def one_slot(tmp_path: Path) -> Iterator[LocalCluster]:
    c = LocalCluster(workers=1, slots=1, data_dir=tmp_path / "data", granule_user="same")
    try:
        yield c
    finally:
        c.stop()


def test_async_delay_tolerant_calls_share_one_slot_while_they_wait(one_slot: LocalCluster) -> None:
    server = GateServer()
    try:
        with granny.connect(one_slot.address, one_slot.token) as client:
            batch = client.options(delay_tolerance=-1)
            futures = [batch.submit(fetch, server.port, i) for i in range(N)]
            # All 20 wait on the server at once, on a cluster of one slot: they can only be fused.
            wait_for(lambda: server.connected() == N, timeout=60, what="every call waiting on the server")
            hosts = client.query("hosts")
            assert [h["used"] for h in hosts] == [1], hosts  # the planner counts them as one slot
            counters = client.query("counters")["batch"]
            assert counters["fused"] == N and counters["fused_peak"] == N, counters
            assert futures[1].cancel()
            wait_for(lambda: 1 in server.hung_up, timeout=60, what="the cancelled call's coroutine ending")
            server.gate.set()
            with pytest.raises(ValueError, match="call 0 fails after answer-0"):
                futures[0].result(timeout=60)
            with pytest.raises(CancelledError):
                futures[1].result(timeout=60)
            results = [f.result(timeout=60) for f in futures[2:]]
            assert [(i, answer) for i, answer, _ in results] == [(i, f"answer-{i}") for i in range(2, N)]
            assert len({pid for _, _, pid in results}) == 1  # one granule ran them all
            assert all(f.attempts == 1 for f in futures[2:])
            # Each call's output is its own, though they ran interleaved in one process.
            def logged() -> dict[str, str]:
                return {row["req_id"]: row["data"] for row in client.query("logs", client.app_id)}
            wait_for(lambda: len(logged()) == N - 2, timeout=30, what="the calls' output in the journal")
            lines = logged()
            assert all(lines[f.req_id] == f"call {i} got answer-{i}\n" for i, f in enumerate(futures) if i >= 2)
            # The slot is free again, for latency-sensitive work too.
            assert client.submit(pow, 2, 10).result(timeout=60) == 1024
            wait_for(lambda: client.query("hosts")[0]["used"] == 0, timeout=30, what="the slot released")
    finally:
        server.close()


async def double(x: int) -> int:
    import asyncio

    await asyncio.sleep(0)
    return 2 * x


def test_an_async_function_called_latency_sensitive_runs_alone_and_returns_its_value(client: granny.Client) -> None:
    assert client.submit(double, 21).result(timeout=60) == 42
    assert client.query("counters")["batch"].get("fused", 0) == 0


def test_fusion_cap_one_turns_fusion_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRANNY_FUSION_CAP", "1")  # the planner LocalCluster starts inherits it
    cluster = LocalCluster(workers=1, slots=1, data_dir=tmp_path / "data", granule_user="same")
    try:
        with granny.connect(cluster.address, cluster.token) as client:
            futures = [client.options(delay_tolerance=-1).submit(double, i) for i in range(3)]
            assert [f.result(timeout=60) for f in futures] == [0, 2, 4]
            assert client.query("counters")["batch"].get("fused", 0) == 0
    finally:
        cluster.stop()
