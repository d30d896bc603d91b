"""MPI reduction operations (mpi4py's ``MPI.Op``) over numpy buffers and Python objects.

Theory of operation
- Operand order. MPI defines a reduction step as ``inout = in op inout`` where ``in`` holds the
  contribution of LOWER ranks (MPI_Reduce_local, and the user function contract ``function(invec,
  inoutvec, datatype)``). Every function here keeps that order, so a non-commutative op folded by
  ``algorithms`` in rank order gives ``x0 op x1 op ... op x(n-1)``. ``reduce_objects(op, a, b)`` is
  ``a op b`` with ``a`` from lower ranks, like mpi4py's lowercase reductions (``op(lower, higher)``).
- Buffers. ``reduce_buffers`` works in place on numpy arrays with one vectorised ufunc call. Logical ops
  on numbers give 0/1 in the array's own dtype. MAXLOC/MINLOC need the ``value``/``index`` pair dtypes
  of ``datatypes`` and pick the smaller index on ties. A user op gets byte buffers over the arrays'
  memory (``user_buffer``), behaving as the ``mpi4py.MPI.buffer`` objects mpi4py hands its user
  functions: ``np.frombuffer(invec, dtype=...)`` works on them, ``inoutvec[:] = other_buffer`` copies
  bytes, and writes into ``inoutvec`` are the result.
- REPLACE/NO_OP on buffers follow the C MPI libraries (REPLACE: inout = in; NO_OP: inout unchanged);
  on Python objects they follow mpi4py (``REPLACE(x, y) == y``, ``NO_OP(x, y) == x``).
"""

from __future__ import annotations

import copyreg
import ctypes
import itertools
from collections.abc import Callable
from typing import Any, Self

import numpy as np

from .buffers import parse_buffer
from .datatypes import Datatype, from_numpy

UserFunction = Callable[[Any, Any, Any], Any]
_newobj: Any = copyreg.__newobj__  # type: ignore[attr-defined]  # what mpi4py reduces copies of named ops to
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
    """An MPI reduction operation, predefined (``SUM`` ...) or from ``Op.Create``.

    As in mpi4py, a user op holds one of ``MAX_USER_OPS`` slots of a registry (``Op.Create`` raises
    RuntimeError when all are taken; ``Free`` releases the slot). The slot is what makes the op callable
    on Python objects and picklable (as ``Op.Create(function, commute)``); an op rebuilt from its
    integer handle (``Op.fromint``) reduces buffers but, like mpi4py's, has no slot.
    """

    __slots__ = ("_commute", "_fn", "_handle", "_name", "_slot")
    _handle: int
    _name: str
    _fn: UserFunction | None
    _commute: bool
    _slot: int

    def __new__(cls, op: Op | None = None) -> Self:
        self = object.__new__(cls)
        if op is None:
            self._handle, self._name, self._fn, self._commute, self._slot = 0, "OP_NULL", None, True, 0
        elif isinstance(op, Op):
            self._handle, self._name, self._fn, self._commute, self._slot = (
                op._handle, op._name, op._fn, op._commute, op._slot)
        else:
            raise TypeError(f"Argument 'op' has incorrect type (expected MPI.Op, got {type(op).__name__})")
        return self

    def __init__(self, op: Op | None = None) -> None:
        pass  # all done in __new__, so that unpickling (copyreg.__newobj__) builds a complete object

    @classmethod
    def _define(cls, name: str) -> Op:
        self = cls()
        self._handle, self._name = next(_handles), name
        _PREDEFINED[self._handle] = self
        return self

    @classmethod
    def Create(cls, function: UserFunction, commute: bool = False) -> Self:
        """A user op: ``function(invec, inoutvec, datatype)`` stores ``invec op inoutvec`` in inoutvec.

        ``invec``/``inoutvec`` are byte buffers like mpi4py's ``MPI.buffer`` (``len`` in bytes, buffer
        protocol, slice assignment from any buffer of that many bytes). Called with Python objects
        (``op(x, y)``, lowercase reductions) it gets ``(x, y, None)`` and must return the result.
        """
        if not callable(function):
            raise TypeError(f"MPI.Op.Create: expecting a callable, got {type(function).__name__}")
        try:
            slot = _user_fns.index(None, 1)
        except ValueError:
            raise RuntimeError("cannot create too many user-defined reduction operations") from None
        self = cls()
        self._handle, self._name, self._fn, self._commute, self._slot = (
            next(_handles), "USER", function, bool(commute), slot)
        _user_fns[slot], _user_owner[slot] = function, self._handle
        _live[self._handle] = self
        return self

    def Free(self) -> None:
        if self._fn is None:
            raise ValueError(f"MPI.Op.Free: cannot free the predefined operation {self!r}")
        slot = self._slot
        if slot and _user_owner[slot] == self._handle:
            _user_fns[slot], _user_owner[slot] = None, 0
        _live.pop(self._handle, None)
        self._handle, self._name, self._fn, self._commute, self._slot = 0, "OP_NULL", None, True, 0

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

    # integer handles (granny's are small integers, the same in every rank only for predefined ops)
    def toint(self) -> int:
        return self._handle

    py2f = toint

    @classmethod
    def fromint(cls, arg: int, /) -> Op:
        """A new Op object for an integer handle (a user op's comes without its slot, as in mpi4py)."""
        op = _PREDEFINED.get(arg) or _live.get(arg)
        if op is None:
            raise ValueError(f"MPI.Op.fromint: {arg} is not the handle of a live operation")
        new = cls(op)
        new._slot = 0
        return new

    f2py = fromhandle = fromint

    def __call__(self, x: Any, y: Any) -> Any:
        if self._fn is not None:
            slot = self._slot
            fn = _user_fns[slot] if slot else None
            if fn is None:
                raise ValueError("cannot call user-defined operation")
            return fn(x, y, None)
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
        """As mpi4py: a predefined op by name (a copy as a new object equal to it), a user op as
        ``Op.Create(function, commute)``; ValueError for an op without a registry slot."""
        if self._fn is None:
            named = _PREDEFINED.get(self._handle)
            if named is None:
                raise ValueError(f"cannot pickle {self!r}")
            if self is named:
                return self._name
            return (_newobj, (type(self), named))
        fn = _user_fns[self._slot] if self._slot else None
        if fn is None:
            raise ValueError("cannot pickle user-defined reduction operation")
        return (type(self).Create, (fn, self._commute))


MAX_USER_OPS = 32  # mpi4py's registry size
_user_fns: list[UserFunction | None] = [None] * (1 + MAX_USER_OPS)  # slot 0 is never used
_user_owner: list[int] = [0] * (1 + MAX_USER_OPS)  # handle of the op that holds each slot
_live: dict[int, Op] = {}  # handle -> user op, for fromint
_PREDEFINED: dict[int, Op] = {}

OP_NULL = Op()
_PREDEFINED[0] = OP_NULL
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
        # Byte buffers over the arrays' memory, like the mpi4py.MPI.buffer objects of mpi4py.
        op._fn(user_buffer(in_arr), user_buffer(inout_arr), datatype)
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


def _buf_setitem(self: Any, item: Any, value: Any) -> None:
    if isinstance(item, slice):
        start, stop, step = item.indices(len(self))
        if step != 1:
            raise IndexError("slice with step not supported")
        n = max(stop - start, 0)
        dst = memoryview(self).cast("B")[start:start + n]
        if isinstance(value, int):
            ctypes.memset(ctypes.addressof(self) + start, value, n)
            return
        src = memoryview(value)
        if src.nbytes != n:
            raise ValueError("slice length does not match buffer")
        dst[:] = src.cast("B") if src.format != "B" or src.ndim != 1 else src
        return
    ctypes.Array.__setitem__(self, item, value)


_BUFFER_TYPES: dict[int, type[ctypes.Array[ctypes.c_ubyte]]] = {}


def user_buffer(arr: np.ndarray) -> ctypes.Array[ctypes.c_ubyte]:
    """A writable byte buffer over a contiguous array's memory (a copy if the array is read-only).

    It behaves like mpi4py's ``MPI.buffer``: ``len`` is in bytes, items are ints, a slice takes any
    buffer of as many bytes (``b[:] = array.array("i", ...)``), and it has the buffer protocol.
    """
    n = arr.nbytes
    cls = _BUFFER_TYPES.get(n)
    if cls is None:
        if len(_BUFFER_TYPES) > 256:
            _BUFFER_TYPES.clear()
        cls = _BUFFER_TYPES[n] = type("buffer", (ctypes.c_ubyte * n,), {"__slots__": (), "__setitem__": _buf_setitem})
    if arr.flags.writeable and arr.flags.c_contiguous:
        return cls.from_buffer(arr.data)
    return cls.from_buffer_copy(np.ascontiguousarray(arr).data)


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
