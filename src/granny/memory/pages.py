"""Pages of a region, snapshots, and the vectorised dirty-page scan.

A *region* is the bytes of one C-contiguous array. Its *pages* are consecutive 4 KiB blocks of those
bytes counted from the array's first byte (logical pages: they need not line up with the OS pages, and
the last one is short when ``nbytes`` is not a multiple of ``PAGE_SIZE``).

The scan compares the region with its snapshot eight bytes at a time: both are viewed as uint64 and
reshaped to (pages, 512), and a page is dirty when any of its words differ. It walks the region in
chunks of ``SCAN_CHUNK_PAGES`` pages so the boolean temporary stays small (4 MiB of input per chunk)
instead of growing with the region; measured on 64 MiB with 10% of the pages dirty, chunked and
unchunked scans both take ~5.4 ms, the same as a 64 MiB ``np.copyto``: the scan runs at memory bandwidth.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from ..tunables import SCAN_CHUNK_PAGES

PAGE_SIZE = 4096
WORDS_PER_PAGE = PAGE_SIZE // 8

Bytes = npt.NDArray[np.uint8]
Indices = npt.NDArray[np.int64]
BufferLike = np.ndarray[Any, Any] | memoryview | bytes | bytearray


def page_count(nbytes: int) -> int:
    """Pages covering ``nbytes`` bytes (the last one may be short)."""
    return -(-nbytes // PAGE_SIZE)


def as_bytes(buf: BufferLike) -> Bytes:
    """A flat uint8 view (never a copy) of an array's or buffer's bytes.

    Only C-contiguous arrays have a byte layout that matches their element order, so anything else is
    refused rather than silently copied (a copy would hide the writes of the caller).
    """
    if isinstance(buf, np.ndarray):
        if not buf.flags.c_contiguous:
            raise ValueError("a region must be a C-contiguous array (use np.ascontiguousarray first)")
        return buf.reshape(-1).view(np.uint8)
    return np.frombuffer(buf, dtype=np.uint8)


def snapshot(arr: BufferLike) -> Bytes:
    """A private copy of the region's bytes, to diff against later."""
    return as_bytes(arr).copy()


def dirty_pages(current: BufferLike, snap: BufferLike) -> Indices:
    """Sorted indices of the pages of ``current`` whose bytes differ from ``snap``."""
    cur, old = as_bytes(current), as_bytes(snap)
    if cur.nbytes != old.nbytes:
        raise ValueError(f"region has {cur.nbytes} bytes but its snapshot has {old.nbytes}")
    full = cur.nbytes // PAGE_SIZE
    found: list[Indices] = []
    if full:
        a = cur[: full * PAGE_SIZE]
        b = old[: full * PAGE_SIZE]
        # uint64 views need 8-byte alignment; numpy buffers and mmaps are aligned, a sliced bytes
        # object may not be, and then one aligned copy is cheaper than comparing bytes one by one.
        if a.ctypes.data % 8:
            a = a.copy()
        if b.ctypes.data % 8:
            b = b.copy()
        wa = a.view(np.uint64).reshape(full, WORDS_PER_PAGE)
        wb = b.view(np.uint64).reshape(full, WORDS_PER_PAGE)
        ne = np.empty((min(full, SCAN_CHUNK_PAGES), WORDS_PER_PAGE), dtype=bool)
        for start in range(0, full, SCAN_CHUNK_PAGES):
            stop = min(start + SCAN_CHUNK_PAGES, full)
            part = ne[: stop - start]
            np.not_equal(wa[start:stop], wb[start:stop], out=part)
            hits = np.flatnonzero(part.any(axis=1))
            if hits.size:
                found.append(hits.astype(np.int64) + start)
    if cur.nbytes % PAGE_SIZE and not np.array_equal(cur[full * PAGE_SIZE :], old[full * PAGE_SIZE :]):
        found.append(np.array([full], dtype=np.int64))
    if not found:
        return np.empty(0, dtype=np.int64)
    return np.concatenate(found)


def _page_rows(buf: Bytes, full: int) -> np.ndarray[Any, Any]:
    """The full pages of ``buf`` as rows, as uint64 words when aligned: fancy indexing moves 8-byte
    words about twice as fast as bytes (0.5 vs 0.85 ms for 1638 pages here)."""
    head = buf[: full * PAGE_SIZE]
    if head.ctypes.data % 8 == 0:
        return head.view(np.uint64).reshape(full, WORDS_PER_PAGE)
    return head.reshape(full, PAGE_SIZE)


def gather_pages(buf: Bytes, pages: Indices, out: Bytes | None = None) -> Bytes:
    """The listed pages of ``buf`` as (k, PAGE_SIZE) blocks, a short last page padded with zeros.
    ``out``: a preallocated (k, PAGE_SIZE) uint8 array to fill (a merge reuses one per chunk)."""
    full = buf.nbytes // PAGE_SIZE
    n_full = int(np.searchsorted(pages, full))  # pages are sorted: the tail page, if listed, is last
    if out is None:
        if n_full == pages.size:  # the common case: one fancy-index copy, no zero-fill pass
            return _page_rows(buf, full)[pages].view(np.uint8).reshape(pages.size, PAGE_SIZE)
        out = np.empty((pages.size, PAGE_SIZE), dtype=np.uint8)
    if n_full:
        rows = _page_rows(buf, full)
        dst = out[:n_full]
        np.take(rows, pages[:n_full], axis=0, out=dst.view(rows.dtype) if rows.dtype != np.uint8 else dst)
    if n_full < pages.size:
        tail = buf[full * PAGE_SIZE :]
        out[n_full, : tail.size] = tail
        out[n_full, tail.size :] = 0
    return out


def scatter_pages(buf: Bytes, pages: Indices, blocks: Bytes) -> None:
    """Write (k, PAGE_SIZE) ``blocks`` back to the listed pages of ``buf`` (the padding is dropped)."""
    full = buf.nbytes // PAGE_SIZE
    n_full = int(np.searchsorted(pages, full))
    if n_full:
        rows = _page_rows(buf, full)
        src = blocks[:n_full]
        if rows.dtype == np.uint64 and src.ctypes.data % 8 == 0:
            rows[pages[:n_full]] = src.view(np.uint64)
        else:
            buf[: full * PAGE_SIZE].reshape(full, PAGE_SIZE)[pages[:n_full]] = src
    if n_full < pages.size:
        tail = buf[full * PAGE_SIZE :]
        tail[:] = blocks[n_full, : tail.size]


def check_pages(pages: Indices, nbytes: int) -> None:
    """Refuse page lists that are unsorted, repeated or out of range (they come off the network)."""
    if pages.size == 0:
        return
    if pages.ndim != 1:
        raise ValueError("page indices must be a flat array")
    if pages.size > 1 and not bool((np.diff(pages) > 0).all()):
        raise ValueError("page indices must be strictly increasing")
    if int(pages[0]) < 0 or int(pages[-1]) >= page_count(nbytes):  # sorted: the ends bound them all
        raise ValueError(f"page index out of range for a region of {nbytes} bytes")
