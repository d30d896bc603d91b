"""Merging a worker's diff into the main copy of a region, with the region's merge operation.

Theory of operation
-------------------
At a fork every worker starts from the same snapshot S of a region; worker i ends with a version V_i and
ships ``encode(V_i, S)``. The main copy M also started as S and may have changed locally. Merging
folds one worker's change into M, touching only the diff's dirty pages: M, S and V_i are gathered as
(k, 4096) blocks, combined with vectorised numpy calls, and M's blocks are written back, so the cost is
proportional to the dirty part, never to the region.

An element takes part only if its bytes changed (V_i != S bytewise); every other element of M is left
exactly as it is, including local changes and -0.0 or NaN. For element i that changed:

- ``OVERWRITE``: M = V_i for each changed *byte* (plain writes; two workers writing the same byte is a
  data race and the last diff merged wins).
- ``SUM``:      M += V_i - S. With S = 0 (a reduction's identity) this is M += V_i, OpenMP's combiner.
- ``SUBTRACT``: the same as ``SUM``. A worker doing ``x -= a`` produces V = S - a; the change to carry
  over is -a = V - S. OpenMP also combines ``reduction(-:x)`` partials with ``+``.
- ``PRODUCT``:  M *= V_i / S. With S = 1 (the identity) this is M *= V_i, exactly, for every dtype.
  Otherwise floats use the rounded ratio; integers need S to divide V_i exactly and S == 0 is refused
  for every dtype (a change from 0 is not a factor). Both raise ``ValueError``: start from 1 instead.
- ``MAX`` / ``MIN``: M = max(M, V_i) / min(M, V_i) (NaN propagates, as with ``np.maximum``).
- ``XOR``:      M ^= V_i ^ S on the raw bytes (any dtype). With S = 0 this is M ^= V_i.
- ``IGNORE``:   the diff is dropped.

Reductions (``reduce=`` in a parallel region) start each worker's private copy from the op's identity
(``identity_array``), so S is the identity and the typed ops above become M = M op partial_i. Pass
``snapshot=None`` to ``merge`` for such regions instead of materialising a full identity array.

Exactness: integer ops wrap modulo 2**bits; +, *, max, min and xor are then associative and
commutative, so merging any number of diffs in any order gives the serial result bit for bit. Float
sums and products depend on the order, as in OpenMP.
"""

from __future__ import annotations

import enum
from typing import Any

import numpy as np

from ..tunables import MERGE_CHUNK_PAGES
from .diff import Diff, Encoding, aligned, run_mask, words_of
from .pages import PAGE_SIZE, WORDS_PER_PAGE, BufferLike, Bytes, as_bytes, gather_pages, scatter_pages


class MergeOp(enum.Enum):
    OVERWRITE = "overwrite"
    SUM = "sum"
    PRODUCT = "product"
    SUBTRACT = "subtract"
    MAX = "max"
    MIN = "min"
    XOR = "xor"
    IGNORE = "ignore"


_ARITH_KINDS = "iufc"  # sum, subtract, product
_ORDER_KINDS = "iufb"  # max, min (complex numbers have no order)


def check_dtype(op: MergeOp, dtype: np.dtype[Any]) -> None:
    """Refuse an op that has no meaning for the region's dtype, before any work is done."""
    if dtype.hasobject:
        raise TypeError(f"{dtype} holds Python object pointers, which cannot be shared or merged")
    kinds = {MergeOp.SUM: _ARITH_KINDS, MergeOp.SUBTRACT: _ARITH_KINDS, MergeOp.PRODUCT: _ARITH_KINDS,
             MergeOp.MAX: _ORDER_KINDS, MergeOp.MIN: _ORDER_KINDS}.get(op)
    if kinds is not None and (dtype.kind not in kinds or dtype.fields is not None):
        raise TypeError(f"merge op {op.value!r} needs a numeric dtype, not {dtype}")


def identity(op: MergeOp, dtype: np.dtype[Any]) -> Any:
    """The value each reduction copy starts from, as a numpy scalar of ``dtype``."""
    dtype = np.dtype(dtype)
    check_dtype(op, dtype)
    if op in (MergeOp.SUM, MergeOp.SUBTRACT, MergeOp.XOR):
        return np.zeros((), dtype)[()]
    if op is MergeOp.PRODUCT:
        return np.ones((), dtype)[()]
    if op in (MergeOp.MAX, MergeOp.MIN):
        low = op is MergeOp.MAX
        if dtype.kind == "f":
            return dtype.type(-np.inf if low else np.inf)
        if dtype.kind == "b":
            return dtype.type(not low)
        info = np.iinfo(dtype)
        return dtype.type(info.min if low else info.max)
    raise ValueError(f"merge op {op.value!r} has no identity: it cannot be a reduction")


def identity_array(op: MergeOp, shape: tuple[int, ...] | int, dtype: Any) -> np.ndarray[Any, Any]:
    """A private reduction copy: ``shape`` filled with ``op``'s identity."""
    dtype = np.dtype(dtype)
    return np.full(shape, identity(op, dtype), dtype=dtype)


def merge_diff(region: np.ndarray[Any, Any], diff: Diff, op: MergeOp | str,
               snapshot: BufferLike | None = None) -> None:
    """Fold one worker's ``diff`` into ``region`` (M) in place. ``snapshot`` is S, the bytes every worker
    started from; ``None`` means S is the op's identity everywhere (a reduction region)."""
    op = MergeOp(op)
    diff.check_region(tuple(region.shape), region.dtype)
    check_dtype(op, region.dtype)
    if op is MergeOp.IGNORE or diff.empty:
        return
    if not region.flags.writeable:
        raise ValueError("cannot merge into a read-only region")
    sbuf = None
    if snapshot is not None:
        sbuf = as_bytes(snapshot)
        if sbuf.nbytes != diff.nbytes:
            raise ValueError(f"snapshot has {sbuf.nbytes} bytes, the region {diff.nbytes}")
    elif op is MergeOp.OVERWRITE:
        raise ValueError("an overwrite merge needs the snapshot, to know which bytes changed")
    mbuf = as_bytes(region)
    with np.errstate(all="ignore"):  # inf - inf, overflow to inf: IEEE results, not errors, here
        if op is MergeOp.PRODUCT:  # may refuse the diff: check all of it before M changes at all
            _walk(op, region.dtype, diff, mbuf, sbuf, check_only=True)
        _walk(op, region.dtype, diff, mbuf, sbuf, check_only=False)


def _walk(op: MergeOp, dtype: np.dtype[Any], diff: Diff, mbuf: Bytes, sbuf: Bytes | None,
          check_only: bool) -> None:
    """Combine the dirty pages ``MERGE_CHUNK_PAGES`` at a time. M, S and V of a chunk and every
    temporary then stay in the CPU cache, and no temporary is big enough for malloc to hand out fresh,
    page-faulting memory: one pass over the dirty part instead of ~10 (5x faster here)."""
    k = diff.pages.size
    chunk = min(k, MERGE_CHUNK_PAGES)
    ident = None if sbuf is not None else _identity_blocks(op, dtype, chunk)
    # M, S, V, and two scratch word arrays per chunk, allocated once: no malloc in the loop
    work = np.empty((5, chunk, PAGE_SIZE), dtype=np.uint8)
    runs = diff.encoding is Encoding.RUNS
    if runs:
        carried = run_mask(diff).reshape(k, WORDS_PER_PAGE)
        words, pos = words_of(diff.data), 0
    else:
        pages_v = aligned(diff.data).reshape(k, PAGE_SIZE)
    for c in range(0, k, chunk):
        p = diff.pages[c : c + chunk]
        n = p.size
        if sbuf is not None:
            sb = gather_pages(sbuf, p, work[1, :n])
        else:
            assert ident is not None
            sb = ident[:n]
        if runs:  # V = S, then the words the diff carries
            vb = work[2, :n]
            vb[...] = sb
            sel = carried[c : c + n]
            count = int(np.count_nonzero(sel))
            vb.view(np.uint64)[sel] = words[pos : pos + count]
            pos += count
        else:
            vb = pages_v[c : c + n]
        if check_only:
            _factors(dtype, sb.view(dtype), vb.view(dtype), _changed_elements(vb, sb, dtype.itemsize))
            continue
        mb = gather_pages(mbuf, p, work[0, :n])
        _combine(op, dtype, mb, sb, vb, work[3:, :n].view(np.uint64))
        scatter_pages(mbuf, p, mb)


def _identity_blocks(op: MergeOp, dtype: np.dtype[Any], n: int) -> Bytes:
    fill = np.full((n, PAGE_SIZE // dtype.itemsize), identity(op, dtype), dtype=dtype)
    return fill.view(np.uint8).reshape(n, PAGE_SIZE)


_LOW_BITS = np.uint64(0x0101010101010101)
_SHIFTS = (np.uint64(4), np.uint64(2), np.uint64(1))


def _byte_mask(x: np.ndarray[Any, np.dtype[np.uint64]], tmp: np.ndarray[Any, np.dtype[np.uint64]]) -> None:
    """In place: 0xFF in every byte of ``x`` that is not zero, 0x00 elsewhere (``tmp``: scratch)."""
    for shift in _SHIFTS:  # fold each byte's 8 bits into its lowest bit; bits shifted in from the
        np.right_shift(x, shift, out=tmp)  # byte above land in bits 1-7, which are dropped below
        x |= tmp
    x &= _LOW_BITS
    x *= np.uint64(0xFF)  # 0x01 -> 0xFF per byte, no carries


def _changed_elements(vb: Bytes, sb: Bytes, itemsize: int) -> np.ndarray[Any, np.dtype[np.bool_]]:
    """Per element of the blocks: did any of its bytes change? Compares whole words where it can."""
    if itemsize in (1, 2, 4, 8):
        word = np.dtype(f"u{itemsize}")
        same_size: np.ndarray[Any, np.dtype[np.bool_]] = vb.view(word) != sb.view(word)
        return same_size
    ne = vb.view(np.uint64) != sb.view(np.uint64)  # 16 or 32 bytes: several words per element
    wide: np.ndarray[Any, np.dtype[np.bool_]] = ne.reshape(ne.shape[0], -1, itemsize // 8).any(axis=2)
    return wide


def _combine(op: MergeOp, dtype: np.dtype[Any], mb: Bytes, sb: Bytes, vb: Bytes,
             scratch: np.ndarray[Any, np.dtype[np.uint64]]) -> None:
    """M's blocks ``mb`` = M op change, in place, for the elements where V's blocks differ from S's.
    ``scratch`` holds two word arrays the size of the blocks, for temporaries."""
    mw, sw, vw = mb.view(np.uint64), sb.view(np.uint64), vb.view(np.uint64)
    t1, t2 = scratch[0], scratch[1]
    if op is MergeOp.OVERWRITE:
        # M = V on the bytes where V != S, branch-free on whole words: faster than a byte-masked
        # np.copyto when the changed bytes are fragmented (float64 += 1 changes 2-3 bytes per element).
        np.bitwise_xor(vw, sw, out=t1)
        _byte_mask(t1, t2)
        np.bitwise_xor(mw, vw, out=t2)
        t2 &= t1
        mw ^= t2
        return
    if op is MergeOp.XOR:
        np.bitwise_xor(vw, sw, out=t1)
        mw ^= t1
        return
    m, s, v = mb.view(dtype), sb.view(dtype), vb.view(dtype)
    mask = _changed_elements(vb, sb, dtype.itemsize)
    if op in (MergeOp.SUM, MergeOp.SUBTRACT):
        delta = t1.view(np.uint8).view(dtype)  # read only where ``mask`` is set, never uninitialised
        np.subtract(v, s, out=delta, where=mask)
        np.add(m, delta, out=m, where=mask)
    elif op is MergeOp.MAX:
        np.maximum(m, v, out=m, where=mask)
    elif op is MergeOp.MIN:
        np.minimum(m, v, out=m, where=mask)
    elif op is MergeOp.PRODUCT:
        np.multiply(m, _factors(dtype, s, v, mask), out=m, where=mask)


def _factors(dtype: np.dtype[Any], s: np.ndarray[Any, Any], v: np.ndarray[Any, Any],
             mask: np.ndarray[Any, np.dtype[np.bool_]]) -> np.ndarray[Any, Any]:
    """V / S for the changed elements, refusing the ones where that is not a well-defined factor."""
    if bool((mask & (s == 0)).any()):
        raise ValueError("product merge: an element changed from 0, which no factor can express; "
                         "start product regions from 1")
    out = np.ones_like(v)
    if dtype.kind in "fc":
        np.divide(v, s, out=out, where=mask)
        return out
    general = mask & (s != 1)  # S == 1 (the identity) is the common case: the factor is V itself
    np.copyto(out, v, where=mask & ~general)
    if bool(general.any()):
        if bool((np.remainder(v, s, where=general, out=np.zeros_like(v)) != 0).any()):
            raise ValueError("product merge: an integer element changed to a value its snapshot does "
                             "not divide, so the factor is not an integer; start product regions from 1")
        np.floor_divide(v, s, out=out, where=general)
    return out


def combine(region: np.ndarray[Any, Any], partial: np.ndarray[Any, Any], op: MergeOp | str) -> None:
    """Whole-array ``region = region op partial``: a same-host reduction partial, no diff involved."""
    op = MergeOp(op)
    if partial.shape != region.shape or partial.dtype != region.dtype:
        raise ValueError(f"partial {partial.shape} {partial.dtype} does not match region "
                         f"{region.shape} {region.dtype}")
    check_dtype(op, region.dtype)
    ufunc = {MergeOp.SUM: np.add, MergeOp.SUBTRACT: np.add, MergeOp.PRODUCT: np.multiply,
             MergeOp.MAX: np.maximum, MergeOp.MIN: np.minimum}.get(op)
    with np.errstate(all="ignore"):
        if ufunc is not None:
            ufunc(region, partial, out=region)
        elif op is MergeOp.XOR:
            mb = as_bytes(region)
            mb ^= as_bytes(partial)
        elif op is MergeOp.OVERWRITE:
            np.copyto(region, partial)
