"""The pure core of one-sided operations: target specs, and applying an operation to target memory.

Theory of operation
- ``target_spec`` reads mpi4py's target argument (None, a displacement, or ``(disp, count, datatype)``
  with the missing items taken from the origin) exactly as mpi4py's ``_p_msg_rma.for_rma`` does.
- ``apply`` performs one operation on the bytes of the target region it is given and returns what the
  origin gets back (the old contents, for the fetching operations). The origin runs it on memory it
  can reach (a shared mapping, or a copy it then writes back), the target runs it for origins on
  other hosts (rma_remote.py): one definition, so both paths agree. Callers make it atomic (a lock).
- ``buffer`` is mpi4py's ``MPI.buffer`` as far as window code needs it: a flat byte array over memory
  (``len``, ``format == "B"``, ``m[:] = 0``, ``address``), here a numpy ``uint8`` array subclass.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import MpiError
from .buffers import Buf
from .datatypes import Datatype, as_datatype
from .ops import Op, reduce_buffers
from .typemap import Segs, index

PUT, GET, ACC, GACC, CAS = 1, 2, 3, 4, 5
ERR_TYPE = 3


class buffer(np.ndarray):  # mpi4py's name
    """Window memory as mpi4py hands it out (``Win.tomemory``, ``Shared_query``, ``Alloc_mem``)."""

    @property
    def format(self) -> str:
        return "B"

    @property
    def address(self) -> int:
        return int(self.ctypes.data) if self.nbytes else 0

    def __bool__(self) -> bool:  # a buffer, not an array of truth values: true when it holds bytes
        return self.nbytes > 0

    def tomemory(self) -> memoryview:
        return memoryview(self.data)


def as_buffer(mem: memoryview | None) -> buffer:
    if mem is None or mem.nbytes == 0:
        return np.zeros(0, dtype=np.uint8).view(buffer)
    return np.frombuffer(mem, dtype=np.uint8).view(buffer)


def _index(x: Any, what: str) -> int:
    try:
        return int(x.__index__())
    except AttributeError:
        raise TypeError(f"target: {what} must be an integer, got {type(x).__name__}") from None


def target_spec(target: Any, origin: Buf) -> tuple[int, int, Datatype]:
    """(displacement, count, datatype) at the target, as mpi4py reads them."""
    disp, count, dtype = 0, origin.count, origin.datatype
    if target is None:
        pass
    elif hasattr(target, "__index__") and not hasattr(target, "__len__"):
        disp = _index(target, "displacement")
    elif isinstance(target, list | tuple):
        if len(target) >= 4:
            raise ValueError("target: expecting 3 items at most")
        if len(target) >= 1:
            disp = _index(target[0], "displacement")
        if len(target) >= 2:
            count = _index(target[1], "count")
        if len(target) >= 3:
            dtype = as_datatype(target[2])
    else:
        raise ValueError("target: expecting integral or list/tuple")
    if count * dtype.size != origin.nbytes:
        raise MpiError(f"origin ({origin.count} x {origin.datatype!r}) and target ({count} x {dtype!r}) "
                       "differ in size", ERR_TYPE)
    return disp, count, dtype


def single(buf: Buf, what: str) -> None:
    if buf.count != 1:
        raise ValueError(f"{what}: expecting a single element, got {buf.count}")


def apply(kind: int, region: memoryview, op: Op | None, dtype: Datatype | None, origin: Any,
          compare: Any = None, segs: Segs | None = None) -> bytes | None:
    """Apply one operation to ``region`` (the target bytes, writable); returns the old bytes when fetching.
    ``segs``: a derived target datatype's (offset, length) pieces of ``region``, which then holds the
    elements packed in that order (origin data and returned bytes are packed), ``dtype`` their base type."""
    if segs is not None:
        return _apply_segs(kind, region, op, dtype, origin, segs)
    if kind == PUT:
        region[:] = origin
        return None
    if kind == GET:
        return bytes(region)
    old = bytes(region) if kind != ACC else None
    if kind == CAS:
        if old == bytes(compare):
            region[:] = origin
        return old
    assert op is not None and dtype is not None
    if op._name == "REPLACE":
        region[:] = origin
    elif op._name != "NO_OP":
        npdt = dtype.dtype
        if npdt is None:
            raise MpiError(f"accumulate with datatype {dtype!r} is not supported", ERR_TYPE)
        n = region.nbytes // npdt.itemsize
        reduce_buffers(op, np.frombuffer(origin, dtype=npdt, count=n), np.frombuffer(region, dtype=npdt, count=n),
                       dtype)
    return old


def _apply_segs(kind: int, region: memoryview, op: Op | None, dtype: Datatype | None, origin: Any,
                segs: Segs) -> bytes | None:
    r = np.frombuffer(region, dtype=np.uint8)
    idx = index(segs)
    if kind == PUT:
        r[idx] = np.frombuffer(origin, dtype=np.uint8, count=idx.shape[0])
        return None
    cur = r[idx]  # a copy, in type-map order
    if kind == GET:
        return bytes(cur.tobytes())
    old = apply(kind, memoryview(cur), op, dtype, origin)
    r[idx] = cur
    return old
