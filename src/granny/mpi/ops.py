"""MPI reduction operations (mpi4py's ``MPI.Op``) over numpy buffers and Python objects.

Theory of operation
- Operand order. MPI defines a reduction step as ``inout = in op inout`` where ``in`` holds the
  contribution of LOWER ranks (MPI_Reduce_local, and the user function contract ``function(invec,
  inoutvec, datatype)``). Every function here keeps that order, so a non-commutative op folded by
  ``algorithms`` in rank order gives ``x0 op x1 op ... op x(n-1)``. ``reduce_objects(op, a, b)`` is
  ``a op b`` with ``a`` from lower ranks, like mpi4py's lowercase reductions (``op(lower, higher)``).
- Buffers. ``reduce_buffers`` works in place on numpy arrays with one vectorised ufunc call. Logical ops
  on numbers give 0/1 in the array's own dtype. MAXLOC/MINLOC need the ``value``/``index`` pair dtypes
  of ``datatypes`` and pick the smaller index on ties. A user op gets flat byte memoryviews (format
  'B'), as mpi4py hands its user functions ``mpi4py.MPI.buffer`` objects: ``np.frombuffer(invec,
  dtype=...)`` works on them, and writes into ``inoutvec`` are the result.
- REPLACE/NO_OP on buffers follow the C MPI libraries (REPLACE: inout = in; NO_OP: inout unchanged);
  on Python objects they follow mpi4py (``REPLACE(x, y) == y``, ``NO_OP(x, y) == x``).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import numpy as np

from .datatypes import Datatype, from_numpy, parse_buffer

UserFunction = Callable[[Any, Any, Any], Any]
_handles = itertools.count(1)


def _maxloc(x: Any, y: Any) -> Any:
    (u, i), (v, j) = x, y
    if u > v:
        return u, i
    if v > u:
        return v, j
    return (v, j) if j < i else (u, i)


def _minloc(x: Any, y: Any) -> Any:
    (u, i), (v, j) = x, y
    if u < v:
        return u, i
    if v < u:
        return v, j
    return (v, j) if j < i else (u, i)


# mpi4py's op_MAX ... op_NO_OP, used by lowercase (pickled-object) reductions and Op.__call__.
_PY: dict[str, Callable[[Any, Any], Any]] = {
    "MAX": lambda x, y: y if y > x else x,
    "MIN": lambda x, y: y if y < x else x,
    "SUM": lambda x, y: x + y,
    "PROD": lambda x, y: x * y,
    "BAND": lambda x, y: x & y,
    "BOR": lambda x, y: x | y,
    "BXOR": lambda x, y: x ^ y,
    "LAND": lambda x, y: bool(x) & bool(y),
    "LOR": lambda x, y: bool(x) | bool(y),
    "LXOR": lambda x, y: bool(x) ^ bool(y),
    "MAXLOC": _maxloc,
    "MINLOC": _minloc,
    "REPLACE": lambda x, y: y,
    "NO_OP": lambda x, y: x,
}


class Op:
    """An MPI reduction operation, predefined (``SUM`` ...) or from ``Op.Create``."""

    __slots__ = ("_commute", "_fn", "_handle", "_name")
    _handle: int
    _name: str
    _commute: bool

    def __init__(self, op: Op | None = None) -> None:
        self._handle = op._handle if op is not None else 0
        self._name = op._name if op is not None else "OP_NULL"
        self._fn: UserFunction | None = op._fn if op is not None else None
        self._commute = op._commute if op is not None else True

    @classmethod
    def _define(cls, name: str) -> Op:
        self = cls.__new__(cls)
        self._handle, self._name, self._fn, self._commute = next(_handles), name, None, True
        return self

    @classmethod
    def Create(cls, function: UserFunction, commute: bool = False) -> Op:
        """A user op: ``function(invec, inoutvec, datatype)`` stores ``invec op inoutvec`` in inoutvec.

        Called with Python objects (``op(x, y)``, lowercase reductions) it gets ``(x, y, None)`` and
        must return the result, as in mpi4py.
        """
        if not callable(function):
            raise TypeError(f"MPI.Op.Create: expecting a callable, got {type(function).__name__}")
        self = cls.__new__(cls)
        self._handle, self._name, self._fn, self._commute = next(_handles), "USER", function, bool(commute)
        return self

    def Free(self) -> None:
        if self._fn is None:
            raise ValueError(f"MPI.Op.Free: cannot free the predefined operation {self!r}")
        self._handle, self._name, self._fn, self._commute = 0, "OP_NULL", None, True

    def free(self) -> None:
        if self._fn is not None:
            self.Free()

    def Is_commutative(self) -> bool:
        return self._commute

    @property
    def is_commutative(self) -> bool:
        return self._commute

    @property
    def is_predefined(self) -> bool:
        return self._fn is None

    @property
    def name(self) -> str:
        """"SUM", "MAXLOC", ..., "USER" for Op.Create ops, "OP_NULL" (not in mpi4py: granny's own)."""
        return self._name

    @property
    def handle(self) -> int:
        return self._handle

    def __call__(self, x: Any, y: Any) -> Any:
        return reduce_objects(self, x, y)

    def Reduce_local(self, inbuf: Any, inoutbuf: Any) -> None:
        """inoutbuf = inbuf op inoutbuf, elementwise (MPI_Reduce_local)."""
        out = parse_buffer(inoutbuf, readonly=False, name="inoutbuf")
        inp = parse_buffer(inbuf, readonly=True, name="inbuf")
        if inp.datatype != out.datatype:
            raise ValueError("mismatch in send and receive MPI datatypes")
        if inp.count != out.count:
            raise ValueError(f"mismatch in send count {inp.count} and receive count {out.count}")
        reduce_buffers(self, inp.array(), out.array(), out.datatype)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Op):
            return NotImplemented
        return self._handle == other._handle

    def __hash__(self) -> int:
        return hash(("Op", self._handle))

    def __bool__(self) -> bool:
        return self._handle != 0

    def __repr__(self) -> str:
        return f"MPI.{self._name}" if self._fn is None else f"<MPI.Op user {self._fn!r}>"

    def __reduce__(self) -> str | tuple[Any, ...]:
        if self._fn is None:
            return self._name
        raise TypeError("cannot pickle a user-defined MPI.Op")


OP_NULL = Op()
SUM, PROD, MAX, MIN = Op._define("SUM"), Op._define("PROD"), Op._define("MAX"), Op._define("MIN")
LAND, LOR, LXOR = Op._define("LAND"), Op._define("LOR"), Op._define("LXOR")
BAND, BOR, BXOR = Op._define("BAND"), Op._define("BOR"), Op._define("BXOR")
MAXLOC, MINLOC = Op._define("MAXLOC"), Op._define("MINLOC")
REPLACE, NO_OP = Op._define("REPLACE"), Op._define("NO_OP")

_UFUNCS: dict[str, np.ufunc] = {
    "SUM": np.add, "PROD": np.multiply, "MAX": np.maximum, "MIN": np.minimum,
    "LAND": np.logical_and, "LOR": np.logical_or, "LXOR": np.logical_xor,
    "BAND": np.bitwise_and, "BOR": np.bitwise_or, "BXOR": np.bitwise_xor,
}


def reduce_buffers(op: Op, in_arr: np.ndarray, inout_arr: np.ndarray, datatype: Datatype | None = None) -> None:
    """``inout_arr = in_arr op inout_arr`` elementwise, in place; ``in_arr`` comes from lower ranks.

    Both arrays are 1-D, contiguous and of the same dtype and length. ``datatype`` is what a user op
    receives as its third argument (default: the datatype of the arrays' dtype, if there is one).
    """
    if in_arr.shape != inout_arr.shape:
        raise ValueError(f"reduction operands differ in shape: {in_arr.shape} and {inout_arr.shape}")
    if op._fn is not None:
        if datatype is None:
            try:
                datatype = from_numpy(inout_arr.dtype)
            except ValueError:
                datatype = None
        # Flat byte views, like the mpi4py.MPI.buffer objects mpi4py passes to user functions.
        invec = np.ascontiguousarray(in_arr).reshape(-1).view(np.uint8).data
        inoutvec = inout_arr.reshape(-1).view(np.uint8).data
        op._fn(invec, inoutvec, datatype)
        return
    name = op._name
    if name in ("MAXLOC", "MINLOC"):
        _reduce_loc(name == "MAXLOC", in_arr, inout_arr)
        return
    if name == "REPLACE":
        inout_arr[...] = in_arr
        return
    if name == "NO_OP":
        return
    ufunc = _UFUNCS.get(name)
    if ufunc is None:
        raise ValueError(f"cannot reduce with {op!r}")
    if inout_arr.dtype.fields is not None or inout_arr.dtype.kind in "SUV":
        raise TypeError(f"{op!r} is not defined for numpy dtype {inout_arr.dtype}")
    try:
        # Logical ufuncs produce bool; the safe cast to out's dtype turns it into 0/1 of that dtype.
        ufunc(in_arr, inout_arr, out=inout_arr)
    except TypeError:
        raise TypeError(f"{op!r} is not defined for numpy dtype {inout_arr.dtype}") from None


def _reduce_loc(is_max: bool, in_arr: np.ndarray, inout_arr: np.ndarray) -> None:
    fields = inout_arr.dtype.fields
    if fields is None or set(fields) != {"value", "index"}:
        raise TypeError(f"MAXLOC/MINLOC need a (value, index) pair datatype such as MPI.DOUBLE_INT, "
                        f"got numpy dtype {inout_arr.dtype}")
    u, i = in_arr["value"], in_arr["index"]
    v, j = inout_arr["value"], inout_arr["index"]
    better = (u > v) if is_max else (u < v)
    take = better | ((u == v) & (i < j))
    np.copyto(inout_arr, in_arr, where=take)


def reduce_objects(op: Op, a: Any, b: Any) -> Any:
    """``a op b`` on Python objects (lowercase reduce/allreduce/scan), ``a`` from lower ranks."""
    if op._fn is not None:
        return op._fn(a, b, None)
    fn = _PY.get(op._name)
    if fn is None:
        raise ValueError(f"cannot reduce with {op!r}")
    return fn(a, b)
