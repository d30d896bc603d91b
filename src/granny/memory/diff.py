"""Diffs of a region against its snapshot: encode, serialise, decode and apply.

Theory of operation
-------------------
A worker holds a region (its current version V) and the snapshot S it started from. ``encode`` finds
the dirty pages (``pages.dirty_pages``) and records what V holds there, in one of two encodings:

- ``PAGES``: the dirty page indices and the whole dirty pages of V (k x 4096 bytes, the short last page
  of a region padded with zeros). One fancy-index gather; no byte comparison at all.
- ``RUNS``: the dirty page indices, the runs of bytes that differ from S inside those pages and only
  those bytes. Run offsets are in *block space*: the dirty pages laid end to end, so a run may span two
  dirty pages that are adjacent there. Runs are found without a Python loop: ``cur != snap`` over the
  dirty pages, ``np.diff`` of that mask gives +1 where a run starts and -1 where it ends.

Both encodings carry the region's shape, dtype and nbytes, and ``check_region`` rejects a diff whose
region does not match. Decoding turns either one into *blocks*: the (k, 4096) contents of V on the dirty
pages (RUNS needs S's pages as a base for the bytes that did not change). ``merge.py`` combines blocks
with the main copy; ``apply`` just writes them (for pushing a region's changes to a remote replica).

- ``AUTO`` (an ``encode`` argument, not a wire format) compares the words first and picks RUNS only
  when it ships at most half the bytes of PAGES.

Choice of encoding, by measurement (benchmarks/memory_bench.py, benchmarks/results/memory.md: 64 MiB
float64 region, 10% of the pages dirty, medians; memcpy of the whole region 5.7 ms, dirty-page scan
5.8 ms in the same run; *join* = scan + encode + to/from bytes + overwrite merge):

====================  ======  =======  ==========  =======  ==============  =========
pattern               enc.    encode   merge (ow)  join     join / memcpy   diff size
====================  ======  =======  ==========  =======  ==============  =========
scattered, full page  PAGES   0.29 ms  5.5 ms      11.9 ms  2.1x            6.41 MiB
scattered, full page  RUNS    4.1 ms   8.6 ms      18.8 ms  3.3x            6.41 MiB
clustered, full page  PAGES   0.23 ms  4.8 ms      11.0 ms  1.9x            6.41 MiB
clustered, full page  RUNS    3.0 ms   7.3 ms      16.2 ms  2.8x            6.41 MiB
8 writes per page     PAGES   0.32 ms  5.6 ms      12.2 ms  2.1x            6.41 MiB
8 writes per page     RUNS    4.4 ms   7.8 ms      18.2 ms  3.2x            0.21 MiB
====================  ======  =======  ==========  =======  ==============  =========

Byte-granular runs were tried first and dropped: ``float64 += 1`` changes 2-3 bytes per element, so a
rewritten page became ~1000 runs; encoding took 17-29 ms and the diff was 2.2x the dirty pages. Word
runs fix the size but still cost ~4 ms to encode and ~2.5 ms more to merge per 6.4 MiB dirty.

``DEFAULT_ENCODING`` is therefore PAGES: it meets the join target (<= 3x memcpy) in every pattern, and
its size is always exactly the dirty pages. RUNS costs ~1 ms of CPU per MiB dirty, so it only pays
where shipping a MiB costs more than that (links under ~1 GB/s) *and* pages are sparsely written;
``AUTO`` makes that call per diff for such links.
"""

from __future__ import annotations

import ast
import enum
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from ..tunables import AUTO_RUNS_MAX_FRACTION
from .pages import (
    PAGE_SIZE,
    WORDS_PER_PAGE,
    BufferLike,
    Bytes,
    Indices,
    as_bytes,
    check_pages,
    dirty_pages,
    gather_pages,
    scatter_pages,
)

Runs = npt.NDArray[np.uint32]


class Encoding(enum.IntEnum):
    AUTO = 0  # ``encode`` only: RUNS when it ships at most half the bytes of PAGES, else PAGES
    PAGES = 1
    RUNS = 2


DEFAULT_ENCODING = Encoding.PAGES  # see the measurements above

_MAGIC = b"GRDF"
_VERSION = 1
# magic, version, encoding, ndim, descr length, nbytes, pages, runs, data bytes
_HEAD = struct.Struct("<4sBBHIQQQQ")
_EMPTY = np.empty(0, dtype=np.int64)
_NO_RUNS = np.empty(0, dtype=np.uint32)


def _descr(dtype: np.dtype[Any]) -> str:
    return repr(np.lib.format.dtype_to_descr(dtype))


@dataclass(frozen=True, eq=False, slots=True)
class Diff:
    """V's contents on the dirty pages of one region.

    ``pages``: sorted dirty page indices (int64). PAGES: ``data`` is the k whole pages. RUNS: ``starts``
    and ``lengths`` (uint32, in 8-byte words of block space) locate the changed words, ``data`` holds them.
    """

    shape: tuple[int, ...]
    dtype: np.dtype[Any]
    nbytes: int
    encoding: Encoding
    pages: Indices
    starts: Runs
    lengths: Runs
    data: Bytes

    @property
    def empty(self) -> bool:
        return self.pages.size == 0

    @property
    def wire_size(self) -> int:
        return sum(memoryview(b).nbytes for b in self.to_buffers())

    def to_buffers(self) -> list[bytes | memoryview]:
        """Header plus the arrays as zero-copy views, for a vectored send."""
        descr = _descr(self.dtype).encode()
        head = _HEAD.pack(_MAGIC, _VERSION, int(self.encoding), len(self.shape), len(descr), self.nbytes,
                          self.pages.size, self.starts.size, self.data.size)
        meta = head + struct.pack(f"<{len(self.shape)}Q", *self.shape) + descr
        meta += b"\0" * (-len(meta) % 8)  # keep the int64 arrays that follow 8-byte aligned
        arrays = (self.pages, self.starts, self.lengths, self.data)
        return [meta, *(np.ascontiguousarray(a).reshape(-1).view(np.uint8).data for a in arrays)]

    def to_bytes(self) -> bytes:
        return b"".join(self.to_buffers())

    @classmethod
    def from_bytes(cls, buf: bytes | bytearray | memoryview) -> Diff:
        """Parse a serialised diff (zero-copy: the arrays are views of ``buf``) and validate it."""
        mv = memoryview(buf).cast("B")
        if mv.nbytes < _HEAD.size:
            raise ValueError("truncated diff: shorter than its header")
        magic, version, enc, ndim, dlen, nbytes, npages, nruns, ndata = _HEAD.unpack_from(mv)
        if magic != _MAGIC or version != _VERSION:
            raise ValueError(f"not a granny diff (magic {magic!r}, version {version})")
        pos = _HEAD.size
        shape = struct.unpack_from(f"<{ndim}Q", mv, pos)
        pos += 8 * ndim
        try:
            dtype = np.lib.format.descr_to_dtype(ast.literal_eval(bytes(mv[pos:pos + dlen]).decode()))
            encoding = Encoding(enc)
            if encoding is Encoding.AUTO:
                raise ValueError("AUTO is not a wire encoding")
        except (ValueError, SyntaxError, TypeError) as e:
            raise ValueError(f"diff header is corrupt: {e}") from None
        pos += dlen + (-(pos + dlen) % 8)
        parts: list[np.ndarray[Any, Any]] = []
        for count, dt in ((npages, np.int64), (nruns, np.uint32), (nruns, np.uint32), (ndata, np.uint8)):
            size = count * np.dtype(dt).itemsize
            if pos + size > mv.nbytes:
                raise ValueError("truncated diff: its arrays are shorter than the header says")
            parts.append(np.frombuffer(mv, dtype=dt, count=count, offset=pos))
            pos += size
        diff = cls(tuple(int(s) for s in shape), dtype, nbytes, encoding, *parts)
        diff.validate()
        return diff

    def validate(self) -> None:
        """Refuse an inconsistent diff (corrupt or hostile input) before it touches any memory."""
        if int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize != self.nbytes:
            raise ValueError(f"diff says shape {self.shape} of {self.dtype} but nbytes {self.nbytes}")
        check_pages(self.pages, self.nbytes)
        span = self.pages.size * PAGE_SIZE
        if self.encoding is Encoding.PAGES:
            if self.data.size != span or self.starts.size or self.lengths.size:
                raise ValueError(f"PAGES diff has {self.data.size} data bytes for {self.pages.size} pages")
            return
        starts, lengths = self.starts.astype(np.int64), self.lengths.astype(np.int64)
        if starts.size != lengths.size or 8 * int(lengths.sum()) != self.data.size:
            raise ValueError("RUNS diff: run lengths do not add up to its data")
        if starts.size:
            ends = starts + lengths
            if (int(ends[-1]) > span // 8 or bool((lengths <= 0).any())
                    or bool((starts[1:] <= ends[:-1]).any())):
                raise ValueError("RUNS diff: runs are out of range, empty, unsorted or touching")

    def check_region(self, shape: tuple[int, ...], dtype: np.dtype[Any]) -> None:
        """Reject a diff made for another region: shape, dtype and size must all match."""
        if tuple(shape) != self.shape or np.dtype(dtype) != self.dtype:
            raise ValueError(f"diff of a {self.shape} {self.dtype} region does not match the target "
                             f"region {tuple(shape)} {np.dtype(dtype)}")


def encode(current: np.ndarray[Any, Any], snap: BufferLike, *, encoding: Encoding = DEFAULT_ENCODING,
           pages: Indices | None = None) -> Diff:
    """The diff of ``current`` against its snapshot (``pages``: the dirty pages, if already known).
    AUTO may return either encoding; the result's ``encoding`` says which."""
    cur, old = as_bytes(current), as_bytes(snap)
    if pages is None:
        pages = dirty_pages(cur, old)
    else:
        pages = np.asarray(pages, dtype=np.int64)
        check_pages(pages, cur.nbytes)
    if cur.nbytes != old.nbytes:
        raise ValueError(f"region has {cur.nbytes} bytes but its snapshot has {old.nbytes}")
    shape, dtype = tuple(current.shape), current.dtype
    cb = gather_pages(cur, pages)
    pages_diff = Diff(shape, dtype, cur.nbytes, Encoding.PAGES, pages, _NO_RUNS, _NO_RUNS, cb.reshape(-1))
    if encoding is Encoding.PAGES or pages.size * WORDS_PER_PAGE >= 1 << 32:  # RUNS offsets are uint32
        return pages_diff
    words = cb.view(np.uint64).reshape(-1)
    changed = words != gather_pages(old, pages).view(np.uint64).reshape(-1)
    if encoding is Encoding.AUTO and np.count_nonzero(changed) > AUTO_RUNS_MAX_FRACTION * changed.size:
        return pages_diff  # runs would save little on the wire and cost more CPU at both ends
    # +1 where a run of changed words starts, -1 one past where it ends: they alternate.
    edges = np.flatnonzero(np.diff(changed.view(np.int8), prepend=np.int8(0), append=np.int8(0)))
    starts = edges[0::2].astype(np.uint32)
    lengths = (edges[1::2] - edges[0::2]).astype(np.uint32)
    data = words[changed].view(np.uint8)
    return Diff(shape, dtype, cur.nbytes, Encoding.RUNS, pages, starts, lengths, data)


def run_mask(diff: Diff) -> np.ndarray[Any, np.dtype[np.bool_]]:
    """The words a RUNS diff carries, as a flat mask over block space (k * 512 words)."""
    step = np.zeros(diff.pages.size * WORDS_PER_PAGE + 1, dtype=np.int8)
    starts = diff.starts.astype(np.int64)
    step[starts] = 1
    step[starts + diff.lengths] = -1  # runs never touch, so an end is never another run's start
    return np.cumsum(step[:-1], dtype=np.int8).view(np.bool_)


def decode_blocks(diff: Diff, base: Bytes | None) -> Bytes:
    """V's (k, 4096) blocks on the dirty pages. RUNS needs ``base``: S's blocks on those pages (or the
    target's, where it equals S) for the words the diff does not carry. ``base`` is overwritten."""
    if diff.encoding is Encoding.PAGES:
        return diff.data.reshape(-1, PAGE_SIZE)
    if base is None:
        raise ValueError("a RUNS diff needs the snapshot's pages to rebuild whole pages")
    base.view(np.uint64).reshape(-1)[run_mask(diff)] = words_of(diff.data)
    return base


def aligned(data: Bytes) -> Bytes:
    """``data``, copied if it does not start on an 8-byte boundary (parsed from an unaligned buffer),
    so it can be viewed as uint64 words."""
    return data if data.ctypes.data % 8 == 0 else data.copy()


def words_of(data: Bytes) -> np.ndarray[Any, np.dtype[np.uint64]]:
    return aligned(data).view(np.uint64)


def apply(diff: Diff, target: np.ndarray[Any, Any]) -> None:
    """Write the diff into ``target`` (a replica equal to the snapshot outside the changed bytes)."""
    diff.check_region(target.shape, target.dtype)
    if diff.empty:
        return
    if not target.flags.writeable:
        raise ValueError("cannot apply a diff to a read-only array")
    buf = as_bytes(target)
    base = None if diff.encoding is Encoding.PAGES else gather_pages(buf, diff.pages)
    scatter_pages(buf, diff.pages, decode_blocks(diff, base))


def empty_diff(region: np.ndarray[Any, Any], encoding: Encoding = DEFAULT_ENCODING) -> Diff:
    """The diff of a region nobody changed."""
    return Diff(tuple(region.shape), region.dtype, region.nbytes, encoding, _EMPTY, _NO_RUNS, _NO_RUNS,
                np.empty(0, dtype=np.uint8))
