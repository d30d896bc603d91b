"""Datatypes, typecodes and mpi4py-style buffer specs."""

from __future__ import annotations

import array
import pickle

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import granny.mpi.buffers as B
import granny.mpi.datatypes as D


def test_predefined_names_sizes_and_aliases() -> None:
    assert D.INT.Get_size() == 4 and D.INT.size == 4 and D.INT.Get_extent() == (0, 4)
    assert D.DOUBLE.name == D.DOUBLE.Get_name() == "MPI_DOUBLE"
    assert D.LONG.extent == 8 and D.LONG.lb == 0 and D.LONG.ub == 8
    assert D.TWOINT is D.INT_INT and D.BOOL is D.C_BOOL and D.UNSIGNED_INT is D.UNSIGNED
    assert D.SINT8_T is D.INT8_T and D.C_FLOAT_COMPLEX is D.C_COMPLEX
    assert D.DATATYPE_NULL.dtype is None and not D.DATATYPE_NULL and D.INT
    assert repr(D.INT) == "MPI.INT"
    assert hash(D.INT) == hash(D.Datatype(D.INT)) and D.Datatype(D.INT) == D.INT and D.INT != D.INT32_T


def test_pair_types_match_c_structs() -> None:
    assert D.DOUBLE_INT.dtype is not None and D.DOUBLE_INT.dtype.names == ("value", "index")
    assert (D.DOUBLE_INT.size, D.DOUBLE_INT.extent) == (12, 16)
    assert (D.SHORT_INT.size, D.SHORT_INT.extent) == (6, 8)
    assert (D.INT_INT.size, D.FLOAT_INT.extent, D.LONG_INT.extent) == (8, 8, 16)
    assert D.from_numpy(D.DOUBLE_INT.dtype) is D.DOUBLE_INT


def test_typecodes_follow_mpi4py() -> None:
    t = D.TYPECODES
    assert t["i"] is D.INT and t["l"] is D.LONG and t["q"] is D.LONG_LONG and t["d"] is D.DOUBLE
    assert t["?"] is D.C_BOOL and t["b1"] is D.C_BOOL and t["c"] is D.CHAR and t["B"] is D.UNSIGNED_CHAR
    assert t["i1"] is D.INT8_T and t["u8"] is D.UINT64_T and t["f8"] is D.DOUBLE and t["g"] is D.LONG_DOUBLE
    assert t["F"] is D.C_FLOAT_COMPLEX and t["D"] is D.C_DOUBLE_COMPLEX and t["G"] is D.C_LONG_DOUBLE_COMPLEX
    assert D.typedict is t
    assert D.typecode(D.INT) == "i" and D.typecode(D.INT32_T) == "i4" and D.typecode(D.BYTE) == "B"
    assert D.typecode(D.DOUBLE_INT) is None and D.typecode(D.DATATYPE_NULL) is None
    assert D.INT.typechar == "i" and D.INT.typestr == "i4" and D.DOUBLE_INT.typestr == "V16"
    assert D.Datatype.fromcode("d") is D.DOUBLE and D.INT.tocode() == "i"
    for code, dt in t.items():
        assert dt.dtype is not None, code


@pytest.mark.parametrize("dtype", ["i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "f2", "f4", "f8", "c8", "c16", "?"])
def test_from_numpy_round_trips(dtype: str) -> None:
    dt = D.from_numpy(np.dtype(dtype))
    assert dt.dtype == np.dtype(dtype)


def test_dup_commit_free_and_pickle() -> None:
    dup = D.DOUBLE.Dup()
    assert dup != D.DOUBLE and dup.dtype == D.DOUBLE.dtype and dup.Commit() is dup
    assert D.typecode(dup) == "d"
    dup.Free()
    assert dup == D.DATATYPE_NULL and dup.dtype is None
    with pytest.raises(ValueError):
        D.INT.Free()
    with pytest.raises(NotImplementedError, match="Create_darray"):
        D.INT.Create_darray(1, 0, 1, [4], [1], [1], [1])
    assert pickle.loads(pickle.dumps(D.INT)) is D.INT
    assert pickle.loads(pickle.dumps(B.IN_PLACE)) is B.IN_PLACE
    assert repr(B.IN_PLACE) == "MPI.IN_PLACE" and B.is_in_place(None) and B.is_in_place(B.IN_PLACE)


def test_plain_buffers_infer_datatype() -> None:
    assert B.parse_buffer(np.zeros(3, "f8"), readonly=True).datatype is D.DOUBLE
    assert B.parse_buffer(np.zeros(3, "i4"), readonly=True).datatype is D.INT
    b = B.parse_buffer(b"abcd", readonly=True)
    assert (b.count, b.datatype, b.nbytes) == (4, D.BYTE, 4)
    assert B.parse_buffer(bytearray(5), readonly=False).count == 5
    assert B.parse_buffer(array.array("i", [1, 2, 3]), readonly=True).datatype is D.INT
    assert B.parse_buffer(np.zeros(2, "i8").data, readonly=True).datatype is D.LONG
    assert B.parse_buffer(np.zeros((2, 3), order="F"), readonly=False).count == 6
    n = B.parse_buffer(None, readonly=False)
    assert (n.count, n.nbytes) == (0, 0)
    assert B.parse_buffer(np.zeros(0), readonly=False).count == 0


def test_spec_forms() -> None:
    a = np.arange(10, dtype="i4")
    assert B.parse_buffer([a, D.INT], readonly=True).count == 10
    assert B.parse_buffer([a, 3, D.INT], readonly=True).array().tolist() == [0, 1, 2]
    assert B.parse_buffer([a, (3, 2), D.INT], readonly=True).array().tolist() == [2, 3, 4]
    assert B.parse_buffer([a, [3, 2], D.INT], readonly=True).array().tolist() == [2, 3, 4]
    assert B.parse_buffer((a, 4), readonly=True).array().tolist() == [0, 1, 2, 3]
    assert B.parse_buffer([a, 2, 5, "i"], readonly=True).array().tolist() == [5, 6]
    assert B.parse_buffer([a, "i"], readonly=True).datatype is D.INT
    # An explicit datatype reinterprets the bytes.
    assert B.parse_buffer([a, D.BYTE], readonly=True).count == 40
    assert B.parse_buffer([None, 0, D.INT], readonly=False).count == 0
    scatter = B.parse_buffer([a, D.INT], readonly=True, blocks=5)
    assert (scatter.count, scatter.blocks, scatter.nbytes) == (2, 5, 40)


def test_zero_copy() -> None:
    a = np.zeros(4)
    B.parse_buffer(a, readonly=False).array()[2] = 7.0
    assert a[2] == 7.0
    B.parse_buffer([a, (1, 3), D.DOUBLE], readonly=False).array()[0] = 5.0
    assert a[3] == 5.0
    buf = bytearray(4)
    B.parse_buffer(buf, readonly=False).mem[0] = 9
    assert buf[0] == 9


def test_errors() -> None:
    a = np.arange(10, dtype="i4")
    with pytest.raises(BufferError, match="recvbuf"):
        B.parse_buffer(b"abc", readonly=False, name="recvbuf")
    ro = np.zeros(3)
    ro.flags.writeable = False
    with pytest.raises(BufferError):
        B.parse_buffer(ro, readonly=False)
    with pytest.raises(ValueError, match="contiguous"):
        B.parse_buffer(a[::2], readonly=True)
    with pytest.raises(ValueError, match="do not fit"):
        B.parse_buffer([a, 11, D.INT], readonly=True)
    with pytest.raises(ValueError, match="negative"):
        B.parse_buffer([a, -1, D.INT], readonly=True)
    with pytest.raises(ValueError, match="not a multiple"):
        B.parse_buffer([a, D.DOUBLE_INT], readonly=True)
    with pytest.raises(ValueError, match="typecode"):
        B.parse_buffer([a, "zz"], readonly=True)
    with pytest.raises(ValueError, match="2 to 4"):
        B.parse_buffer([a, 1, 2, D.INT, 5], readonly=True)
    with pytest.raises(TypeError):
        B.parse_buffer(42, readonly=True)
    with pytest.raises(ValueError, match="blocks"):
        B.parse_buffer(a, readonly=True, blocks=3)
    with pytest.raises(ValueError):
        D.from_numpy(np.dtype([("a", "i4")]))


def test_vbuffer_forms() -> None:
    a = np.arange(10, dtype="i8")
    v = B.parse_vbuffer([a, [1, 2, 3], [0, 2, 6], D.LONG], 3, readonly=True)
    assert [v.block_array(i).tolist() for i in range(3)] == [[0], [2, 3], [6, 7, 8]]
    v = B.parse_vbuffer([a, [1, 2, 3], D.LONG], 3, readonly=True)
    assert v.displs == [0, 1, 3]
    v = B.parse_vbuffer([a, ([2, 2], [5, 0]), D.LONG], 2, readonly=True)
    assert bytes(v.block(0)) == a[5:7].tobytes()
    v = B.parse_vbuffer([a, [4, 6]], 2, readonly=True)
    assert v.counts == [4, 6] and v.displs == [0, 4] and v.datatype is D.LONG
    v = B.parse_vbuffer(a, 5, readonly=True)
    assert v.counts == [2] * 5 and v.displs == [0, 2, 4, 6, 8]
    assert B.parse_vbuffer(a, 3, readonly=True).counts == [4, 3, 3]  # mpi4py splits unevenly
    assert B.parse_vbuffer([a, 2, 3, D.LONG], 3, readonly=True).displs == [0, 3, 6]
    w = B.parse_vbuffer(a, 2, readonly=False)
    w.block_array(1)[0] = -1
    assert a[5] == -1
    with pytest.raises(ValueError, match="expecting 3"):
        B.parse_vbuffer([a, [1, 2]], 3, readonly=True)
    with pytest.raises(ValueError, match="does not fit"):
        B.parse_vbuffer([a, [5, 6]], 2, readonly=True)


@given(st.integers(0, 40), st.integers(0, 10), st.integers(0, 10))
def test_count_displ_bounds(n: int, count: int, displ: int) -> None:
    a = np.arange(n, dtype="f4")
    if displ + count <= n:
        b = B.parse_buffer([a, (count, displ), D.FLOAT], readonly=True)
        assert b.array().tolist() == a[displ:displ + count].tolist()
    else:
        with pytest.raises(ValueError):
            B.parse_buffer([a, (count, displ), D.FLOAT], readonly=True)


def test_pickle_named_copies_and_dups() -> None:
    for dt in (D.DATATYPE_NULL, D.INT, D.DOUBLE_INT, D.LOGICAL16):
        assert pickle.loads(pickle.dumps(dt)) is dt
        copy = pickle.loads(pickle.dumps(D.Datatype(dt)))
        assert copy is not dt and copy == dt
    dup = D.FLOAT.Dup()
    again = pickle.loads(pickle.dumps(dup))
    assert again != dup and not again.is_predefined and again.dtype == D.FLOAT.dtype
    with pytest.raises(TypeError):
        D.Datatype((1, 2, 3))  # type: ignore[arg-type]


def test_names_envelope_and_extents() -> None:
    assert D.DATATYPE_NULL.Get_name() == "MPI_DATATYPE_NULL"
    copy = D.Datatype(D.INT)
    copy.name = "my int"
    assert copy.Get_name() == "my int" and D.INT.Get_name() == "MPI_INT"
    assert D.INT.Get_envelope() == (0, 0, 0, 0, 0)  # COMBINER_NAMED and D.INT.decode() == (D.INT, "NAMED", {})
    assert (D.DOUBLE_INT.true_lb, D.DOUBLE_INT.true_extent, D.DOUBLE_INT.true_ub) == (0, 16, 16)


def test_value_index_and_match_size() -> None:
    from granny.errors import MpiError
    from granny.mpi import constants as C

    assert D.Datatype.Get_value_index(D.DOUBLE, D.INT) is D.DOUBLE_INT
    assert D.Datatype.Get_value_index(D.INT, D.INT) is D.INT_INT
    assert D.Datatype.Get_value_index(D.DOUBLE, D.FLOAT) == D.DATATYPE_NULL
    with pytest.raises(MpiError) as exc:
        D.Datatype.Get_value_index(D.DATATYPE_NULL, D.INT)
    assert exc.value.Get_error_class() == C.ERR_TYPE
    assert D.Datatype.Match_size(C.TYPECLASS_INTEGER, 8) is D.INTEGER8
    assert D.Datatype.Match_size(C.TYPECLASS_COMPLEX, 16) is D.COMPLEX16
    with pytest.raises(MpiError):
        D.Datatype.Match_size(C.TYPECLASS_REAL, 3)


def test_derived_datatype_calls_raise_not_implemented_naming_the_call() -> None:
    factory = D.Datatype.Create_darray
    with pytest.raises(NotImplementedError, match="Create_darray"):
        factory(D.INT, 1, 0, 1, [4], [1], [1], [1])
    with pytest.raises(NotImplementedError, match="Create_struct"):
        D.Datatype.Create_struct([1], [0], [D.INT])
    with pytest.raises(NotImplementedError, match="Get_envelope"):
        D.INT.Dup().Get_envelope()
    with pytest.raises(AttributeError):
        D.INT.no_such_method  # noqa: B018
    assert D.TYPECODES["i16"] is D.INTEGER16


def test_derived_datatypes_have_mpi_sizes_and_extents() -> None:
    """As mpi4py on Open MPI reports them (the figures were taken from it)."""
    v = D.DOUBLE.Create_vector(4, 2, 5).Commit()
    assert (v.size, v.Get_extent(), v.Get_true_extent()) == (64, (0, 136), (0, 136))
    assert v.lb == 0 and v.ub == 136 and not v.is_predefined
    h = D.INT.Create_hvector(3, 1, 10)
    assert (h.size, h.extent) == (12, 24)
    ix = D.DOUBLE.Create_indexed([1, 3, 2], [2, 4, 10])
    assert (ix.size, ix.Get_extent(), ix.Get_true_extent()) == (48, (16, 80), (16, 80))
    s = D.DOUBLE.Create_subarray([6, 8], [2, 3], [1, 2])
    assert (s.size, s.Get_extent(), s.Get_true_extent()) == (48, (0, 384), (80, 88))
    r = v.Create_resized(-8, 200)
    assert (r.size, r.Get_extent(), r.ub) == (64, (-8, 200), 192)
    assert D.INT.Create_contiguous(3).Get_extent() == (0, 12)
    v.Free()
    assert v == D.DATATYPE_NULL or not v
    with pytest.raises(NotImplementedError, match="derived datatype"):
        B.parse_buffer([np.zeros(40), 1, h], readonly=True)
