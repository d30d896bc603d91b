"""Dirty-page scans and diffs: round trips through bytes, apply, and rejection of mismatched diffs."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from granny.memory import PAGE_SIZE, Diff, Encoding, apply, dirty_pages, empty_diff, encode, snapshot
from granny.memory.pages import page_count

DTYPES = ["u1", "i2", "i4", "i8", "f4", "f8", "c16", "?", [("a", "i4"), ("b", "f8")]]


@st.composite
def versions(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    """(snapshot, current): a region of any dtype and size (with or without a short last page) and a
    version of it with a random set of elements rewritten."""
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    n = draw(st.integers(0, 3 * PAGE_SIZE // dtype.itemsize + 7))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    snap = np.frombuffer(rng.integers(0, 256, n * dtype.itemsize, dtype=np.uint8).tobytes(), dtype=dtype).copy()
    cur = snap.copy()
    if n:
        idx = rng.choice(n, draw(st.integers(0, min(n, 40))), replace=False)
        raw = cur.view(np.uint8).reshape(n, dtype.itemsize)
        raw[idx] = rng.integers(0, 256, (idx.size, dtype.itemsize), dtype=np.uint8)
    return snap, cur


def test_dirty_pages_finds_exactly_the_changed_pages() -> None:
    snap = np.zeros(10 * PAGE_SIZE + 100, dtype=np.uint8)
    cur = snap.copy()
    cur[[0, 5 * PAGE_SIZE + 7, 5 * PAGE_SIZE + 9, 10 * PAGE_SIZE + 99]] = 1
    assert dirty_pages(cur, snap).tolist() == [0, 5, 10]
    assert dirty_pages(snap, snap).size == 0
    assert page_count(cur.nbytes) == 11


def test_dirty_pages_accepts_bytes_and_unaligned_buffers() -> None:
    snap = bytes(3 * PAGE_SIZE + 1)
    cur = bytearray(snap)
    cur[PAGE_SIZE + 3] = 9
    assert dirty_pages(memoryview(cur)[1:], memoryview(snap)[1:]).tolist() == [1]
    with pytest.raises(ValueError, match="snapshot has"):
        dirty_pages(cur, snap[:-1])


def test_non_contiguous_regions_are_refused() -> None:
    a = np.zeros((8, 8))
    with pytest.raises(ValueError, match="C-contiguous"):
        snapshot(a[:, ::2])


@settings(max_examples=150, deadline=None)
@given(versions(), st.sampled_from(list(Encoding)))
def test_encode_bytes_round_trip_and_apply(pair: tuple[np.ndarray, np.ndarray], enc: Encoding) -> None:
    snap, cur = pair
    d = encode(cur, snap, encoding=enc)
    assert d.pages.tolist() == dirty_pages(cur, snap).tolist()
    back = Diff.from_bytes(d.to_bytes())
    assert (back.shape, back.dtype, back.nbytes, back.encoding) == (d.shape, d.dtype, d.nbytes, d.encoding)
    for a, b in ((back.pages, d.pages), (back.starts, d.starts), (back.lengths, d.lengths), (back.data, d.data)):
        assert np.array_equal(a, b)
    replica = snap.copy()
    apply(back, replica)
    assert replica.tobytes() == cur.tobytes()


@settings(max_examples=50, deadline=None)
@given(versions())
def test_runs_ship_only_changed_words(pair: tuple[np.ndarray, np.ndarray]) -> None:
    snap, cur = pair
    d = encode(cur, snap, encoding=Encoding.RUNS)
    changed_words = np.count_nonzero(np.frombuffer(cur.tobytes() + bytes(-cur.nbytes % 8), np.uint64)
                                     != np.frombuffer(snap.tobytes() + bytes(-snap.nbytes % 8), np.uint64))
    assert d.data.size == 8 * changed_words
    assert d.wire_size <= 200 + 16 * changed_words + 8 * d.pages.size


def test_sparse_pages_pick_runs_full_pages_pick_pages() -> None:
    snap = np.zeros(64 * PAGE_SIZE // 8)
    sparse, full = snap.copy(), snap.copy()
    sparse[::1000] = 1
    full[: 8 * PAGE_SIZE // 8] = 2
    assert encode(sparse, snap, encoding=Encoding.AUTO).encoding is Encoding.RUNS
    assert encode(full, snap, encoding=Encoding.AUTO).encoding is Encoding.PAGES


def test_empty_diffs() -> None:
    a = np.arange(1000.0)
    d = encode(a, snapshot(a))
    assert d.empty and d.data.size == 0
    for e in (d, Diff.from_bytes(d.to_bytes()), empty_diff(a), encode(np.zeros(0), np.zeros(0))):
        assert e.empty
    b = a.copy()
    apply(d, b)
    assert np.array_equal(a, b)


@pytest.mark.parametrize("target", [np.zeros(1000, "f4"), np.zeros(500, "f8"), np.zeros((10, 100), "f8"),
                                    np.zeros(1001, "f8")])
def test_mismatched_diff_is_rejected(target: np.ndarray) -> None:
    a = np.zeros(1000)
    cur = a.copy()
    cur[3] = 1
    with pytest.raises(ValueError, match="does not match"):
        apply(encode(cur, a), target)


@pytest.mark.parametrize("enc", [Encoding.PAGES, Encoding.RUNS])
def test_corrupt_or_truncated_bytes_are_rejected(enc: Encoding) -> None:
    a = np.zeros(3 * PAGE_SIZE)
    cur = a.copy()
    cur[5] = cur[PAGE_SIZE * 2] = 1
    wire = encode(cur, a, encoding=enc).to_bytes()
    with pytest.raises(ValueError):
        Diff.from_bytes(wire[:-1])
    with pytest.raises(ValueError):
        Diff.from_bytes(b"XXXX" + wire[4:])
    with pytest.raises(ValueError):
        Diff.from_bytes(wire[:10])
    bad = bytearray(wire)
    d = Diff.from_bytes(wire)
    last_page_at = len(wire) - d.data.size - 8 * d.starts.size - 8
    bad[last_page_at : last_page_at + 8] = (10**6).to_bytes(8, "little")
    with pytest.raises(ValueError, match="out of range"):
        Diff.from_bytes(bytes(bad))
