"""mpi4py-style buffer specifications, as pure Python over numpy (the datatypes are in datatypes.py).

Theory of operation
- ``parse_buffer``/``parse_vbuffer`` turn the message specs mpi4py accepts (``buf``, ``[buf, type]``,
  ``[buf, count, type]``, ``[buf, (count, displ), type]`` ...) into a flat byte ``memoryview`` over the
  user's memory, never a copy, so a receive writes straight into the caller's array. An object without
  the buffer protocol may still be a DLPack or CUDA-array-interface buffer in host memory (foreign.py).
- Errors are plain ``TypeError``/``ValueError`` (and ``BufferError`` for a read-only receive buffer);
  the communicator layer maps them to MPI error classes.
- ``IN_PLACE``, ``BOTTOM`` and ``BUFFER_AUTOMATIC`` are singletons that pickle by name.
"""

from __future__ import annotations

import sys
import weakref
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..tunables import VIEW_MAX_BYTES as _VIEW_MAX_BYTES
from ..tunables import VIEW_SLOTS as _VIEW_SLOTS
from . import foreign
from .datatypes import BYTE, TYPECODES, Datatype, _not_implemented, as_datatype, from_numpy


class _Constant:
    """mpi4py's IN_PLACE / BOTTOM / BUFFER_AUTOMATIC: singletons that pickle by name."""

    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return f"MPI.{self._name}"

    def __reduce__(self) -> str:
        return self._name


IN_PLACE, BOTTOM, BUFFER_AUTOMATIC = _Constant("IN_PLACE"), _Constant("BOTTOM"), _Constant("BUFFER_AUTOMATIC")


def is_in_place(obj: object) -> bool:
    """mpi4py treats a ``None`` send buffer of a collective as IN_PLACE too."""
    return obj is None or obj is IN_PLACE


class Buf:
    """A parsed message: ``count`` elements of ``datatype`` per block, over ``mem`` (bytes, zero-copy).

    ``blocks`` is 1 except for the send side of Scatter and the receive side of Gather/Allgather/
    Alltoall, where ``mem`` holds ``blocks`` consecutive blocks of ``count`` elements each (mpi4py).
    """

    __slots__ = ("blocks", "count", "datatype", "mem", "obj")

    def __init__(self, mem: memoryview, count: int, datatype: Datatype, obj: object = None, blocks: int = 1) -> None:
        self.mem, self.count, self.datatype, self.obj, self.blocks = mem, count, datatype, obj, blocks

    @property
    def nbytes(self) -> int:
        return self.mem.nbytes

    def array(self) -> np.ndarray:
        """The elements as a numpy array sharing memory with the user's object."""
        return _as_array(self.mem, self.datatype, self.count * self.blocks)

    def __repr__(self) -> str:
        return f"Buf(count={self.count}, datatype={self.datatype!r}, nbytes={self.nbytes})"


class VBuf:
    """A parsed vector message: block ``i`` is ``counts[i]`` elements at element offset ``displs[i]``."""

    __slots__ = ("counts", "datatype", "displs", "mem", "obj")

    def __init__(self, mem: memoryview, counts: list[int], displs: list[int], datatype: Datatype,
                 obj: object = None) -> None:
        self.mem, self.counts, self.displs, self.datatype, self.obj = mem, counts, displs, datatype, obj

    @property
    def nbytes(self) -> int:
        return self.mem.nbytes

    def block(self, i: int) -> memoryview:
        ext = self.datatype.extent
        return self.mem[self.displs[i] * ext:(self.displs[i] + self.counts[i]) * ext]

    def block_array(self, i: int) -> np.ndarray:
        return _as_array(self.block(i), self.datatype, self.counts[i])

    def array(self) -> np.ndarray:
        """The whole underlying buffer as elements (a trailing partial element is cut off)."""
        return _as_array(self.mem, self.datatype, self.mem.nbytes // max(self.datatype.extent, 1))

    def __repr__(self) -> str:
        return f"VBuf(counts={self.counts}, displs={self.displs}, datatype={self.datatype!r})"


def _as_array(mem: memoryview, datatype: Datatype, count: int) -> np.ndarray:
    if datatype.dtype is None:
        raise ValueError("cannot view a buffer of DATATYPE_NULL as an array")
    if count == 0:
        return np.empty(0, dtype=datatype.dtype)
    return np.frombuffer(mem, dtype=datatype.dtype, count=count)


def _is_integral(x: object) -> bool:
    return hasattr(x, "__index__") and not hasattr(x, "__len__")


def _index(x: object, what: str, name: str) -> int:
    try:
        v = int(x.__index__())  # type: ignore[attr-defined]
    except AttributeError:
        raise TypeError(f"{name}: {what} must be an integer, got {type(x).__name__}") from None
    if v < 0:
        raise ValueError(f"{name}: negative {what} {v}")
    return v


def _split(spec: Any, name: str, vector: bool) -> tuple[Any, Any, Any, Any]:
    """(buf, count(s), displ(s), datatype) from a message spec, following mpi4py's message_simple/vector."""
    if not isinstance(spec, list | tuple):
        return spec, None, None, None
    # In a plain message a list or tuple second item is (count, displ); in a vector message only a tuple
    # is, since a list there is the counts.
    pair = tuple if vector else (list, tuple)
    if len(spec) == 2:
        buf, count = spec
        if isinstance(count, Datatype | str):
            return buf, None, None, count
        if isinstance(count, pair):
            return buf, *_two(count, name), None
        return buf, count, None, None
    if len(spec) == 3:
        buf, count, dtype = spec
        if isinstance(count, pair):
            return buf, *_two(count, name), dtype
        return buf, count, None, dtype
    if len(spec) == 4:
        return spec[0], spec[1], spec[2], spec[3]
    raise ValueError(f"{name}: a message list/tuple must have 2 to 4 items, got {len(spec)}")


def _two(x: Sequence[Any], name: str) -> tuple[Any, Any]:
    if len(x) != 2:
        raise ValueError(f"{name}: expecting (count, displacement), got {x!r}")
    return x[0], x[1]


def _flat(obj: Any, readonly: bool, name: str) -> tuple[memoryview, Any]:
    """A 1-D byte view of ``obj`` (zero-copy) and a thunk giving the datatype its format implies."""
    if isinstance(obj, np.ndarray):
        arr = obj
        if not (arr.flags.c_contiguous or arr.flags.f_contiguous):
            raise ValueError(f"{name}: the numpy array is not contiguous (pass np.ascontiguousarray(...))")
        if not readonly and not arr.flags.writeable:
            raise BufferError(f"{name}: the numpy array is read-only and cannot receive data")
        flat = arr.reshape(-1, order="A").view(np.uint8).data
        return flat, lambda: from_numpy(arr.dtype)
    try:
        m = memoryview(obj)
    except TypeError:
        # No buffer protocol: a DLPack / CUDA-array-interface object in host memory, as mpi4py accepts.
        host = foreign.host_array(obj)
        if host is None:
            raise TypeError(f"{name}: expecting a buffer-like object or a [buffer, ..., datatype] list, "
                            f"got {type(obj).__name__}") from None
        return _flat(host, readonly, name)
    if not readonly and m.readonly:
        raise BufferError(f"{name}: the {type(obj).__name__} object is read-only and cannot receive data")
    if not m.contiguous:
        raise ValueError(f"{name}: the buffer is not contiguous")
    try:
        flat = m.cast("B")
    except TypeError:  # Fortran order or an exotic format: let numpy find the bytes
        flat = np.asarray(m).reshape(-1, order="A").view(np.uint8).data
    return flat, lambda: _format_datatype(m.format, name)


def _format_datatype(fmt: str, name: str) -> Datatype:
    if fmt == "B":
        return BYTE
    if fmt[:1] in ("@", "="):
        fmt = fmt[1:]
    elif fmt[:1] in ("<", ">"):
        if (fmt[0] == "<") != (sys.byteorder == "little"):
            raise ValueError(f"{name}: buffer format {fmt!r} has non-native byte order")
        fmt = fmt[1:]
    try:
        return TYPECODES[fmt]
    except KeyError:
        raise ValueError(f"{name}: cannot map buffer format {fmt!r} to an MPI datatype; "
                         "pass [buffer, MPI.<DATATYPE>]") from None


def _base(obj: Any, o_type: Any, readonly: bool, name: str) -> tuple[memoryview, Datatype]:
    if obj is None or obj is BOTTOM:
        return memoryview(bytearray()), (as_datatype(o_type) if o_type is not None else BYTE)
    flat, infer = _flat(obj, readonly, name)
    dt = as_datatype(o_type) if o_type is not None else infer()
    if dt._map is not None:
        raise _not_implemented(f"{name} with a derived datatype (granny supports them in one-sided "
                               "operations and Bcast only)")
    if dt.extent <= 0:
        raise ValueError(f"{name}: datatype {dt!r} has no extent")
    return flat, dt


def parse_buffer(spec: Any, *, readonly: bool, name: str = "buffer", blocks: int = 1) -> Buf:
    """Parse a message spec the way mpi4py's Send/Recv/collectives do.

    ``blocks`` > 1 (Scatter's send side, Gather's receive side): an inferred count is divided by it
    and the buffer must hold ``blocks`` blocks of ``count`` elements.
    """
    if type(spec) is np.ndarray and blocks == 1:  # the common case, in well under a microsecond
        fast = _fast_ndarray(spec, readonly)
        if fast is not None:
            return fast
    obj, o_count, o_displ, o_type = _split(spec, name, vector=False)
    blocks = max(blocks, 1)
    flat, dt = _base(obj, o_type, readonly, name)
    ext, length = dt.extent, flat.nbytes
    offset = _index(o_displ, "displacement", name) * ext if o_displ is not None else 0
    if offset > length:
        raise ValueError(f"{name}: displacement {offset // ext} out of bounds, the buffer has "
                         f"{length // ext} entries")
    if o_count is not None:
        count = _index(o_count, "count", name)
        if count and length == 0 and (obj is None or obj is BOTTOM):
            raise ValueError(f"{name}: the buffer is None but count is {count}")
        if offset + count * blocks * ext > length:
            raise ValueError(f"{name}: {count * blocks} entries of {dt!r} (after a displacement of "
                             f"{offset // ext}) do not fit in a buffer of {length} bytes")
    else:
        rest = length - offset
        if rest % ext:
            raise ValueError(f"{name}: cannot infer count, buffer length {rest} is not a multiple of "
                             f"the extent {ext} of {dt!r}")
        if (rest // ext) % blocks:
            raise ValueError(f"{name}: cannot infer count, {rest // ext} entries do not split into "
                             f"{blocks} equal blocks")
        count = rest // ext // blocks
    return Buf(flat[offset:offset + count * blocks * ext], count, dt, obj, blocks)


def buffer_bytes(spec: Any, readonly: bool, name: str) -> memoryview:
    """Just the bytes of a message spec (point-to-point needs no more); fast for a plain array.

    The byte views of a few small arrays are remembered (by identity, checked through a weak
    reference), so a ping-pong that reuses its buffers skips building one per call (~0.25 µs). The
    arrays are small (64 KiB at most) and few, and a view pins its array only while it is cached."""
    if type(spec) is np.ndarray:
        hit = _VIEWS.get(id(spec))
        if hit is not None and hit[0]() is spec and (readonly or not hit[1].readonly):
            return hit[1]
        m = spec.data
        if m.c_contiguous and m.ndim and (readonly or not m.readonly) and m.format != "O":
            b = m.cast("B")
            if b.nbytes <= _VIEW_MAX_BYTES:
                if len(_VIEWS) >= _VIEW_SLOTS:
                    _VIEWS.clear()
                _VIEWS[id(spec)] = (weakref.ref(spec), b)
            return b
    return parse_buffer(spec, readonly=readonly, name=name).mem


_VIEWS: dict[int, tuple[weakref.ref[np.ndarray], memoryview]] = {}


_BY_DTYPE: dict[np.dtype[Any], Datatype | None] = {}


def _fast_ndarray(arr: np.ndarray, readonly: bool) -> Buf | None:
    m = arr.data
    if not m.c_contiguous or m.ndim == 0 or (m.readonly and not readonly):
        return None
    dt = _BY_DTYPE.get(arr.dtype, _BY_DTYPE)
    if dt is _BY_DTYPE:
        try:
            dt = from_numpy(arr.dtype) if arr.dtype.fields is None else None
        except ValueError:
            dt = None
        _BY_DTYPE[arr.dtype] = dt
    if dt is None:
        return None
    assert isinstance(dt, Datatype)
    return Buf(m.cast("B"), arr.size, dt, arr, 1)


def parse_vbuffer(spec: Any, size: int, *, readonly: bool, name: str = "buffer") -> VBuf:
    """Parse a vector message spec (Gatherv/Scatterv/Allgatherv/Alltoallv) the way mpi4py does.

    counts: None (the buffer split as evenly as possible, first blocks one larger, as mpi4py does), an
    int (the same for every block) or a sequence of ``size`` ints. displs: None (prefix sums of counts),
    an int (a stride) or a sequence of ``size`` ints. Counts and displacements are in elements.
    """
    obj, o_counts, o_displs, o_type = _split(spec, name, vector=True)
    flat, dt = _base(obj, o_type, readonly, name)
    ext, length = dt.extent, flat.nbytes
    if o_counts is None:
        if length % ext:
            raise ValueError(f"{name}: cannot infer counts, buffer length {length} is not a multiple "
                             f"of the extent {ext} of {dt!r}")
        n = length // ext
        counts = [n // size + (n % size > i) for i in range(size)]
    elif _is_integral(o_counts):
        counts = [_index(o_counts, "count", name)] * size
    else:
        counts = [_index(c, "count", name) for c in o_counts]
    if o_displs is None:
        displs = [sum(counts[:i]) for i in range(size)]
    elif _is_integral(o_displs):
        stride = _index(o_displs, "displacement", name)
        displs = [stride * i for i in range(size)]
    else:
        displs = [_index(d, "displacement", name) for d in o_displs]
    if len(counts) != size or len(displs) != size:
        raise ValueError(f"{name}: expecting {size} counts and displacements, got {len(counts)} "
                         f"and {len(displs)}")
    for i, (c, d) in enumerate(zip(counts, displs, strict=True)):
        if (c + d) * ext > length:
            raise ValueError(f"{name}: block {i} ({c} entries at displacement {d}) does not fit in "
                             f"a buffer of {length // ext} entries of {dt!r}")
    return VBuf(flat, counts, displs, dt, obj)

