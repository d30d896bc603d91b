"""The collective executor (execute.py) end to end: schedules of algorithms.py run by ``run_buffers`` /
``run_objects`` in one thread per rank over an in-memory engine with the real engine's interface."""

from __future__ import annotations

import pickle
import queue
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import granny.mpi.algorithms as A
from granny.mpi.execute import BufStore, ObjStore, run_buffers, run_objects
from granny.mpi.ops import SUM, Op


class _Req:
    def __init__(self, src: int = -1, mem: memoryview | None = None) -> None:
        self.src, self.mem = src, mem
        self.error: Exception | None = None
        self.nbytes = 0
        self.value: Any = None


class FakeEngine:
    """FIFO per ordered pair; a send copies its bytes at once (the executor must not rely on more)."""

    def __init__(self, rank: int, boxes: dict[tuple[int, int], queue.Queue[bytes]]) -> None:
        self.rank, self.boxes = rank, boxes

    def send(self, ctx: int, dst: int, tag: int, mem: Any, nbytes: int, obj: bool) -> _Req:
        self.boxes[(self.rank, dst)].put(bytes(mem))
        return _Req()

    def post(self, ctx: int, src: int, tag: int, mem: memoryview | None) -> _Req:
        return _Req(src, mem)

    def wait(self, req: _Req) -> None:
        if req.src < 0:
            return
        data = self.boxes[(req.src, self.rank)].get(timeout=10)
        req.nbytes = len(data)
        if req.mem is None:
            req.value = pickle.loads(data)
        elif len(data) <= req.mem.nbytes:
            req.mem[:len(data)] = data


def run_all(size: int, body: Callable[[int, FakeEngine], None]) -> None:
    boxes: dict[tuple[int, int], queue.Queue[bytes]] = {(a, b): queue.Queue() for a in range(size) for b in range(size)}
    errors: list[BaseException] = []

    def main(r: int) -> None:
        try:
            body(r, FakeEngine(r, boxes))
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=main, args=(r,)) for r in range(size)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    if errors:
        raise errors[0]


def _affine(a: Any, b: Any, dt: Any) -> None:
    """inout = in ∘ inout on (scale, shift) pairs: associative, not commutative."""
    x, y = np.frombuffer(a, "i8").reshape(-1, 2), np.frombuffer(b, "i8").reshape(-1, 2)
    scale, shift = x[:, 0] * y[:, 0], y[:, 0] * x[:, 1] + y[:, 1]
    y[:, 0], y[:, 1] = scale, shift


def _mine(r: int) -> np.ndarray:
    return np.array([r + 2, r + 1, r + 3, 2 * r], dtype="i8")


def _fold(ranks: range) -> np.ndarray:
    acc = np.array([1, 0, 1, 0], dtype="i8")
    for r in ranks:
        m = _mine(r)
        acc = np.array([m[0] * acc[0], m[0] * acc[1] + m[1], m[2] * acc[2], m[2] * acc[3] + m[3]], dtype="i8")
    return acc


@pytest.mark.parametrize("size", [1, 2, 3, 5, 8])
@pytest.mark.parametrize("exclusive", [False, True])
def test_scan_buffers_in_rank_order(size: int, exclusive: bool) -> None:
    op = Op.Create(_affine, commute=False)
    results: dict[int, np.ndarray] = {}

    def body(r: int, eng: FakeEngine) -> None:
        n = 4
        acc = np.zeros(2 * n, dtype="i8")
        acc[n:] = _mine(r)
        if not exclusive:
            acc[:n] = acc[n:]
        sched = A.exscan(r, size) if exclusive else A.scan(r, size)
        run_buffers(eng, 0, list(range(size)), sched, BufStore(acc, [(0, n), (n, 2 * n)], op=op))  # type: ignore[arg-type]
        results[r] = acc[:n]

    try:
        run_all(size, body)
    finally:
        op.Free()  # user ops live in a bounded registry
    for r in range(size):
        if exclusive and r == 0:
            continue
        np.testing.assert_array_equal(results[r], _fold(range(r if exclusive else r + 1)))


@pytest.mark.parametrize("hosts", [[0, 0, 0, 0, 0], [0, 1, 0, 1, 1], [1, 1, 0, 0, 2]])
def test_gather_blocks_anywhere_in_memory(hosts: list[int]) -> None:
    """Gatherv's displacements may put blocks in any order: a leader's multi-block message must still
    land in the right places."""
    size, root = len(hosts), 2
    counts = [3, 0, 2, 4, 1]
    order = [4, 1, 0, 3, 2]  # block order in the root's buffer
    displs, off = [0] * size, 0
    for b in order:
        displs[b], off = off, off + counts[b]
    bounds = [(d, d + c) for c, d in zip(counts, displs, strict=True)]
    got: dict[int, np.ndarray] = {}

    def body(r: int, eng: FakeEngine) -> None:
        out = np.full(off, 255, dtype=np.uint8)
        lo, hi = bounds[r]
        out[lo:hi] = 10 * r + np.arange(counts[r])
        run_buffers(eng, 0, list(range(size)), A.gather(r, size, root, hosts),  # type: ignore[arg-type]
                    BufStore(out, bounds, filled=True))
        got[r] = out

    run_all(size, body)
    want = np.full(off, 255, dtype=np.uint8)
    for r in range(size):
        want[displs[r]:displs[r] + counts[r]] = 10 * r + np.arange(counts[r])
    np.testing.assert_array_equal(got[root], want)


@pytest.mark.parametrize("size", [2, 3, 4])
def test_allreduce_large_reads_source_without_copy(size: int) -> None:
    n = 1000
    got: dict[int, np.ndarray] = {}

    def body(r: int, eng: FakeEngine) -> None:
        src = np.arange(n, dtype="f8") * (r + 1)
        src.flags.writeable = False  # the executor must never write the send buffer
        out = np.empty(n)
        run_buffers(eng, 0, list(range(size)), A.allreduce_large(r, size, [0] * size),  # type: ignore[arg-type]
                    BufStore(out, A.block_bounds(n, size), src, SUM))
        got[r] = out

    run_all(size, body)
    for r in range(size):
        np.testing.assert_allclose(got[r], np.arange(n) * size * (size + 1) / 2)


@pytest.mark.parametrize("size", [1, 3, 4])
def test_object_reduce_in_rank_order(size: int) -> None:
    got: dict[int, Any] = {}

    def body(r: int, eng: FakeEngine) -> None:
        store = ObjStore([[r]], SUM)
        run_objects(eng, 0, list(range(size)), A.reduce(r, size, 1 % size, [0] * size, False), store)  # type: ignore[arg-type]
        got[r] = store.blocks[0]

    run_all(size, body)
    assert got[1 % size] == list(range(size))
