"""Collective algorithms as pure data: per rank, which blocks go to or come from which peer, per round.

Theory of operation
- A ``Schedule`` is a tuple of rounds; a round is a tuple of ``Xfer``. The executor runs a rank's rounds
  in order. At the start of a round it posts every send of the round with a snapshot of the listed
  blocks as they are then; then it completes the round's receives in the listed order, storing
  (overwriting) or reducing the received data into the listed blocks. Messages between an ordered
  pair of ranks are matched in FIFO order; no schedule sends twice to one peer in one round.
- Blocks index the rank's working buffer: ``blocks=()`` is the whole buffer. Block ``j`` is the same
  piece on every rank (rank ``j``'s piece for gather/scatter/allgather/reduce-scatter, ``block_bounds``
  ranges for allreduce_large), so a message's sender and receiver list the same block tuple. Alltoall is
  the exception: a send lists blocks of the send buffer (block ``j`` goes to rank ``j``), a receive
  lists blocks of the receive buffer (block ``i`` comes from rank ``i``).
- Reductions: ``reduce=True`` combines ``acc = recv op acc`` when ``left`` (the received data comes
  from lower ranks) and ``acc = acc op recv`` otherwise. Non-commutative schedules keep every
  combination between contiguous rank ranges in rank order, so the result is ``x0 op ... op x(n-1)``.
- Scan/exscan use the one extension, ``also_reduce``: the working buffer has two full-size blocks,
  0 = the result and 1 = the running total of an aligned range of ranks (the "partial"). A receive
  lists ``blocks=(0,)`` or ``(1,)`` and may name ``also_reduce=(1,)``: the same received data is then
  also reduced (same ``left`` flag) into block 1. See ``scan``.
- Locality: ranks with the same ``hosts`` value share memory. The host leader is its lowest rank (for
  rooted collectives the root leads its own host). Across hosts only leaders talk, so a bcast sends
  exactly ``#hosts - 1`` cross-host messages.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..tunables import ALLREDUCE_LARGE_BYTES


@dataclass(frozen=True, slots=True)
class Xfer:
    peer: int                     # rank in the communicator
    send: bool                    # True: send to peer; False: receive from peer
    blocks: tuple[int, ...] = ()  # which blocks of the working buffer; () = the whole buffer
    reduce: bool = False          # receive only: combine into the blocks with the op, else store
    left: bool = True             # receive+reduce only: acc = recv op acc (recv from lower ranks)
    also_reduce: tuple[int, ...] = ()  # receive only (scan): also reduce the received data into these


Round = tuple[Xfer, ...]
Schedule = tuple[Round, ...]



def block_bounds(count: int, parts: int) -> list[tuple[int, int]]:
    """Element ranges of ``parts`` near-equal blocks of ``count`` elements, the first ones one larger."""
    q, r = divmod(count, parts)
    out, lo = [], 0
    for i in range(parts):
        hi = lo + q + (i < r)
        out.append((lo, hi))
        lo = hi
    return out


def choose_allreduce(nbytes: int, size: int, commutative: bool) -> str:
    """"large" (reduce-scatter + allgather: each rank moves ~2x the data, whatever the size) from 64 KiB
    up for commutative ops (for 2 ranks: two half-size rounds instead of one full-size one); "small"
    (latency-optimal recursive doubling, log2(size) full-size messages) otherwise. Below 64 KiB a
    message costs about its latency, so fewer rounds win."""
    return "large" if size >= 2 and commutative and nbytes >= ALLREDUCE_LARGE_BYTES else "small"


# -- helpers ------------------------------------------------------------------------------------------


def _check(rank: int, size: int, hosts: Sequence[int] | None, root: int = 0) -> None:
    if size < 1 or not 0 <= rank < size or not 0 <= root < size:
        raise ValueError(f"bad rank {rank} / root {root} for a communicator of size {size}")
    if hosts is not None and len(hosts) != size:
        raise ValueError(f"hosts has {len(hosts)} entries for a communicator of size {size}")


def _groups(size: int, hosts: Sequence[int], root: int | None = None) -> list[list[int]]:
    """Ranks per host, leader first (the root on its host, else the lowest rank), the others ascending.
    Hosts are ordered by leader: the root's host first, then by lowest rank."""
    by: dict[int, list[int]] = {}
    for r in range(size):
        by.setdefault(hosts[r], []).append(r)
    groups = sorted(by.values(), key=lambda g: g[0])
    if root is not None:
        g = next(g for g in groups if root in g)
        groups.remove(g)
        groups.insert(0, [root] + [r for r in g if r != root])
    return groups


def _my_group(groups: list[list[int]], rank: int) -> list[int]:
    return next(g for g in groups if rank in g)


def _pack(rounds: list[list[Xfer]]) -> Schedule:
    return tuple(tuple(r) for r in rounds if r)


def _tree(v: int, n: int) -> tuple[int | None, list[int]]:
    """Binomial tree over virtual ranks 0..n-1 rooted at 0: (parent, children by increasing subtree)."""
    low = v & -v if v else 1 << n.bit_length()
    parent = v - low if v else None
    children, mask = [], 1
    while mask < low and v + mask < n:
        children.append(v + mask)
        mask <<= 1
    return parent, children


def _bcast_tree(order: list[int], rank: int, blocks: tuple[int, ...] = ()) -> tuple[list[Xfer], list[Xfer]]:
    """Binomial bcast from order[0] over the ranks in ``order``: (receive round, send round)."""
    v = order.index(rank)
    parent, children = _tree(v, len(order))
    recv = [Xfer(order[parent], False, blocks)] if parent is not None else []
    return recv, [Xfer(order[c], True, blocks) for c in reversed(children)]  # biggest subtree first


def _reduce_tree(order: list[int], rank: int) -> tuple[list[Xfer], list[Xfer]]:
    """Binomial reduce to order[0] (commutative ops): (receive round, send round)."""
    v = order.index(rank)
    parent, children = _tree(v, len(order))
    recv = [Xfer(order[c], False, (), True, order[c] < rank) for c in children]
    return recv, ([Xfer(order[parent], True)] if parent is not None else [])


# -- collectives ---------------------------------------------------------------------------------------


def barrier(rank: int, size: int, hosts: Sequence[int]) -> Schedule:
    """Members notify their leader; leaders run a dissemination barrier; leaders release members."""
    _check(rank, size, hosts)
    groups = _groups(size, hosts)
    group, leaders = _my_group(groups, rank), [g[0] for g in groups]
    if rank != group[0]:
        return _pack([[Xfer(group[0], True)], [Xfer(group[0], False)]])
    rounds = [[Xfer(m, False) for m in group[1:]]]
    i, n, dist = leaders.index(rank), len(leaders), 1
    while dist < n:
        rounds.append([Xfer(leaders[(i + dist) % n], True), Xfer(leaders[(i - dist) % n], False)])
        dist <<= 1
    rounds.append([Xfer(m, True) for m in group[1:]])
    return _pack(rounds)


def bcast(rank: int, size: int, root: int, hosts: Sequence[int]) -> Schedule:
    """Binomial tree across host leaders (root first), then a binomial tree inside each host."""
    _check(rank, size, hosts, root)
    groups = _groups(size, hosts, root)
    group = _my_group(groups, rank)
    recv, send = _bcast_tree(group, rank)
    if rank == group[0]:
        recv, inter = _bcast_tree([g[0] for g in groups], rank)
        send = inter + send  # cross-host first: the other hosts' trees wait on it
    return _pack([recv, send])


def reduce(rank: int, size: int, root: int, hosts: Sequence[int], commutative: bool) -> Schedule:
    """Result (whole buffer) on ``root``. Commutative: binomial inside hosts, then across leaders.
    Otherwise an order-preserving binomial tree over rank ranges to rank 0, then 0 sends to root."""
    _check(rank, size, hosts, root)
    if not commutative:
        rounds = _ordered_reduce(rank, size)
        if root != 0 and rank == 0:
            rounds.append([Xfer(root, True)])
        elif root != 0 and rank == root:
            rounds.append([Xfer(0, False)])
        return _pack(rounds)
    groups = _groups(size, hosts, root)
    group = _my_group(groups, rank)
    recv, send = _reduce_tree(group, rank)
    if rank == group[0]:
        inter_recv, send = _reduce_tree([g[0] for g in groups], rank)
        recv = recv + inter_recv
    return _pack([recv, send])


def _ordered_reduce(rank: int, size: int) -> list[list[Xfer]]:
    """Binomial reduce to rank 0 where rank r's accumulator covers ranks [r, r + 2^k): children's
    ranges lie to the right, so acc = acc op recv (left=False)."""
    parent, children = _tree(rank, size)
    rounds = [[Xfer(c, False, (), True, False) for c in children]]
    if parent is not None:
        rounds.append([Xfer(parent, True)])
    return rounds


def allreduce_small(rank: int, size: int, hosts: Sequence[int], commutative: bool) -> Schedule:
    """Commutative: reduce to host leaders, recursive doubling among leaders, bcast inside hosts.
    Non-commutative: ordered reduce to rank 0, then bcast."""
    _check(rank, size, hosts)
    if not commutative:
        return _pack(_ordered_reduce(rank, size)) + bcast(rank, size, 0, hosts)
    groups = _groups(size, hosts)
    group = _my_group(groups, rank)
    up_recv, up_send = _reduce_tree(group, rank)
    down_recv, down_send = _bcast_tree(group, rank)
    rounds = [up_recv, up_send]
    if rank == group[0]:
        rounds += _recursive_doubling([g[0] for g in groups], rank)
    return _pack(rounds + [down_recv, down_send])


def _recursive_doubling(ranks: list[int], rank: int) -> list[list[Xfer]]:
    """Allreduce of whole buffers among ``ranks`` (ascending). With n not a power of two, the first
    2*rem ranks pair up: evens fold into odds before, and get the result back after."""
    i, n = ranks.index(rank), len(ranks)
    p2 = 1 << (n.bit_length() - 1)
    rem = n - p2
    rounds: list[list[Xfer]] = []
    if i < 2 * rem and i % 2 == 0:
        return [[Xfer(ranks[i + 1], True)], [Xfer(ranks[i + 1], False)]]
    if i < 2 * rem:
        rounds.append([Xfer(ranks[i - 1], False, (), True, True)])
    new = i // 2 if i < 2 * rem else i - rem
    mask = 1
    while mask < p2:
        peer_new = new ^ mask
        peer = ranks[peer_new * 2 + 1 if peer_new < rem else peer_new + rem]
        rounds.append([Xfer(peer, True), Xfer(peer, False, (), True, peer < rank)])
        mask <<= 1
    if i < 2 * rem:
        rounds.append([Xfer(ranks[i - 1], True)])
    return rounds


def _ring(size: int, hosts: Sequence[int]) -> list[int]:
    """Ranks in ring order, each host's ranks adjacent so only #hosts ring edges cross hosts."""
    return [r for g in _groups(size, hosts) for r in g]


def _reduce_scatter_ring(rank: int, order: list[int]) -> list[list[Xfer]]:
    """Ring reduce-scatter over P=size blocks; rank ends with block ``rank`` fully reduced."""
    n, p = len(order), order.index(rank)
    nxt, prv = order[(p + 1) % n], order[(p - 1) % n]
    return [[Xfer(nxt, True, (order[(p - s - 1) % n],)),
             Xfer(prv, False, (order[(p - s - 2) % n],), True, prv < rank)] for s in range(n - 1)]


def _allgather_ring(rank: int, order: list[int], groups: list[list[int]] | None = None) -> list[list[Xfer]]:
    """Ring allgather; position p starts with piece order[p] (or the blocks of group p)."""
    n, p = len(order), order.index(rank)
    piece = [tuple(g) for g in groups] if groups else [(r,) for r in order]
    nxt, prv = order[(p + 1) % n], order[(p - 1) % n]
    return [[Xfer(nxt, True, piece[(p - s) % n]), Xfer(prv, False, piece[(p - s - 1) % n])]
            for s in range(n - 1)]


def allreduce_large(rank: int, size: int, hosts: Sequence[int]) -> Schedule:
    """Commutative ops: ring reduce-scatter then ring allgather over P=size blocks (``block_bounds``).
    Two ranks: 2 rounds (swap halves and reduce, then swap the reduced halves)."""
    _check(rank, size, hosts)
    order = _ring(size, hosts)
    return _pack(_reduce_scatter_ring(rank, order) + _allgather_ring(rank, order))


def reduce_scatter_block(rank: int, size: int, hosts: Sequence[int], commutative: bool = True) -> Schedule:
    """P=size blocks; rank r ends with block r reduced. Non-commutative: ordered reduce, then scatter."""
    _check(rank, size, hosts)
    if commutative:
        return _pack(_reduce_scatter_ring(rank, _ring(size, hosts)))
    return _pack(_ordered_reduce(rank, size)) + scatter(rank, size, 0, hosts)


def allgather(rank: int, size: int, hosts: Sequence[int]) -> Schedule:
    """Block j = rank j's piece. Members hand their piece to the leader, leaders ring-allgather their
    hosts' pieces, leaders bcast the whole buffer inside the host."""
    _check(rank, size, hosts)
    groups = _groups(size, hosts)
    group = _my_group(groups, rank)
    leader = group[0]
    down_recv, down_send = _bcast_tree(group, rank)
    if rank != leader:
        return _pack([[Xfer(leader, True, (rank,))], down_recv, down_send])
    rounds = [[Xfer(m, False, (m,)) for m in group[1:]]]
    rounds += _allgather_ring(rank, [g[0] for g in groups], [sorted(g) for g in groups])
    return _pack(rounds + [down_send])


def gather(rank: int, size: int, root: int, hosts: Sequence[int]) -> Schedule:
    """Block j = rank j's piece, all on ``root``. Members send to their leader; leaders send their
    host's blocks to the root in one message."""
    _check(rank, size, hosts, root)
    groups = _groups(size, hosts, root)
    group = _my_group(groups, rank)
    if rank != group[0]:
        return _pack([[Xfer(group[0], True, (rank,))]])
    rounds = [[Xfer(m, False, (m,)) for m in group[1:]]]
    if rank == root:
        rounds[0] += [Xfer(g[0], False, tuple(sorted(g))) for g in groups[1:]]
    else:
        rounds.append([Xfer(root, True, tuple(sorted(group)))])
    return _pack(rounds)


def scatter(rank: int, size: int, root: int, hosts: Sequence[int]) -> Schedule:
    """The reverse of ``gather``: root sends each leader its host's blocks, leaders pass pieces on."""
    _check(rank, size, hosts, root)
    groups = _groups(size, hosts, root)
    group = _my_group(groups, rank)
    if rank != group[0]:
        return _pack([[Xfer(group[0], False, (rank,))]])
    to_members = [Xfer(m, True, (m,)) for m in group[1:]]
    if rank == root:
        return _pack([[Xfer(g[0], True, tuple(sorted(g))) for g in groups[1:]] + to_members])
    return _pack([[Xfer(root, False, tuple(sorted(group)))], to_members])


def alltoall(rank: int, size: int) -> Schedule:
    """Pairwise exchange: in step s send block (r+s) to rank r+s and receive block (r-s) from r-s.
    Send blocks index the send buffer, receive blocks the receive buffer; block ``rank`` is copied
    locally by the executor."""
    _check(rank, size, None)
    return _pack([[Xfer((rank + s) % size, True, ((rank + s) % size,)),
                   Xfer((rank - s) % size, False, ((rank - s) % size,))] for s in range(1, size)])


def _scan(rank: int, size: int, exclusive: bool) -> Schedule:
    rounds: list[list[Xfer]] = []
    have_result = not exclusive
    mask = 1
    while mask < size:
        peer = rank ^ mask
        if peer < size:
            if peer < rank:
                # The peer's partial covers the aligned ranks just below ours: it goes on the left of
                # both the result and the partial. An exscan's first one *is* the result.
                recv = Xfer(peer, False, (0,), have_result, True, (1,))
                have_result = True
            else:
                recv = Xfer(peer, False, (1,), True, False)
            rounds.append([Xfer(peer, True, (1,)), recv])
        mask <<= 1
    return _pack(rounds)


def scan(rank: int, size: int) -> Schedule:
    """Inclusive prefix reduction by recursive doubling (MPICH's algorithm), order-preserving.

    Working buffer: 2 blocks of the full message. The executor starts with block 0 (result) = block 1
    (partial) = this rank's contribution; every round sends block 1 (the partial) to the peer and
    receives the peer's partial, which is reduced into block 0 and also into block 1 when the peer is
    lower (``also_reduce=(1,)``, left), or into block 1 only when it is higher (right). At the end
    block 0 is ``x0 op ... op x(rank)``.
    """
    _check(rank, size, None)
    return _scan(rank, size, exclusive=False)


def exscan(rank: int, size: int) -> Schedule:
    """Exclusive prefix reduction: as ``scan``, but block 0 starts undefined and the first receive
    from a lower peer *stores* into it (``reduce=False``; ``also_reduce`` still reduces into block 1).
    At the end block 0 is ``x0 op ... op x(rank-1)``; rank 0 never writes block 0 (its result is
    undefined in MPI; mpi4py's lowercase exscan returns None there)."""
    _check(rank, size, None)
    return _scan(rank, size, exclusive=True)
