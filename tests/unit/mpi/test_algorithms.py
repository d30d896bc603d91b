"""Collective schedules, run by an in-memory simulator with the executor's exact semantics."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import granny.mpi.algorithms as A
from granny.mpi.algorithms import Schedule, Xfer

Op = Callable[[Any, Any], Any]


class Deadlock(AssertionError):
    pass


def simulate(scheds: Sequence[Schedule], work: list[list[Any]], op: Op | None = None,
             hosts: Sequence[int] | None = None, sendbufs: list[list[Any]] | None = None,
             same_blocks: bool = True, knows: list[set[int]] | None = None) -> int:
    """Run every rank's schedule; mutate ``work`` in place; return the number of cross-host messages.

    Sends of a round snapshot their blocks at the round start (from ``sendbufs`` when given, as for
    alltoall); receives complete in listed order from FIFO mailboxes per ordered pair. ``knows``
    (filled in if given) is, per rank, the set of ranks whose start it causally depends on.
    """
    n = len(scheds)
    mail: dict[tuple[int, int], deque[tuple[tuple[int, ...], list[Any], set[int]]]] = {}
    pos = [0] * n          # current round
    posted = [False] * n   # sends of the current round posted
    got = [0] * n          # receives of the current round completed
    cross = 0
    know = [{r} for r in range(n)]
    for r, sched in enumerate(scheds):
        for rnd in sched:
            assert rnd, "empty round"
            for kind in (True, False):
                peers = [x.peer for x in rnd if x.send is kind]
                assert len(peers) == len(set(peers)), f"rank {r}: two messages with one peer in a round"
            for x in rnd:
                assert 0 <= x.peer < n and x.peer != r

    def idx(r: int, blocks: tuple[int, ...], buf: list[Any]) -> list[int]:
        return list(blocks) if blocks else list(range(len(buf)))

    while True:
        progress = False
        for r in range(n):
            while pos[r] < len(scheds[r]):
                rnd = scheds[r][pos[r]]
                if not posted[r]:
                    src = sendbufs[r] if sendbufs is not None else work[r]
                    for x in (x for x in rnd if x.send):
                        data = [src[b] for b in idx(r, x.blocks, src)]
                        mail.setdefault((r, x.peer), deque()).append((x.blocks, data, set(know[r])))
                        if hosts is not None and hosts[r] != hosts[x.peer]:
                            cross += 1
                    posted[r] = progress = True
                recvs = [x for x in rnd if not x.send]
                while got[r] < len(recvs):
                    x = recvs[got[r]]
                    q = mail.get((x.peer, r))
                    if not q:
                        break
                    blocks, data, seen = q.popleft()
                    know[r] |= seen
                    targets = idx(r, x.blocks, work[r])
                    if same_blocks:
                        assert blocks == x.blocks, f"{x.peer}->{r}: sent {blocks}, expected {x.blocks}"
                    assert len(data) == len(targets)
                    for b, value in zip(targets, data, strict=True):
                        work[r][b] = _combine(op, x, value, work[r][b])
                    for b in x.also_reduce:
                        assert len(data) == 1
                        work[r][b] = _combine(op, x, data[0], work[r][b], force=True)
                    got[r] += 1
                    progress = True
                if got[r] < len(recvs):
                    break
                pos[r], posted[r], got[r] = pos[r] + 1, False, 0
        if all(pos[r] == len(scheds[r]) for r in range(n)):
            break
        if not progress:
            raise Deadlock(f"stuck at rounds {pos}")
    assert all(not q for q in mail.values()), "unreceived messages"
    if knows is not None:
        knows[:] = know
    return cross


def _combine(op: Op | None, x: Xfer, value: Any, cur: Any, force: bool = False) -> Any:
    if not (x.reduce or force):
        return value
    assert op is not None
    return op(value, cur) if x.left else op(cur, value)


def add(a: Any, b: Any) -> Any:
    return a + b


def concat(a: str, b: str) -> str:  # associative, not commutative
    return a + b


def tok(r: int) -> str:
    return f"<{r}>"


def n_hosts(hosts: Sequence[int]) -> int:
    return len(set(hosts))


@st.composite
def layouts(draw: st.DrawFn) -> tuple[int, list[int], int]:
    size = draw(st.integers(1, 12))
    nh = draw(st.integers(1, size))
    hosts = draw(st.lists(st.integers(0, nh - 1), min_size=size, max_size=size))
    root = draw(st.integers(0, size - 1))
    return size, hosts, root


ints = st.lists(st.integers(-1000, 1000), min_size=12, max_size=12)
SETTINGS = settings(max_examples=150, deadline=None)


@SETTINGS
@given(layouts())
def test_barrier(layout: tuple[int, list[int], int]) -> None:
    size, hosts, _ = layout
    scheds = [A.barrier(r, size, hosts) for r in range(size)]
    knows: list[set[int]] = []
    cross = simulate(scheds, [[] for _ in range(size)], hosts=hosts, knows=knows)
    h = n_hosts(hosts)
    assert cross == (h * math.ceil(math.log2(h)) if h > 1 else 0)
    # Nobody leaves before everybody arrived: each rank's end depends on every rank's start.
    assert all(k == set(range(size)) for k in knows)


@SETTINGS
@given(layouts(), ints)
def test_bcast(layout: tuple[int, list[int], int], data: list[int]) -> None:
    size, hosts, root = layout
    work = [[data[0]] if r == root else [None] for r in range(size)]
    cross = simulate([A.bcast(r, size, root, hosts) for r in range(size)], work, hosts=hosts)
    assert all(w == [data[0]] for w in work)
    assert cross == n_hosts(hosts) - 1


@SETTINGS
@given(layouts(), ints, st.booleans())
def test_reduce(layout: tuple[int, list[int], int], data: list[int], commutative: bool) -> None:
    size, hosts, root = layout
    work: list[list[Any]] = [[data[r]] for r in range(size)]
    cross = simulate([A.reduce(r, size, root, hosts, commutative) for r in range(size)], work, add, hosts)
    assert work[root] == [sum(data[:size])]
    if commutative:
        assert cross == n_hosts(hosts) - 1
    strs: list[list[Any]] = [[tok(r)] for r in range(size)]
    simulate([A.reduce(r, size, root, hosts, False) for r in range(size)], strs, concat)
    assert strs[root] == ["".join(map(tok, range(size)))]


def _doubling_msgs(h: int) -> int:
    p2 = 1 << (h.bit_length() - 1)
    return 2 * (h - p2) + p2 * int(math.log2(p2))


@SETTINGS
@given(layouts(), ints)
def test_allreduce_small(layout: tuple[int, list[int], int], data: list[int]) -> None:
    size, hosts, _ = layout
    work: list[list[Any]] = [[data[r]] for r in range(size)]
    cross = simulate([A.allreduce_small(r, size, hosts, True) for r in range(size)], work, add, hosts)
    assert all(w == [sum(data[:size])] for w in work)
    assert cross == _doubling_msgs(n_hosts(hosts))
    strs: list[list[Any]] = [[tok(r)] for r in range(size)]
    simulate([A.allreduce_small(r, size, hosts, False) for r in range(size)], strs, concat)
    assert all(w == ["".join(map(tok, range(size)))] for w in strs)


@SETTINGS
@given(layouts(), ints)
def test_allreduce_large(layout: tuple[int, list[int], int], data: list[int]) -> None:
    size, hosts, _ = layout
    # P = size blocks; rank r's block j holds data[r] * (j + 1).
    work: list[list[Any]] = [[data[r] * (j + 1) for j in range(size)] for r in range(size)]
    simulate([A.allreduce_large(r, size, hosts) for r in range(size)], work, add, hosts)
    total = sum(data[:size])
    assert all(w == [total * (j + 1) for j in range(size)] for w in work)


def test_allreduce_large_two_ranks_is_two_rounds() -> None:
    for r in range(2):
        s = A.allreduce_large(r, 2, [0, 1])
        assert s == ((Xfer(1 - r, True, (1 - r,)), Xfer(1 - r, False, (r,), True, 1 - r < r)),
                     (Xfer(1 - r, True, (r,)), Xfer(1 - r, False, (1 - r,))))


@SETTINGS
@given(layouts(), ints, st.booleans())
def test_reduce_scatter_block(layout: tuple[int, list[int], int], data: list[int], commutative: bool) -> None:
    size, hosts, _ = layout
    work: list[list[Any]] = [[data[r] + 7 * j for j in range(size)] for r in range(size)]
    simulate([A.reduce_scatter_block(r, size, hosts, commutative) for r in range(size)], work, add, hosts)
    assert all(work[r][r] == sum(data[:size]) + 7 * r * size for r in range(size))
    if not commutative:
        strs: list[list[Any]] = [[f"{r}.{j};" for j in range(size)] for r in range(size)]
        simulate([A.reduce_scatter_block(r, size, hosts, False) for r in range(size)], strs, concat)
        assert all(strs[r][r] == "".join(f"{q}.{r};" for q in range(size)) for r in range(size))


@SETTINGS
@given(layouts())
def test_allgather(layout: tuple[int, list[int], int]) -> None:
    size, hosts, _ = layout
    work: list[list[Any]] = [[tok(r) if j == r else None for j in range(size)] for r in range(size)]
    cross = simulate([A.allgather(r, size, hosts) for r in range(size)], work, hosts=hosts)
    assert all(w == [tok(j) for j in range(size)] for w in work)
    h = n_hosts(hosts)
    assert cross == h * (h - 1)


@SETTINGS
@given(layouts())
def test_gather_scatter(layout: tuple[int, list[int], int]) -> None:
    size, hosts, root = layout
    work: list[list[Any]] = [[tok(r) if j == r else None for j in range(size)] for r in range(size)]
    cross = simulate([A.gather(r, size, root, hosts) for r in range(size)], work, hosts=hosts)
    assert work[root] == [tok(j) for j in range(size)]
    assert cross == n_hosts(hosts) - 1
    work = [[tok(j) if r == root else None for j in range(size)] for r in range(size)]
    cross = simulate([A.scatter(r, size, root, hosts) for r in range(size)], work, hosts=hosts)
    assert all(work[r][r] == tok(r) for r in range(size))
    assert cross == n_hosts(hosts) - 1


@SETTINGS
@given(st.integers(1, 12))
def test_alltoall(size: int) -> None:
    send = [[(r, j) for j in range(size)] for r in range(size)]
    recv: list[list[Any]] = [[(r, r) if j == r else None for j in range(size)] for r in range(size)]
    simulate([A.alltoall(r, size) for r in range(size)], recv, sendbufs=send, same_blocks=False)
    assert all(recv[r] == [(j, r) for j in range(size)] for r in range(size))


@SETTINGS
@given(st.integers(1, 12), st.booleans())
def test_scan_exscan(size: int, exclusive: bool) -> None:
    fn = A.exscan if exclusive else A.scan
    work: list[list[Any]] = [[None if exclusive else tok(r), tok(r)] for r in range(size)]
    simulate([fn(r, size) for r in range(size)], work, concat, same_blocks=False)
    for r in range(size):
        want = "".join(map(tok, range(r if exclusive else r + 1)))
        assert work[r][0] == (None if exclusive and r == 0 else want)
    ints_work: list[list[Any]] = [[0 if exclusive else r + 1, r + 1] for r in range(size)]
    simulate([fn(r, size) for r in range(size)], ints_work, add, same_blocks=False)
    assert [w[0] for w in ints_work][1:] == [sum(range(1, r + (1 if exclusive else 2))) for r in range(1, size)]


def test_scan_uses_log_rounds() -> None:
    assert max(len(A.scan(r, 12)) for r in range(12)) == 4


def test_simulator_detects_deadlock() -> None:
    scheds = [((Xfer(1, False),), (Xfer(1, True),)), ((Xfer(0, False),), (Xfer(0, True),))]
    with pytest.raises(Deadlock):
        simulate(scheds, [[], []])


def test_block_bounds_and_choice() -> None:
    assert A.block_bounds(10, 3) == [(0, 4), (4, 7), (7, 10)]
    assert A.block_bounds(2, 4) == [(0, 1), (1, 2), (2, 2), (2, 2)]
    assert A.choose_allreduce(1 << 20, 8, True) == "large"
    assert A.choose_allreduce(1 << 20, 8, False) == "small"
    assert A.choose_allreduce(100, 8, True) == "small"
    assert A.choose_allreduce(1 << 20, 1, True) == "small"


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        A.bcast(0, 2, 5, [0, 0])
    with pytest.raises(ValueError):
        A.barrier(0, 3, [0, 0])
