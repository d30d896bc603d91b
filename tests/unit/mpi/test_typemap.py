"""Type maps of derived datatypes as byte segments (granny.mpi.typemap): the pieces, bounds and sizes MPI's
definitions give, and packing through ``index``."""

from __future__ import annotations

import numpy as np
import pytest

from granny.mpi import typemap as T

D8 = T.named("DOUBLE", 8, 8)


def test_vector_and_indexed_pieces() -> None:
    v = T.vector(D8, 3, 2, 4)
    assert v.segs == ((0, 16), (32, 16), (64, 16)) and (v.lb, v.extent, v.size) == (0, 80, 48)
    assert T.repeat(v, 2) == ((0, 16), (32, 16), (64, 32), (112, 16), (144, 16))  # the 2nd starts at 80
    assert T.vector(D8, 2, 2, 2).segs == ((0, 32),)  # touching blocks merge
    assert T.vector(D8, 2, 2, 2).contiguous and not v.contiguous
    ix = T.indexed(D8, [2, 1], [3, 0])  # type-map order, not sorted
    assert ix.segs == ((24, 16), (0, 8)) and (ix.lb, ix.extent) == (0, 40)
    assert T.hindexed(D8, [1], [-8]).lb == -8


def test_subarray_orders_and_extent() -> None:
    c = T.subarray(D8, [4, 5], [2, 2], [1, 3], fortran=False)
    assert [o // 8 for o, _ in c.segs] == [8, 13] and (c.lb, c.extent) == (0, 160)
    f = T.subarray(D8, [4, 5], [2, 2], [1, 3], fortran=True)  # (i, j) at i + 4 j
    assert [(o // 8, n // 8) for o, n in f.segs] == [(13, 2), (17, 2)]
    with pytest.raises(ValueError):
        T.subarray(D8, [4], [3], [2], fortran=False)


def test_index_packs_and_resized_repeats() -> None:
    r = T.resized(T.vector(D8, 2, 1, 3), 0, 32)
    segs = T.repeat(r, 2)
    assert segs == ((0, 8), (24, 16), (56, 8)) and T.span(segs) == (0, 64)  # 3 and 4 touch
    raw = np.arange(10, dtype=np.float64).view(np.uint8)
    assert np.frombuffer(raw[T.index(segs)].tobytes(), np.float64).tolist() == [0, 3, 4, 7]
    with pytest.raises(ValueError):
        T.vector(D8, 2, -1, 3)
