"""MPI datatypes and mpi4py-style buffer specifications, as pure Python over numpy.

Theory of operation
- A ``Datatype`` is a named numpy dtype. Predefined datatypes carry mpi4py's names, type characters and
  type codes (``MPI._typecode``) for an LP64 Linux host (the only platform granny runs on). Aliases are
  the *same object* (``BOOL is C_BOOL``), as in mpi4py. Pair types (``DOUBLE_INT`` ...) are aligned
  structured dtypes with fields ``value`` and ``index``, the C struct layout MPI uses for MAXLOC/MINLOC;
  their ``size`` is the sum of the members (MPI_Type_size) and their ``extent`` includes the padding.
- ``TYPECODES`` maps typecodes to datatypes by replaying mpi4py's ``AddTypeMap`` list in order, so a code
  that several datatypes claim ends on the same one mpi4py picks.
"""

from __future__ import annotations

import itertools
import sys
from typing import Any, ClassVar

import numpy as np

from ..errors import MpiError, NotImplementedMpi
from . import typemap
from .constants import (
    COMBINER_NAMED,
    ERR_ARG,
    ERR_TYPE,
    ORDER_C,
    ORDER_FORTRAN,
    TYPECLASS_COMPLEX,
    TYPECLASS_INTEGER,
    TYPECLASS_LOGICAL,
    TYPECLASS_REAL,
)

_handles = itertools.count(1)


# mpi4py Datatype calls granny does not implement (derived datatypes, packing): on the class or an
# instance they are callables that raise NotImplementedMpi (a NotImplementedError that is also an
# AttributeError) naming the call, so code written for mpi4py (``factory = MPI.Datatype.Create_vector``
# then a guarded call) sees NotImplementedError where it expects it. Properties raise on access.
_MISSING_PROPERTIES = frozenset({"contents"})
_MISSING = frozenset({
    "Create_struct", "Create_darray", "Create_f90_integer", "Create_f90_real", "Create_f90_complex", "Get_contents", "contents",
    "Pack", "Unpack", "Pack_size", "Pack_external", "Unpack_external", "Pack_external_size",
    "Get_attr", "Set_attr", "Delete_attr", "Create_keyval", "Free_keyval", "toint", "fromint", "py2f", "f2py",
    "fromhandle",
})


def _not_implemented(name: str) -> AttributeError:
    return NotImplementedMpi(f"MPI.Datatype.{name} is not implemented by granny")


def _missing_call(name: str) -> Any:
    if name in _MISSING_PROPERTIES:
        raise _not_implemented(name)

    def call(*args: Any, **kwargs: Any) -> Any:
        raise _not_implemented(name)

    call.__name__ = call.__qualname__ = name
    return call


class _DatatypeMeta(type):
    def __getattr__(cls, name: str) -> Any:
        if name in _MISSING:
            return _missing_call(name)
        raise AttributeError(f"type object 'Datatype' has no attribute {name!r}")


class Datatype(metaclass=_DatatypeMeta):
    """An MPI datatype: mpi4py's API over a numpy dtype (``dtype`` is None for DATATYPE_NULL)."""

    __slots__ = ("_char", "_code", "_dtype", "_handle", "_label", "_map", "_name", "_predefined", "_size")
    _by_name: ClassVar[dict[str, Datatype]] = {}
    _handle: int
    _name: str
    _char: str
    _size: int
    _predefined: bool

    def __init__(self, datatype: Datatype | None = None) -> None:
        if datatype is not None and not isinstance(datatype, Datatype):
            raise TypeError(f"Argument 'datatype' has incorrect type (expected MPI.Datatype, "
                            f"got {type(datatype).__name__})")
        src = datatype
        self._label: str | None = src._label if src is not None else None
        self._handle = src._handle if src is not None else 0
        self._name = src._name if src is not None else "DATATYPE_NULL"
        self._dtype: np.dtype[Any] | None = src._dtype if src is not None else None
        self._char = src._char if src is not None else ""
        self._code: str | None = src._code if src is not None else None
        self._size = src._size if src is not None else 0
        self._predefined = src._predefined if src is not None else True
        self._map: typemap.TypeMap | None = src._map if src is not None else None  # derived: its type map

    @classmethod
    def _define(cls, name: str, dtype: Any, char: str, code: str | None = None) -> Datatype:
        self = cls.__new__(cls)
        self._handle, self._name, self._predefined, self._label = next(_handles), name, True, None
        self._map = None
        self._dtype = np.dtype(dtype)
        self._char = char
        self._code = code if code is not None else (char or None)
        fields = self._dtype.fields
        # MPI_Type_size counts data bytes only; a C struct's padding is part of the extent, not the size.
        self._size = sum(f[0].itemsize for f in fields.values()) if fields else self._dtype.itemsize
        cls._by_name[name] = self
        return self

    # -- identity ---------------------------------------------------------------------------
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Datatype):
            return NotImplemented
        return self._handle == other._handle

    def __hash__(self) -> int:
        return hash(("Datatype", self._handle))

    def __bool__(self) -> bool:
        return self._dtype is not None

    def __repr__(self) -> str:
        if self._map is not None:
            return f"<MPI.Datatype derived from {self._name}>"
        return f"MPI.{self._name}" if self._predefined else f"<MPI.Datatype dup of {self._name}>"

    def __getattr__(self, name: str) -> Any:
        if name in _MISSING:
            return _missing_call(name)
        raise AttributeError(f"'Datatype' object has no attribute {name!r}")

    def __reduce__(self) -> str | tuple[Any, ...]:
        """As mpi4py: a named datatype unpickles as itself, a copy as a new equal object, a Dup as a Dup."""
        named = Datatype._by_name.get(self._name)
        if named is None or self._map is not None:
            raise ValueError(f"cannot serialize {self!r}")
        if self is named:
            return (_predefined, (self._name,))
        if self._predefined or self._dtype is None:
            return (Datatype, (named,))
        return (Datatype.Dup, (named,))

    @property
    def handle(self) -> int:
        return self._handle

    # -- sizes ------------------------------------------------------------------------------
    @property
    def dtype(self) -> np.dtype[Any] | None:
        return self._dtype

    def Get_size(self) -> int:
        return self._size

    @property
    def size(self) -> int:
        return self._size

    def Get_extent(self) -> tuple[int, int]:
        if self._map is not None:
            return self._map.lb, self._map.extent
        return 0, (self._dtype.itemsize if self._dtype is not None else 0)

    def Get_true_extent(self) -> tuple[int, int]:
        if self._map is not None:
            return self._map.true_lb, self._map.true_extent
        return self.Get_extent()

    @property
    def extent(self) -> int:
        return self.Get_extent()[1]

    @property
    def true_lb(self) -> int:
        return self.Get_true_extent()[0]

    @property
    def true_extent(self) -> int:
        return self.Get_true_extent()[1]

    @property
    def true_ub(self) -> int:
        lb, extent = self.Get_true_extent()
        return lb + extent

    @property
    def lb(self) -> int:
        return self._map.lb if self._map is not None else 0

    @property
    def ub(self) -> int:
        return self.lb + self.extent

    # -- derived datatypes (type maps as byte segments, typemap.py) --------------------------
    def _typemap(self) -> typemap.TypeMap:
        if self._dtype is None:
            raise ValueError("cannot derive a datatype from DATATYPE_NULL")
        if self._map is not None:
            return self._map
        fields = self._dtype.fields
        segs = [(int(f[1]), f[0].itemsize) for f in fields.values()] if fields else None
        return typemap.named(self, self._size, self._dtype.itemsize, segs)

    def _derive(self, tm: typemap.TypeMap) -> Datatype:
        """A new (uncommitted, as in MPI: Commit is a no-op here) derived datatype over ``tm``."""
        new = Datatype(self)
        new._handle, new._predefined, new._label, new._map = next(_handles), False, None, tm
        new._size = tm.size
        base = tm.base
        new._dtype, new._char, new._code = base._dtype, "", None
        return new

    def Create_contiguous(self, count: int) -> Datatype:
        return self._derive(typemap.contiguous(self._typemap(), count))

    def Create_vector(self, count: int, blocklength: int, stride: int) -> Datatype:
        return self._derive(typemap.vector(self._typemap(), count, blocklength, stride))

    def Create_hvector(self, count: int, blocklength: int, stride: int) -> Datatype:
        return self._derive(typemap.hvector(self._typemap(), count, blocklength, stride))

    def Create_indexed(self, blocklengths: Any, displacements: Any) -> Datatype:
        return self._derive(typemap.indexed(self._typemap(), list(blocklengths), list(displacements)))

    def Create_hindexed(self, blocklengths: Any, displacements: Any) -> Datatype:
        return self._derive(typemap.hindexed(self._typemap(), list(blocklengths), list(displacements)))

    def Create_indexed_block(self, blocklength: int, displacements: Any) -> Datatype:
        d = list(displacements)
        return self._derive(typemap.indexed(self._typemap(), [blocklength] * len(d), d))

    def Create_hindexed_block(self, blocklength: int, displacements: Any) -> Datatype:
        d = list(displacements)
        return self._derive(typemap.hindexed(self._typemap(), [blocklength] * len(d), d))

    def Create_subarray(self, sizes: Any, subsizes: Any, starts: Any, order: int = ORDER_C) -> Datatype:
        if order not in (ORDER_C, ORDER_FORTRAN):
            raise ValueError(f"Create_subarray: invalid order {order}")
        return self._derive(typemap.subarray(self._typemap(), [int(x) for x in sizes], [int(x) for x in subsizes],
                                             [int(x) for x in starts], order == ORDER_FORTRAN))

    def Create_resized(self, lb: int, extent: int) -> Datatype:
        return self._derive(typemap.resized(self._typemap(), int(lb), int(extent)))

    # -- names and codes --------------------------------------------------------------------
    def Get_name(self) -> str:
        if self._label is not None:
            return self._label
        return f"MPI_{self._name}" if self._predefined else ""

    def Set_name(self, name: str) -> None:
        self._label = str(name)

    @property
    def name(self) -> str:
        return self.Get_name()

    @name.setter
    def name(self, value: str) -> None:
        self.Set_name(value)

    # -- envelope (named datatypes only: granny has no derived datatypes) ---------------------
    def Get_envelope(self) -> tuple[int, int, int, int, int]:
        if not self._predefined:
            raise _not_implemented("Get_envelope (of a derived datatype)")
        return (0, 0, 0, 0, COMBINER_NAMED)

    @property
    def envelope(self) -> tuple[int, int, int, int, int]:
        return self.Get_envelope()

    @property
    def combiner(self) -> int:
        return self.Get_envelope()[-1]

    def decode(self) -> tuple[Datatype, str, dict[str, Any]]:
        self.Get_envelope()
        return (self, "NAMED", {})

    @classmethod
    def Get_value_index(cls, value: Datatype, index: Datatype) -> Datatype:
        """The predefined pair type (``DOUBLE_INT`` ...) for MAXLOC/MINLOC, DATATYPE_NULL if none."""
        if not isinstance(value, Datatype) or not isinstance(index, Datatype) or not value or not index:
            raise MpiError("MPI.Datatype.Get_value_index: invalid datatype", ERR_TYPE)
        if index == INT:
            for pair in _PAIRS.values():
                if pair._name == f"{value._name}_INT" or (value == INT and pair is INT_INT):
                    return pair
        return DATATYPE_NULL

    @classmethod
    def Match_size(cls, typeclass: int, size: int) -> Datatype:
        """The Fortran datatype of a type class (MPI.TYPECLASS_INTEGER ...) with ``size`` bytes."""
        key = {TYPECLASS_INTEGER: "INTEGER", TYPECLASS_REAL: "REAL", TYPECLASS_COMPLEX: "COMPLEX",
               TYPECLASS_LOGICAL: "LOGICAL"}.get(typeclass)
        found = Datatype._by_name.get(f"{key}{size}") if key else None
        if found is None or found.Get_size() != size:
            raise MpiError(f"MPI.Datatype.Match_size: no datatype of class {typeclass} and size {size}", ERR_ARG)
        return found

    @property
    def is_named(self) -> bool:
        return self._predefined

    @property
    def is_predefined(self) -> bool:
        return self._predefined

    @property
    def typechar(self) -> str:
        return "" if self._dtype is None else (self._char or "V")

    @property
    def typestr(self) -> str:
        dt = self._dtype
        if dt is None:
            return ""
        return f"V{dt.itemsize}" if dt.fields else dt.str.lstrip("<>|=")

    def tocode(self) -> str:
        if self._code is None:
            raise ValueError("cannot map to character code or type string")
        return self._code

    @classmethod
    def fromcode(cls, code: str) -> Datatype:
        try:
            return TYPECODES[code]
        except KeyError:
            raise ValueError(f"cannot map code {code!r} to MPI datatype") from None

    # -- life cycle -------------------------------------------------------------------------
    def Dup(self) -> Datatype:
        if self._dtype is None:
            raise ValueError("MPI.Datatype.Dup: the datatype is DATATYPE_NULL")
        dup = Datatype(self)
        dup._handle, dup._predefined = next(_handles), False
        return dup

    Create_dup = Dup

    def Commit(self) -> Datatype:
        return self

    def Free(self) -> None:
        if self._predefined:
            raise ValueError(f"MPI.Datatype.Free: cannot free the predefined datatype {self!r}")
        # MPI_Type_free sets the handle to MPI_DATATYPE_NULL.
        self._handle, self._name, self._dtype, self._char, self._code, self._size = 0, "DATATYPE_NULL", None, "", None, 0
        self._map = None

    def free(self) -> None:
        if not self._predefined:
            self.Free()



def _predefined(name: str) -> Datatype:
    return Datatype._by_name[name]


_D = Datatype._define


def _pair(value: Any) -> np.dtype[Any]:
    return np.dtype([("value", value), ("index", np.intc)], align=True)


DATATYPE_NULL = Datatype()
Datatype._by_name["DATATYPE_NULL"] = DATATYPE_NULL
PACKED, BYTE = _D("PACKED", np.uint8, "B"), _D("BYTE", np.uint8, "B")
AINT, OFFSET, COUNT = _D("AINT", np.intp, "p"), _D("OFFSET", np.int64, "p"), _D("COUNT", np.int64, "p")
CHAR, WCHAR = _D("CHAR", "S1", "c"), _D("WCHAR", "U1", "U")
SIGNED_CHAR, SHORT, INT = _D("SIGNED_CHAR", np.byte, "b"), _D("SHORT", np.short, "h"), _D("INT", np.intc, "i")
LONG, LONG_LONG = _D("LONG", np.long, "l"), _D("LONG_LONG", np.longlong, "q")
UNSIGNED_CHAR, UNSIGNED_SHORT = _D("UNSIGNED_CHAR", np.ubyte, "B"), _D("UNSIGNED_SHORT", np.ushort, "H")
UNSIGNED, UNSIGNED_LONG = _D("UNSIGNED", np.uintc, "I"), _D("UNSIGNED_LONG", np.ulong, "L")
UNSIGNED_LONG_LONG = _D("UNSIGNED_LONG_LONG", np.ulonglong, "Q")
FLOAT, DOUBLE, LONG_DOUBLE = _D("FLOAT", np.float32, "f"), _D("DOUBLE", np.float64, "d"), _D("LONG_DOUBLE", np.longdouble, "g")
# C99: mpi4py reports the sized ones by type string ("i4"), the rest by character.
C_BOOL = _D("C_BOOL", np.bool_, "?", "b1")
INT8_T, INT16_T = _D("INT8_T", np.int8, "b", "i1"), _D("INT16_T", np.int16, "h", "i2")
INT32_T, INT64_T = _D("INT32_T", np.int32, "i", "i4"), _D("INT64_T", np.int64, "l", "i8")
UINT8_T, UINT16_T = _D("UINT8_T", np.uint8, "B", "u1"), _D("UINT16_T", np.uint16, "H", "u2")
UINT32_T, UINT64_T = _D("UINT32_T", np.uint32, "I", "u4"), _D("UINT64_T", np.uint64, "L", "u8")
FLOAT16_T, BFLOAT16_T = _D("FLOAT16_T", np.float16, "e"), _D("BFLOAT16_T", "V2", "", None)
FLOAT32_T, FLOAT64_T = FLOAT, DOUBLE
C_COMPLEX, C_DOUBLE_COMPLEX = _D("C_COMPLEX", np.complex64, "F"), _D("C_DOUBLE_COMPLEX", np.complex128, "D")
C_LONG_DOUBLE_COMPLEX = _D("C_LONG_DOUBLE_COMPLEX", np.clongdouble, "G")
C_FLOAT_COMPLEX = C_COMPLEX
CXX_BOOL = _D("CXX_BOOL", np.bool_, "?")
CXX_FLOAT_COMPLEX = _D("CXX_FLOAT_COMPLEX", np.complex64, "F")
CXX_DOUBLE_COMPLEX = _D("CXX_DOUBLE_COMPLEX", np.complex128, "D")
CXX_LONG_DOUBLE_COMPLEX = _D("CXX_LONG_DOUBLE_COMPLEX", np.clongdouble, "G")
# Pair types for MAXLOC/MINLOC.
SHORT_INT, INT_INT = _D("SHORT_INT", _pair(np.short), ""), _D("INT_INT", _pair(np.intc), "")
LONG_INT, FLOAT_INT = _D("LONG_INT", _pair(np.long), ""), _D("FLOAT_INT", _pair(np.float32), "")
DOUBLE_INT, LONG_DOUBLE_INT = _D("DOUBLE_INT", _pair(np.float64), ""), _D("LONG_DOUBLE_INT", _pair(np.longdouble), "")
TWOINT = INT_INT
# Fortran (gfortran defaults: INTEGER and LOGICAL are 4 bytes). Types numpy cannot do arithmetic on
# (16-byte integers, half-precision complex) are opaque bytes: they move but do not reduce.
CHARACTER, LOGICAL = _D("CHARACTER", "S1", "c"), _D("LOGICAL", np.int32, "i")
INTEGER, REAL = _D("INTEGER", np.int32, "i"), _D("REAL", np.float32, "f")
DOUBLE_PRECISION = _D("DOUBLE_PRECISION", np.float64, "d")
COMPLEX, DOUBLE_COMPLEX = _D("COMPLEX", np.complex64, "F"), _D("DOUBLE_COMPLEX", np.complex128, "D")
LOGICAL1, LOGICAL2 = _D("LOGICAL1", np.bool_, "?", "b1"), _D("LOGICAL2", np.int16, "h", "i2")
LOGICAL4, LOGICAL8 = _D("LOGICAL4", np.int32, "i", "i4"), _D("LOGICAL8", np.int64, "l", "i8")
LOGICAL16 = _D("LOGICAL16", "V16", "", "i16")
INTEGER1, INTEGER2 = _D("INTEGER1", np.int8, "b", "i1"), _D("INTEGER2", np.int16, "h", "i2")
INTEGER4, INTEGER8 = _D("INTEGER4", np.int32, "i", "i4"), _D("INTEGER8", np.int64, "l", "i8")
INTEGER16 = _D("INTEGER16", "V16", "", "i16")
REAL2, REAL4 = _D("REAL2", np.float16, "e", "f2"), _D("REAL4", np.float32, "f", "f4")
REAL8, REAL16 = _D("REAL8", np.float64, "d", "f8"), _D("REAL16", np.longdouble, "g", "f16")
COMPLEX4, COMPLEX8 = _D("COMPLEX4", "V4", "E", "c4"), _D("COMPLEX8", np.complex64, "F", "c8")
COMPLEX16, COMPLEX32 = _D("COMPLEX16", np.complex128, "D", "c16"), _D("COMPLEX32", np.clongdouble, "G", "c32")
# Convenience aliases (same objects, as in mpi4py).
UNSIGNED_INT, SIGNED_SHORT, SIGNED_INT, SIGNED_LONG, SIGNED_LONG_LONG = UNSIGNED, SHORT, INT, LONG, LONG_LONG
BOOL, SINT8_T, SINT16_T, SINT32_T, SINT64_T = C_BOOL, INT8_T, INT16_T, INT32_T, INT64_T
F_BOOL, F_INT, F_FLOAT, F_DOUBLE = LOGICAL, INTEGER, REAL, DOUBLE_PRECISION
F_COMPLEX, F_FLOAT_COMPLEX, F_DOUBLE_COMPLEX = COMPLEX, COMPLEX, DOUBLE_COMPLEX

# mpi4py's AddTypeMap calls for LP64, in order: a later entry for the same code wins.
_TYPEMAP: tuple[tuple[str, Datatype], ...] = (
    ("?", CXX_BOOL), ("?", C_BOOL), ("b", SIGNED_CHAR), ("h", SHORT), ("i", INT), ("l", LONG),
    ("q", LONG_LONG), ("B", UNSIGNED_CHAR), ("H", UNSIGNED_SHORT), ("I", UNSIGNED), ("L", UNSIGNED_LONG),
    ("Q", UNSIGNED_LONG_LONG), ("e", REAL2), ("e", FLOAT16_T), ("f", FLOAT), ("d", DOUBLE), ("g", LONG_DOUBLE),
    ("Zf", COMPLEX8), ("Zd", COMPLEX16), ("F", COMPLEX8), ("D", COMPLEX16),
    ("Zf", CXX_FLOAT_COMPLEX), ("Zd", CXX_DOUBLE_COMPLEX), ("Zg", CXX_LONG_DOUBLE_COMPLEX),
    ("F", CXX_FLOAT_COMPLEX), ("D", CXX_DOUBLE_COMPLEX), ("G", CXX_LONG_DOUBLE_COMPLEX),
    ("Zf", C_FLOAT_COMPLEX), ("Zd", C_DOUBLE_COMPLEX), ("Zg", C_LONG_DOUBLE_COMPLEX),
    ("F", C_FLOAT_COMPLEX), ("D", C_DOUBLE_COMPLEX), ("G", C_LONG_DOUBLE_COMPLEX),
    ("i1", INTEGER1), ("i2", INTEGER2), ("i4", INTEGER4), ("i8", INTEGER8), ("i16", INTEGER16),
    ("f2", REAL2), ("f4", REAL4), ("f8", REAL8), ("f16", REAL16), ("c4", COMPLEX4), ("c8", COMPLEX8),
    ("c16", COMPLEX16),
    ("c32", COMPLEX32), ("b1", CXX_BOOL), ("b1", C_BOOL),
    ("i1", SIGNED_CHAR), ("u1", UNSIGNED_CHAR), ("i2", SHORT), ("u2", UNSIGNED_SHORT), ("i4", INT),
    ("u4", UNSIGNED), ("i8", LONG_LONG), ("u8", UNSIGNED_LONG_LONG), ("i8", LONG), ("u8", UNSIGNED_LONG),
    ("i1", INT8_T), ("i2", INT16_T), ("i4", INT32_T), ("i8", INT64_T),
    ("u1", UINT8_T), ("u2", UINT16_T), ("u4", UINT32_T), ("u8", UINT64_T), ("f2", FLOAT16_T),
    ("f4", FLOAT), ("c8", CXX_FLOAT_COMPLEX), ("c8", C_FLOAT_COMPLEX), ("f8", DOUBLE),
    ("c16", CXX_DOUBLE_COMPLEX), ("c16", C_DOUBLE_COMPLEX),
    ("f16", LONG_DOUBLE), ("c32", CXX_LONG_DOUBLE_COMPLEX), ("c32", C_LONG_DOUBLE_COMPLEX),
    ("n", LONG_LONG), ("N", UNSIGNED_LONG_LONG), ("n", LONG), ("N", UNSIGNED_LONG), ("n", COUNT),
    ("p", LONG_LONG), ("P", UNSIGNED_LONG_LONG), ("p", LONG), ("P", UNSIGNED_LONG), ("p", AINT),
    ("c", CHAR), ("a", CHAR), ("S", CHAR), ("S1", CHAR), ("s", CHAR), ("1s", CHAR),
    ("U", WCHAR), ("U1", WCHAR), ("u", UNSIGNED_SHORT), ("1u", UNSIGNED_SHORT), ("u", UINT16_T),
    ("1u", UINT16_T), ("w", UNSIGNED), ("1w", UNSIGNED), ("w", UINT32_T), ("1w", UINT32_T),
    ("w", WCHAR), ("1w", WCHAR), ("M", INT64_T), ("M8", INT64_T), ("m", INT64_T), ("m8", INT64_T),
)
TYPECODES: dict[str, Datatype] = dict(_TYPEMAP)
typedict = TYPECODES  # mpi4py's MPI._typedict
_PAIRS = {dt.dtype: dt for dt in (SHORT_INT, INT_INT, LONG_INT, FLOAT_INT, DOUBLE_INT, LONG_DOUBLE_INT)}


def typecode(datatype: Datatype) -> str | None:
    """mpi4py's ``MPI._typecode``: the character code or type string of a datatype, or None."""
    return datatype._code if datatype else None


def from_numpy(dtype: Any) -> Datatype:
    """The predefined datatype for a numpy dtype (pair types included); ValueError if none."""
    dt = np.dtype(dtype)
    if dt.fields is not None:
        if dt in _PAIRS:
            return _PAIRS[dt]
        raise ValueError(f"cannot map numpy dtype {dt} to an MPI datatype")
    if dt.byteorder == (">" if sys.byteorder == "little" else "<"):
        raise ValueError(f"numpy dtype {dt} has non-native byte order")
    key = "B" if dt == np.uint8 else dt.char
    if dt.kind in "SU":  # "S1"/"U1" elements; longer strings are not an MPI type
        key = dt.kind + ("1" if dt.itemsize // (4 if dt.kind == "U" else 1) == 1 else "?")
    try:
        return TYPECODES[key]
    except KeyError:
        raise ValueError(f"cannot map numpy dtype {dt} to an MPI datatype") from None


def as_datatype(spec: Any) -> Datatype:
    """A Datatype, or a typecode string mapped through ``TYPECODES``."""
    if isinstance(spec, Datatype):
        return spec
    if isinstance(spec, str):
        try:
            return TYPECODES[spec]
        except KeyError:
            raise ValueError(f"cannot map typecode {spec!r} to an MPI datatype") from None
    raise TypeError(f"expecting an MPI.Datatype or a typecode string, got {type(spec).__name__}")

