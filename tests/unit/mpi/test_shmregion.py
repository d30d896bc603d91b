"""The C collective region (granny.mpi._fastring.Region) and its pure-Python twin (shmregion.PyRegion) over one
buffer: the same layout (what one writes the other reads), the one-call fast paths, and a wait that sleeps
and progresses the point-to-point engine until the condition holds."""

from __future__ import annotations

import mmap

import numpy as np
import pytest

from granny.mpi.shmregion import OPCODES, SLOT, PyRegion, region_size, slot_offset

fastring = pytest.importorskip("granny.mpi._fastring", reason="the optional C extension is not built")


@pytest.fixture
def pair() -> tuple[object, PyRegion, mmap.mmap]:
    buf = mmap.mmap(-1, region_size(2, SLOT))
    c = fastring.Region(buf, 2, 0, SLOT, 2000, False, None)
    p = PyRegion(buf, 2, 1, SLOT, 2000, False, None)
    return c, p, buf


def test_what_one_side_writes_the_other_reads(pair: tuple[object, PyRegion, mmap.mmap]) -> None:
    c, p, buf = pair
    c.put(1, 5, b"hello")  # type: ignore[attr-defined]
    c.post(1)  # type: ignore[attr-defined]
    p.wait_post(1, 0)
    assert p.header(1, 0) == 5
    off = slot_offset(2, SLOT, 0, 1)
    assert buf[off:off + 5] == b"hello"
    p.put(1, -1, None)
    p.post(1)
    c.wait_post(1, -1)  # type: ignore[attr-defined]
    assert c.header(1, 1) == -1  # type: ignore[attr-defined]
    c.done(1)  # type: ignore[attr-defined]
    p.done(1)
    # a pickled bcast from the Python side, taken by the C one
    assert p.bcast_obj(2, b"xyz", 1) is True
    assert c.bcast_obj(2, None, 1) == b"xyz"  # type: ignore[attr-defined]
    # too large for a slot: the root marks it, the other side gets None
    assert p.bcast_obj(3, b"x" * (SLOT + 1), 1) is False
    assert c.bcast_obj(3, None, 1) is None  # type: ignore[attr-defined]


def test_c_allreduce_and_bcast_against_python_posts(pair: tuple[object, PyRegion, mmap.mmap]) -> None:
    c, p, _ = pair
    p.put(1, 16, np.array([2.0, np.nan]).view(np.uint8))
    p.post(1)
    out = np.empty(2)
    assert c.allreduce(1, np.array([1.0, 5.0]), out, OPCODES["MAX"]) == 1  # type: ignore[attr-defined]
    assert out[0] == 2.0 and np.isnan(out[1])  # NaN wins, as numpy's maximum
    p.done(1)
    # declined before touching anything: a type or op the C code does not reduce
    s = np.array(["a"])
    assert c.allreduce(2, s, np.empty_like(s), OPCODES["SUM"]) == 0  # type: ignore[attr-defined]
    assert c.allreduce(2, np.ones(1), np.empty(1), OPCODES["BAND"]) == 0  # type: ignore[attr-defined]
    ints = np.empty(3, np.int32)
    p.put(2, 12, np.array([1, 2, 3], np.int32).view(np.uint8))
    p.post(2)
    assert c.allreduce(2, np.array([7, 7, 7], np.int32), ints, OPCODES["BXOR"]) == 1  # type: ignore[attr-defined]
    assert ints.tolist() == [6, 5, 4]
    p.done(2)
    # Bcast of an array, the Python side as the root
    p.put(3, 8, np.arange(8, dtype=np.uint8))
    p.post(3)
    got = np.zeros(8, np.uint8)
    assert c.bcast(3, got, 1) == 1  # type: ignore[attr-defined]
    assert got.tolist() == list(range(8))
    assert c.bcast(4, np.zeros(SLOT + 1, np.uint8), 1) == 0  # type: ignore[attr-defined]


def test_a_long_wait_sleeps_and_progresses_until_the_post() -> None:
    buf = mmap.mmap(-1, region_size(2, SLOT))
    p = PyRegion(buf, 2, 1, SLOT, 0, False, None)
    calls = []

    def progress() -> None:  # what the p2p engine does while a rank waits; here it makes the peer post
        calls.append(1)
        if len(calls) == 3:
            p.post(1)

    c = fastring.Region(buf, 2, 0, SLOT, 1000, False, progress)
    c.wait_post(1, 1)
    assert len(calls) == 3


def test_the_python_wait_progresses_too() -> None:
    buf = mmap.mmap(-1, region_size(2, SLOT))
    c = fastring.Region(buf, 2, 0, SLOT, 0, False, None)
    calls = []

    def progress() -> None:
        calls.append(1)
        if len(calls) == 2:
            c.post(5)

    p = PyRegion(buf, 2, 1, SLOT, 1000, True, progress)
    p.wait_post(5, 0)
    assert len(calls) == 2


def test_single_copy_reads_in_c_and_their_errors() -> None:
    import os

    from granny.errors import MpiError
    from granny.mpi import shm

    src = np.arange(100_000, dtype=np.uint8)
    dst = np.zeros_like(src)
    fastring.cma_read(os.getpid(), shm.buffer_address(memoryview(src)), memoryview(dst))
    assert (dst == src).all()
    dst[:] = 0
    shm.cma_read(os.getpid(), shm.buffer_address(memoryview(src)) + 10, memoryview(dst)[:50])
    assert (dst[:50] == src[10:60]).all() and not dst[50:].any()
    with pytest.raises(MpiError, match="reading 8 bytes"):
        shm.cma_read(os.getpid(), 8, memoryview(bytearray(8)))  # nothing is mapped there
