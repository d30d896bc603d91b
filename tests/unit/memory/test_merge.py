"""Merging workers' diffs gives the serial result: any split of the work, any merge order."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from granny.memory import (
    PAGE_SIZE,
    Diff,
    Encoding,
    MergeOp,
    combine,
    encode,
    identity,
    identity_array,
    merge_diff,
)

INT_DTYPES = ["i1", "u1", "i2", "u2", "i4", "u4", "i8", "u8"]
ENCODINGS = st.sampled_from([Encoding.PAGES, Encoding.RUNS, Encoding.AUTO])


def _ship(d: Diff) -> Diff:
    return Diff.from_bytes(d.to_bytes())  # every diff goes over the "wire"


@st.composite
def split(draw: st.DrawFn, dtypes: list[str]) -> tuple[np.ndarray, int, np.ndarray, list[int], np.random.Generator]:
    """(S, k, owner of each index or -1, merge order, rng): a region, its indices dealt to k workers."""
    dtype = np.dtype(draw(st.sampled_from(dtypes)))
    n = draw(st.integers(1, 3 * PAGE_SIZE // dtype.itemsize + 5))
    k = draw(st.integers(1, 5))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if dtype.kind == "f":
        snap = rng.normal(0, 100, n).astype(dtype)
    else:
        snap = rng.integers(0, 256, n * dtype.itemsize, dtype=np.uint8).view(dtype).copy()
    density = draw(st.sampled_from([0.0, 0.01, 0.3, 1.0]))
    owner = np.where(rng.random(n) < density, rng.integers(0, k, n), -1)
    order = draw(st.permutations(list(range(k))))
    return snap, k, owner, list(order), rng


@settings(max_examples=120, deadline=None)
@given(split(INT_DTYPES + ["f4", "f8", "c8", "?"]), ENCODINGS, st.booleans())
def test_overwrite_of_disjoint_writes_equals_serial(case, enc: Encoding, local: bool) -> None:
    snap, k, owner, order, rng = case
    serial = snap.copy()
    main = snap.copy()
    if local:  # the main copy changed some elements nobody else touches
        mine = np.flatnonzero(owner == -1)[::3]
        main[mine] = serial[mine] = _values(rng, snap, mine.size)
    diffs = []
    for w in range(k):
        v = snap.copy()
        idx = np.flatnonzero(owner == w)
        v[idx] = serial[idx] = _values(rng, snap, idx.size)
        diffs.append(_ship(encode(v, snap, encoding=enc)))
    for w in order:
        merge_diff(main, diffs[w], MergeOp.OVERWRITE, snap)
    assert main.tobytes() == serial.tobytes()


def _values(rng: np.random.Generator, like: np.ndarray, n: int) -> np.ndarray:
    return rng.integers(0, 256, n * like.itemsize, dtype=np.uint8).view(like.dtype)


@settings(max_examples=150, deadline=None)
@given(split(INT_DTYPES), st.sampled_from(["sum", "subtract", "product", "max", "min", "xor"]), ENCODINGS,
       st.booleans())
def test_integer_reductions_are_bit_exact(case, op_name: str, enc: Encoding, identity_snapshot: bool) -> None:
    """reduce=: each worker's private copy starts at the identity; the caller's array combines them."""
    caller, k, owner, order, rng = case
    op = MergeOp(op_name)
    dtype = caller.dtype
    ident = identity_array(op, caller.shape, dtype)
    expect = caller.copy()
    main = caller.copy()
    diffs = []
    for w in range(k):
        partial = ident.copy()
        idx = np.flatnonzero(owner == w)
        partial[idx] = rng.integers(0, 256, idx.size * dtype.itemsize, dtype=np.uint8).view(dtype)
        combine(expect, partial, op)  # the serial result: caller op p_0 op p_1 ...
        diffs.append(_ship(encode(partial, ident, encoding=enc)))
    for w in order:
        merge_diff(main, diffs[w], op, ident if identity_snapshot else None)
    assert main.tobytes() == expect.tobytes()


@settings(max_examples=100, deadline=None)
@given(split(INT_DTYPES), ENCODINGS)
def test_sum_of_shared_region_updates_equals_serial(case, enc: Encoding) -> None:
    """A shared (not reduce=) region with op sum: worker w adds its deltas to S; M gets them all."""
    snap, k, owner, order, rng = case
    serial = snap.copy()
    main = snap.copy()
    diffs = []
    for w in range(k):
        v = snap.copy()
        mine = rng.random(snap.size) < 0.2  # overlapping index sets: sums commute
        delta = rng.integers(0, 256, int(mine.sum()) * snap.itemsize, dtype=np.uint8).view(snap.dtype)
        v[mine] += delta
        serial[mine] += delta
        diffs.append(_ship(encode(v, snap, encoding=enc)))
    for w in order:
        merge_diff(main, diffs[w], "sum", snap)
    assert main.tobytes() == serial.tobytes()


@settings(max_examples=60, deadline=None)
@given(split(["f4", "f8"]), st.sampled_from(["max", "min", "sum", "product"]), ENCODINGS)
def test_float_reductions(case, op_name: str, enc: Encoding) -> None:
    caller, k, owner, order, rng = case
    op = MergeOp(op_name)
    ident = identity_array(op, caller.shape, caller.dtype)
    expect, main = caller.copy(), caller.copy()
    diffs = []
    for w in range(k):
        partial = ident.copy()
        idx = np.flatnonzero(owner == w)
        partial[idx] = rng.uniform(0.5, 2.0, idx.size)
        combine(expect, partial, op)
        diffs.append(_ship(encode(partial, ident, encoding=enc)))
    for w in order:
        merge_diff(main, diffs[w], op, None)
    if op in (MergeOp.MAX, MergeOp.MIN):
        assert main.tobytes() == expect.tobytes()  # order-independent even in floating point
    else:
        np.testing.assert_allclose(main, expect, rtol=1e-5)


def test_product_from_a_non_identity_snapshot() -> None:
    s = np.array([2.0, 3.0, 0.0, 5.0] * 1000)
    m = s.copy()
    v = s.copy()
    v[0] = 8.0  # x *= 4
    merge_diff(m, encode(v, s), "product", s)
    assert m[0] == 8.0 and np.array_equal(m[1:], s[1:])
    v[2] = 1.0  # a change from 0 is not a factor
    before = m.copy()
    with pytest.raises(ValueError, match="changed from 0"):
        merge_diff(m, encode(v, s), "product", s)
    assert np.array_equal(m, before)  # refused diffs leave the region untouched

    si = np.full(5000, 3, dtype=np.int64)
    vi = si.copy()
    vi[7] = 12
    mi = si.copy()
    merge_diff(mi, encode(vi, si), "product", si)
    assert mi[7] == 12
    vi[8] = 10  # 3 does not divide 10
    with pytest.raises(ValueError, match="does not divide"):
        merge_diff(mi, encode(vi, si), "product", si)


def test_ignore_drops_changes_and_overwrite_needs_the_snapshot() -> None:
    s = np.zeros(3000)
    v = s + 1
    m = s.copy()
    merge_diff(m, encode(v, s), "ignore", s)
    assert not m.any()
    with pytest.raises(ValueError, match="needs the snapshot"):
        merge_diff(m, encode(v, s), "overwrite", None)


def test_merge_touches_only_changed_elements() -> None:
    s = np.zeros(2 * PAGE_SIZE // 8)
    m = s.copy()
    m[1] = -0.0  # a local change on a dirty page, same page as the worker's write
    m[2] = np.nan
    v = s.copy()
    v[0] = 5.0
    merge_diff(m, encode(v, s), "sum", s)
    assert m[0] == 5.0 and np.signbit(m[1]) and np.isnan(m[2])


@pytest.mark.parametrize(("op", "dtype"), [("sum", "?"), ("max", "c16"), ("sum", [("a", "i4")]), ("xor", "O")])
def test_ops_without_meaning_for_the_dtype_are_refused(op: str, dtype: object) -> None:
    with pytest.raises(TypeError):
        identity(MergeOp(op), np.dtype(dtype))


def test_mismatched_diff_is_rejected_before_merging() -> None:
    a = np.zeros(1000, "i4")
    v = a.copy()
    v[0] = 1
    d = encode(v, a)
    for target in (np.zeros(1000, "u4"), np.zeros(999, "i4"), np.zeros((10, 100), "i4")):
        with pytest.raises(ValueError, match="does not match"):
            merge_diff(target, d, "sum", target)
    with pytest.raises(ValueError, match="snapshot has"):
        merge_diff(a.copy(), d, "sum", np.zeros(10, "i4"))


def test_identities() -> None:
    assert identity(MergeOp.MAX, np.dtype("i2")) == -32768
    assert identity(MergeOp.MIN, np.dtype("f4")) == np.inf
    assert identity(MergeOp.PRODUCT, np.dtype("u1")) == 1
    assert identity(MergeOp.MAX, np.dtype("?")) == np.False_
    with pytest.raises(ValueError, match="no identity"):
        identity(MergeOp.OVERWRITE, np.dtype("f8"))
