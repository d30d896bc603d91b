"""Reduction operations on numpy buffers and Python objects."""

from __future__ import annotations

import array
import pickle
from typing import Any

import numpy as np
import pytest

import granny.mpi.datatypes as D
import granny.mpi.ops as O

NUMERIC = ["i1", "i4", "i8", "u1", "u8", "f4", "f8", "?"]
REFERENCE: dict[str, Any] = {
    "SUM": np.add, "PROD": np.multiply, "MAX": np.maximum, "MIN": np.minimum,
    "LAND": np.logical_and, "LOR": np.logical_or, "LXOR": np.logical_xor,
    "BAND": np.bitwise_and, "BOR": np.bitwise_or, "BXOR": np.bitwise_xor,
}


def _data(dtype: str, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 4, 64).astype(dtype)


@pytest.mark.parametrize("dtype", NUMERIC)
@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_predefined_ops_match_numpy(name: str, dtype: str) -> None:
    op = getattr(O, name)
    a, b = _data(dtype, 1), _data(dtype, 2)
    if name.startswith("B") and dtype[0] == "f":
        with pytest.raises(TypeError):
            O.reduce_buffers(op, a, b.copy())
        return
    want = REFERENCE[name](a, b).astype(dtype)
    out = b.copy()
    O.reduce_buffers(op, a, out)
    assert out.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(out, want)
    if name.startswith("L"):
        assert set(np.unique(out).tolist()) <= {0, 1}


def test_replace_and_no_op_on_buffers() -> None:
    a, b = np.array([1, 2]), np.array([3, 4])
    O.reduce_buffers(O.NO_OP, a, b)
    assert b.tolist() == [3, 4]
    O.reduce_buffers(O.REPLACE, a, b)
    assert b.tolist() == [1, 2]


@pytest.mark.parametrize("pair", [D.DOUBLE_INT, D.INT_INT, D.FLOAT_INT, D.LONG_INT, D.SHORT_INT])
def test_maxloc_minloc_tie_breaking(pair: D.Datatype) -> None:
    dt = pair.dtype
    inp = np.array([(1, 5), (2, 1), (3, 3), (4, 0)], dt)
    io = np.array([(1, 2), (3, 9), (3, 4), (4, 1)], dt)
    out = io.copy()
    O.reduce_buffers(O.MAXLOC, inp, out)
    assert out.tolist() == [(1, 2), (3, 9), (3, 3), (4, 0)]
    out = io.copy()
    O.reduce_buffers(O.MINLOC, inp, out)
    assert out.tolist() == [(1, 2), (2, 1), (3, 3), (4, 0)]
    with pytest.raises(TypeError, match="pair"):
        O.reduce_buffers(O.MAXLOC, np.zeros(2), np.zeros(2))


def test_python_object_calls() -> None:
    assert O.SUM(1, 2) == 3 and O.PROD(3, 4) == 12 and O.MAX(1, 5) == 5 and O.MIN(1, 5) == 1
    assert O.SUM([1], [2]) == [1, 2] and O.SUM("a", "b") == "ab"
    assert O.LAND(1, 0) is False and O.LOR(0, 3) is True and O.LXOR(1, 1) is False
    assert O.BAND(6, 3) == 2 and O.BOR(6, 3) == 7 and O.BXOR(6, 3) == 5
    assert O.MAXLOC((3, 1), (3, 0)) == (3, 0) and O.MAXLOC((3, 1), (2, 0)) == (3, 1)
    assert O.MINLOC((3, 1), (3, 0)) == (3, 0) and O.MINLOC((3, 1), (4, 0)) == (3, 1)
    assert O.REPLACE(1, 2) == 2 and O.NO_OP(1, 2) == 1
    assert O.reduce_objects(O.SUM, [0], [1]) == [0, 1]


def _matmul(invec: Any, inoutvec: Any, datatype: Any) -> Any:
    """2x2 integer matrices; MPI: inoutvec = invec @ inoutvec (non-commutative)."""
    if datatype is None:  # Python objects: return the result (mpi4py convention)
        return invec @ inoutvec
    a = np.frombuffer(invec, dtype=datatype.dtype).reshape(-1, 2, 2)
    b = np.frombuffer(inoutvec, dtype=datatype.dtype).reshape(-1, 2, 2)
    b[...] = a @ b
    return None


def test_user_op_non_commutative_order() -> None:
    op = O.Op.Create(_matmul, commute=False)
    assert not op.is_commutative and not op.Is_commutative() and not op.is_predefined
    assert O.SUM.is_predefined and O.SUM.is_commutative and O.SUM.name == "SUM"
    x = np.array([[1, 2], [3, 4]], dtype="i8")
    y = np.array([[0, 1], [1, 0]], dtype="i8")
    inout = y.copy().reshape(-1)
    op.Reduce_local(x.reshape(-1), inout)
    np.testing.assert_array_equal(inout.reshape(2, 2), x @ y)
    inout = y.copy().reshape(-1)
    O.reduce_buffers(op, x.reshape(-1), inout, D.LONG)
    np.testing.assert_array_equal(inout.reshape(2, 2), x @ y)
    np.testing.assert_array_equal(op(x, y), x @ y)
    op.Free()
    assert op == O.OP_NULL and not op
    with pytest.raises(ValueError):
        O.SUM.Free()


def test_user_op_gets_writable_byte_buffers() -> None:
    seen: list[Any] = []

    def fn(invec: Any, inoutvec: Any, datatype: Any) -> None:
        seen.extend([invec, inoutvec, datatype])

    a = np.arange(3, dtype="f8")
    a.flags.writeable = False
    op = O.Op.Create(fn, True)
    O.reduce_buffers(op, a, np.zeros(3))
    op.Free()
    invec, inoutvec, datatype = seen
    assert len(invec) == 24 and memoryview(invec).nbytes == 24
    assert not memoryview(inoutvec).readonly and datatype is D.DOUBLE


def test_user_op_buffers_take_any_buffer_of_the_same_size() -> None:
    """mpi4py's MPI.buffer: ``inoutvec[:] = array.array("i", ...)`` copies bytes into the result."""

    def add_i(invec: Any, inoutvec: Any, datatype: Any) -> None:
        x = array.array("i", memoryview(invec).tobytes())
        y = array.array("i", memoryview(inoutvec).tobytes())
        inoutvec[:] = array.array("i", [u + v for u, v in zip(x, y, strict=True)])
        with pytest.raises(ValueError):
            inoutvec[:] = b"x"

    op = O.Op.Create(add_i, True)
    inout = np.array([10, 20, 30], dtype="i4")
    O.reduce_buffers(op, np.array([1, 2, 3], dtype="i4"), inout)
    op.Free()
    assert inout.tolist() == [11, 22, 33]


def test_user_op_registry_slots_and_pickling() -> None:
    ops = [O.Op.Create(_matmul) for _ in range(O.MAX_USER_OPS)]
    with pytest.raises(RuntimeError):
        O.Op.Create(_matmul)
    clone = O.Op.fromint(ops[0].toint())
    assert clone == ops[0]
    with pytest.raises(ValueError):
        clone.__reduce__()
    with pytest.raises(ValueError):
        clone(1, 2)
    for op in ops:
        op.Free()
    op = O.Op.Create(_matmul, commute=True)
    again = pickle.loads(pickle.dumps(op))
    assert again != op and again.Is_commutative() and not again.is_predefined
    op.Free()
    again.Free()


def test_predefined_ops_pickle_as_themselves() -> None:
    for op in (O.SUM, O.MAXLOC, O.OP_NULL, O.NO_OP):
        assert pickle.loads(pickle.dumps(op)) is op
        copy = pickle.loads(pickle.dumps(O.Op(op)))
        assert copy is not op and copy == op and copy.name == op.name


def test_reduce_local_checks() -> None:
    with pytest.raises(ValueError, match="count"):
        O.SUM.Reduce_local(np.zeros(2), np.zeros(3))
    with pytest.raises(ValueError, match="datatype"):
        O.SUM.Reduce_local(np.zeros(2, "f4"), np.zeros(2, "f8"))
    b = np.ones(3)
    O.SUM.Reduce_local([np.ones(3), D.DOUBLE], b)
    assert b.tolist() == [2.0, 2.0, 2.0]
