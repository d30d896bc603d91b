"""One-sided windows in a world of one (what ``granny.mpi`` is outside a granule): handles, errors,
operations on every flavour, and the pure core (target specs, applying an operation)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from granny.errors import MpiError
from granny.mpi import api as MPI
from granny.mpi import rma_apply
from granny.mpi.buffers import Buf


def test_a_freed_window_fails_cleanly_through_every_handle() -> None:
    win = MPI.Win.Allocate(16, 8)
    copy = MPI.Win(win)
    assert copy == win and copy is not win and win != MPI.WIN_NULL
    win.Free()
    assert win == MPI.WIN_NULL and not win
    for call in (lambda: copy.Lock(0), lambda: copy.Put(np.ones(1), 0), lambda: copy.Fence(),
                 lambda: copy.Get(np.ones(1), 0), lambda: copy.Accumulate(np.ones(1), 0)):
        with pytest.raises(MpiError, match="invalid window"):
            call()  # not a write into unmapped memory
    with pytest.raises(TypeError):
        MPI.Win((1, 2, 3))
    assert pickle.loads(pickle.dumps(MPI.WIN_NULL)) == MPI.WIN_NULL


def test_operations_on_every_flavour() -> None:
    mem = np.zeros(4)
    for win in (MPI.Win.Allocate(32, 8), MPI.Win.Create(mem, 8), MPI.Win.Allocate_shared(32, 8)):
        arr = np.frombuffer(win.tomemory(), dtype=np.float64)
        win.Fence()
        win.Put(np.array([1.0, 2.0]), 0, 1)
        win.Accumulate(np.array([10.0]), 0, 2, op=MPI.SUM)
        old = np.zeros(1)
        win.Lock(0, MPI.LOCK_SHARED)
        win.Fetch_and_op(np.array([5.0]), old, 0, 3, op=MPI.MAX)
        win.Unlock(0)
        got = np.zeros(4)
        win.Get(got, 0)
        win.Fence()
        assert got.tolist() == arr.tolist() == [0.0, 1.0, 12.0, 5.0] and old[0] == 0.0
        with pytest.raises(MpiError, match="outside"):
            win.Put(np.ones(2), 0, 3)  # 16 bytes at byte 24 of a 32-byte window
        with pytest.raises(MpiError, match="already locked"):
            win.Lock(0)
            win.Lock(0)
        win.Unlock(0)
        win.Free()
    assert mem.tolist() == [0.0, 1.0, 12.0, 5.0]  # a Create window is the program's own memory


def test_dynamic_window_uses_addresses_of_attached_memory() -> None:
    win = MPI.Win.Create_dynamic()
    buf = np.zeros(2, dtype=np.int64)
    win.Attach(buf)
    win.Lock(0)
    win.Put(np.array([7], dtype=np.int64), 0, MPI.Get_address(buf) + 8)
    win.Unlock(0)
    assert buf.tolist() == [0, 7] and win.attrs[:2] == (0, 0)
    win.Detach(buf)
    with pytest.raises(MpiError, match="not attached"):
        win.Detach(buf)
    win.Free()


def test_target_specs_follow_mpi4py() -> None:
    origin = Buf(memoryview(bytearray(16)), 2, MPI.DOUBLE)
    assert rma_apply.target_spec(None, origin) == (0, 2, MPI.DOUBLE)
    assert rma_apply.target_spec(3, origin) == (3, 2, MPI.DOUBLE)
    assert rma_apply.target_spec((1, 4, MPI.INT), origin) == (1, 4, MPI.INT)
    with pytest.raises(ValueError):
        rma_apply.target_spec((1, 2, MPI.DOUBLE, 0), origin)
    with pytest.raises(ValueError):
        rma_apply.target_spec("x", origin)
    with pytest.raises(MpiError):
        rma_apply.target_spec((0, 3, MPI.DOUBLE), origin)  # 24 bytes at the target for 16 of origin


def test_apply_fetches_the_old_bytes_and_compares_whole_elements() -> None:
    region = memoryview(bytearray(np.array([3, 4], dtype=np.int32).tobytes()))
    one = np.array([1, 1], dtype=np.int32).tobytes()
    assert rma_apply.apply(rma_apply.GACC, region, MPI.SUM, MPI.INT, one) == np.array([3, 4], np.int32).tobytes()
    assert np.frombuffer(region, np.int32).tolist() == [4, 5]
    cell = region[:4]
    old = rma_apply.apply(rma_apply.CAS, cell, None, MPI.INT, np.int32(9).tobytes(), np.int32(4).tobytes())
    assert old == np.int32(4).tobytes() and np.frombuffer(region, np.int32).tolist() == [9, 5]
    rma_apply.apply(rma_apply.CAS, cell, None, MPI.INT, np.int32(1).tobytes(), np.int32(4).tobytes())
    assert np.frombuffer(region, np.int32).tolist() == [9, 5]  # compare failed: unchanged


def test_alloc_mem_is_a_zeroed_byte_buffer() -> None:
    m = MPI.Alloc_mem(8)
    assert len(m) == 8 and m.format == "B" and bool(m) and not bool(MPI.Alloc_mem(0))
    m[:] = 1
    assert bytes(m) == b"\x01" * 8 and MPI.Get_address(m) == m.address
