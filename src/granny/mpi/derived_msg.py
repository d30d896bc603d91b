"""Messages whose datatype is derived (``[buf, count, MPI.DOUBLE.Create_vector(...)]``), packed around a call.

Theory of operation
- Point-to-point and the collectives move contiguous bytes (buffers.py rejects derived datatypes). A call
  that supports derived datatypes asks ``packed(spec)`` first: for such a spec it gets the element bytes
  gathered into one contiguous array (in type-map order, as MPI_Pack lays them out), runs the call on
  that array as ``BYTE``s, and then ``unpack`` scatters what arrived back into the user's buffer.
- Only typemap.py, foreign.py and numpy are imported: the datatype is recognised by its ``_map`` (datatypes.py), so
  this module stays outside the import knot of the communicator modules.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import foreign, typemap


class Packed:
    """A derived-datatype message: ``data`` (contiguous bytes) stands for the user's elements."""

    def __init__(self, raw: np.ndarray, idx: np.ndarray) -> None:
        self.raw, self.idx = raw, idx
        self.data = raw[idx]

    def unpack(self) -> None:
        self.raw[self.idx] = self.data

    def bcast(self, comm: Any, root: int) -> None:
        comm.Bcast(self.data, root)
        if comm.Get_rank() != root:
            self.unpack()


def packed(spec: Any) -> Packed | None:
    """A Packed for ``[buf, count, datatype]`` / ``[buf, (count, displ), datatype]`` / ``(buf, datatype)``
    with a derived datatype; None for anything else (the caller's usual parsing handles it)."""
    if not isinstance(spec, list | tuple) or len(spec) not in (2, 3):
        return None
    dt = spec[-1]
    tm = getattr(dt, "_map", None)
    if not isinstance(tm, typemap.TypeMap):
        return None
    buf = spec[0]
    if not isinstance(buf, np.ndarray):
        try:
            buf = np.frombuffer(memoryview(buf).cast("B"), np.uint8)
        except TypeError:  # no buffer protocol: a DLPack / CUDA-array-interface object in host memory
            host = foreign.host_array(buf)
            if host is None:
                raise
            buf = host
    raw = buf.reshape(-1, order="A").view(np.uint8)
    count, displ = (None, 0) if len(spec) == 2 else (spec[1], 0)
    if isinstance(count, list | tuple):
        count, displ = count
    if count is None:
        if tm.extent <= 0 or raw.shape[0] % tm.extent:
            raise ValueError(f"cannot infer count: {raw.shape[0]} bytes for elements of extent {tm.extent}")
        count = raw.shape[0] // tm.extent
    segs = typemap.repeat(tm, int(count))
    shift = int(displ) * tm.extent
    lo, hi = typemap.span(segs)
    if lo + shift < 0 or hi + shift > raw.shape[0]:
        raise ValueError(f"{count} elements of the derived datatype need bytes {lo + shift}..{hi + shift} of a "
                         f"buffer of {raw.shape[0]}")
    return Packed(raw, typemap.index(segs) + shift)
