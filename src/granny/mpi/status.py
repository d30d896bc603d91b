"""mpi4py's Status.

Theory of operation
- ``Status`` keeps its fields in slots (fast to fill on every receive). ``tomemory()`` needs memory that
  the fields live in, so the first call moves them into a C ``MPI_Status`` laid out as Open MPI's
  (source, tag, error, cancelled, size_t count) and switches the object to ``_MemStatus``, whose
  properties read and write that memory. ``count`` is in bytes.
- ``fill_status`` sets the fields of a receive (or probe); ``_empty`` resets them to the empty status
  (ANY_SOURCE, ANY_TAG, SUCCESS, 0 bytes).
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from typing import Any

from .argcheck import as_int
from .p2p import ANY_SOURCE, ANY_TAG

UNDEFINED = -32766


class _CStatus(ctypes.Structure):
    _fields_ = [("source", ctypes.c_int), ("tag", ctypes.c_int), ("error", ctypes.c_int),
                ("cancelled", ctypes.c_int), ("count", ctypes.c_size_t)]


class Status:
    """Source, tag, error and size of a received (or probed) message. ``count`` is in bytes."""

    __slots__ = ("_cancelled", "_count", "_mem", "error", "source", "tag")
    source: int
    tag: int
    error: int
    _count: int
    _cancelled: bool

    def __init__(self, status: Status | None = None) -> None:
        self._mem: _CStatus | None = None
        if status is None:
            self.source, self.tag, self.error, self._count, self._cancelled = ANY_SOURCE, ANY_TAG, 0, 0, False
        elif isinstance(status, Status):
            self.source, self.tag, self.error, self._count, self._cancelled = (
                status.source, status.tag, status.error, status._count, status._cancelled)
        else:
            raise TypeError(f"Argument 'status' has incorrect type (expected MPI.Status, got {type(status).__name__})")

    def Get_source(self) -> int:
        return self.source

    def Set_source(self, source: int) -> None:
        self.source = as_int(source)

    def Get_tag(self) -> int:
        return self.tag

    def Set_tag(self, tag: int) -> None:
        self.tag = as_int(tag)

    def Get_error(self) -> int:
        return self.error

    def Set_error(self, error: int) -> None:
        self.error = as_int(error)

    def Get_count(self, datatype: Any = None) -> int:
        size = 1 if datatype is None else datatype.Get_size()
        if size == 0:
            return 0
        n = self._count
        return n // size if n % size == 0 else UNDEFINED

    def Get_elements(self, datatype: Any = None) -> int:
        size = 1 if datatype is None else datatype.Get_size()
        n = self._count
        if size == 0:
            return 0
        return n // size if n % size == 0 else UNDEFINED

    def Set_elements(self, datatype: Any, count: int) -> None:
        self._count = int(count) * (1 if datatype is None else datatype.Get_size())

    def Is_cancelled(self) -> bool:
        return bool(self._cancelled)

    def Set_cancelled(self, flag: bool) -> None:
        self._cancelled = bool(flag)

    @property
    def count(self) -> int:
        """Size of the message in bytes (mpi4py: ``Get_elements(BYTE)``)."""
        return int(self._count)

    @count.setter
    def count(self, value: int) -> None:
        self._count = int(value)

    @property
    def cancelled(self) -> bool:
        return bool(self._cancelled)

    @cancelled.setter
    def cancelled(self, value: bool) -> None:
        self._cancelled = bool(value)

    def tomemory(self) -> memoryview:
        """The status's memory as C ints (Open MPI's MPI_Status); writes to it change the status."""
        mem = self._mem
        if mem is None:
            mem = _CStatus(self.source, self.tag, self.error, int(self._cancelled), self._count)
            self._mem = mem
            self.__class__ = _MemStatus
        return memoryview(mem).cast("B").cast("i")

    def py2f(self) -> list[int]:
        """Open MPI's Fortran status: source, tag, error, cancelled, count (low, high 32 bits)."""
        n = self._count
        return [self.source, self.tag, self.error, int(self._cancelled), n & 0xFFFFFFFF, n >> 32]

    @classmethod
    def f2py(cls, arg: Sequence[int]) -> Status:
        st = cls()
        st.source, st.tag, st.error, st._cancelled = int(arg[0]), int(arg[1]), int(arg[2]), bool(arg[3])
        st._count = (int(arg[4]) & 0xFFFFFFFF) | (int(arg[5]) << 32)
        return st

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Status):
            return NotImplemented
        return self.py2f() == other.py2f()

    def __hash__(self) -> int:
        return hash(tuple(self.py2f()))

    def __repr__(self) -> str:
        return f"<Status source={self.source} tag={self.tag} error={self.error} count={self._count}>"

    def __reduce__(self) -> tuple[Any, ...]:
        return (Status, (), self.__getstate__())

    def __getstate__(self) -> dict[str, Any]:
        return {"source": self.source, "tag": self.tag, "error": self.error, "count": int(self._count),
                "cancelled": bool(self._cancelled)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.Set_source(state["source"])
        self.Set_tag(state["tag"])
        self.Set_error(state["error"])
        if "count" in state:
            self._count = int(state["count"])
        if "cancelled" in state:
            self._cancelled = bool(state["cancelled"])


def _mem_field(name: str) -> property:
    def get(self: Status) -> Any:
        return getattr(self._mem, name)

    def put(self: Status, value: Any) -> None:
        setattr(self._mem, name, int(value))

    return property(get, put)


class _MemStatus(Status):
    """A Status whose fields live in the C memory handed out by ``tomemory`` (same slots, no new ones)."""

    __slots__ = ()
    source = _mem_field("source")
    tag = _mem_field("tag")
    error = _mem_field("error")
    _count = _mem_field("count")
    _cancelled = _mem_field("cancelled")


def fill_status(status: Status | None, source: int, tag: int, nbytes: int, cancelled: bool = False) -> None:
    if status is not None:
        status.source, status.tag, status._count, status.error, status._cancelled = source, tag, nbytes, 0, cancelled


def _empty(status: Status | None) -> None:
    if status is not None:
        status.source, status.tag, status._count, status.error, status._cancelled = ANY_SOURCE, ANY_TAG, 0, 0, False
