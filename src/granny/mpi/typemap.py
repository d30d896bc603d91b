"""Type maps of derived datatypes (``Create_vector`` ...), as byte segments: pure, imports no MPI module.

Theory of operation
- A ``TypeMap`` is what MPI's type map says about memory, flattened to bytes: the ``(offset, length)``
  segments one element covers (adjacent ones merged, in type-map order), its ``lb`` and ``extent``
  (where the next element of a count starts), its ``size`` (data bytes), and ``base``: the predefined
  datatype every segment is made of (reductions need it; this module only carries it).
- The constructors follow the MPI standard's definitions (section 5.1): each block of ``n`` copies of
  the old type at a displacement contributes the old segments shifted by the displacement plus
  ``k * old.extent``; the new ``lb``/``ub`` are the smallest/largest of the copies' bounds. A subarray's
  extent is the whole array's (lb 0), a resized type's what it is given.
- ``repeat`` gives ``count`` elements' segments; ``index`` turns segments into a numpy index of bytes,
  for packing (``buf[index]``) and unpacking (``buf[index] = packed``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

Segs = tuple[tuple[int, int], ...]


def _merge(segs: list[tuple[int, int]]) -> Segs:
    out: list[tuple[int, int]] = []
    for off, n in segs:
        if n <= 0:
            continue
        if out and out[-1][0] + out[-1][1] == off:
            out[-1] = (out[-1][0], out[-1][1] + n)
        else:
            out.append((off, n))
    return tuple(out)


class TypeMap:
    """Immutable by convention (a plain class: a dataclass costs a millisecond at import)."""

    __slots__ = ("base", "extent", "lb", "segs", "size")

    def __init__(self, segs: Segs, lb: int, extent: int, size: int, base: Any) -> None:
        self.segs, self.lb, self.extent, self.size = segs, lb, extent, size
        self.base = base  # the predefined datatype the segments are made of

    @property
    def true_lb(self) -> int:
        return min((o for o, _ in self.segs), default=0)

    @property
    def true_extent(self) -> int:
        return max((o + n for o, n in self.segs), default=0) - self.true_lb

    @property
    def contiguous(self) -> bool:
        """One element is one run of bytes starting at 0, and elements of a count follow each other."""
        return len(self.segs) <= 1 and self.lb == 0 and (not self.segs or (
            self.segs[0][0] == 0 and self.segs[0][1] == self.extent))


def named(base: Any, size: int, extent: int, fields: list[tuple[int, int]] | None = None) -> TypeMap:
    """The type map of a predefined datatype (a C struct pair type has its fields' segments)."""
    return TypeMap(_merge(fields) if fields else ((0, size),), 0, extent, size, base)


def _blocks(old: TypeMap, blocks: list[tuple[int, int]]) -> TypeMap:
    """``blocks``: (byte displacement, number of old elements); the general constructor."""
    segs: list[tuple[int, int]] = []
    lo, hi = None, None
    for disp, n in blocks:
        if n < 0:
            raise ValueError(f"negative block length {n}")
        for k in range(n):
            shift = disp + k * old.extent
            segs.extend((o + shift, ln) for o, ln in old.segs)
        if n:
            a, b = disp + old.lb, disp + old.lb + n * old.extent
            lo = a if lo is None else min(lo, a)
            hi = b if hi is None else max(hi, b)
    lo, hi = lo or 0, hi if hi is not None else 0
    return TypeMap(_merge(segs), lo, hi - lo, sum(n for _, n in segs), old.base)


def contiguous(old: TypeMap, count: int) -> TypeMap:
    return _blocks(old, [(0, _nonneg(count, "count"))])


def hvector(old: TypeMap, count: int, blocklength: int, stride_bytes: int) -> TypeMap:
    _nonneg(count, "count")
    return _blocks(old, [(i * stride_bytes, _nonneg(blocklength, "blocklength")) for i in range(count)])


def vector(old: TypeMap, count: int, blocklength: int, stride: int) -> TypeMap:
    return hvector(old, count, blocklength, stride * old.extent)


def hindexed(old: TypeMap, blocklengths: list[int], displs_bytes: list[int]) -> TypeMap:
    if len(blocklengths) != len(displs_bytes):
        raise ValueError(f"{len(blocklengths)} block lengths for {len(displs_bytes)} displacements")
    return _blocks(old, [(d, _nonneg(n, "blocklength")) for n, d in zip(blocklengths, displs_bytes, strict=True)])


def indexed(old: TypeMap, blocklengths: list[int], displs: list[int]) -> TypeMap:
    return hindexed(old, blocklengths, [d * old.extent for d in displs])


def subarray(old: TypeMap, sizes: list[int], subsizes: list[int], starts: list[int], fortran: bool) -> TypeMap:
    nd = len(sizes)
    if not (len(subsizes) == len(starts) == nd) or nd == 0:
        raise ValueError("sizes, subsizes and starts must have the same, non-zero length")
    for s, sub, st in zip(sizes, subsizes, starts, strict=True):
        if s < 1 or sub < 1 or st < 0 or st + sub > s:
            raise ValueError(f"subarray: {sub} elements from {st} do not fit in a dimension of {s}")
    if fortran:  # the first index varies fastest: reverse to C order
        sizes, subsizes, starts = sizes[::-1], subsizes[::-1], starts[::-1]
    strides = [1] * nd
    for d in range(nd - 2, -1, -1):
        strides[d] = strides[d + 1] * sizes[d + 1]
    blocks = []
    for idx in np.ndindex(*subsizes[:-1]):
        first = sum((starts[d] + idx[d]) * strides[d] for d in range(nd - 1)) + starts[-1]
        blocks.append((first * old.extent, subsizes[-1]))
    t = _blocks(old, blocks)
    total = int(np.prod(sizes)) * old.extent
    return TypeMap(t.segs, 0, total, t.size, old.base)


def resized(old: TypeMap, lb: int, extent: int) -> TypeMap:
    return TypeMap(old.segs, lb, extent, old.size, old.base)


def repeat(t: TypeMap, count: int) -> Segs:
    """The segments of ``count`` consecutive elements."""
    if count == 1:
        return t.segs
    return _merge([(o + k * t.extent, n) for k in range(count) for o, n in t.segs])


def index(segs: Segs) -> np.ndarray:
    """The byte offsets of ``segs``, in order, as one index array."""
    if not segs:
        return np.empty(0, dtype=np.intp)
    return np.concatenate([np.arange(o, o + n, dtype=np.intp) for o, n in segs])


def span(segs: Segs) -> tuple[int, int]:
    """(lowest byte, one past the highest) that ``segs`` touch."""
    if not segs:
        return 0, 0
    return min(o for o, _ in segs), max(o + n for o, n in segs)


def _nonneg(x: int, what: str) -> int:
    x = int(x.__index__()) if hasattr(x, "__index__") else x
    if type(x) is not int:
        raise TypeError(f"{what} must be an integer")
    if x < 0:
        raise ValueError(f"negative {what} {x}")
    return x
