"""Small collectives of a communicator that spans hosts: the per-host legs through the host's region.

Theory of operation
- The ranks of the communicator on one host share a region (shmregion.py), set up on the first
  collective as for a one-host communicator. Across hosts the leader scheme of algorithms.py stays:
  only host leaders exchange messages, over the schedules of algorithms.py run among the leaders.
- ``Barrier``: every local rank posts; the leader waits for them, runs a dissemination barrier with
  the other leaders, then posts again (the release) for its members.
- ``Allreduce`` and ``Reduce`` (up to a slot): every local rank publishes its part; the host's folder
  (the leader; for Reduce the root on its own host) folds them in local rank order, the folders reduce
  across hosts (recursive doubling, or a binomial tree to the root), and for Allreduce each leader
  publishes the result for its members. Non-commutative ops take an order-keeping schedule among the
  leaders (ordered by their hosts' lowest ranks), which gives ``x0 op ... op x(n-1)`` only when every
  host holds one contiguous range of ranks; otherwise they return "not handled".
- ``Allreduce`` above a slot, when every host holds as many ranks of the communicator (and, for a
  non-commutative op, contiguous ranges): hierarchical, see ``_allreduce_large``; the ranks of a host
  reach each other's buffers with ``process_vm_readv`` and use the region only to synchronise.
- ``Bcast`` (up to a slot): the root's value travels down a binomial tree of leaders (the root leads its
  host); each leader then publishes it for its members.
- ``Gather`` / ``Scatter`` (a block up to a slot; Scatter: a host's blocks together): members publish
  their blocks and the host's folder (the root, or the leader) sends them in one message to the root;
  the reverse for Scatter, the folder publishing its host's blocks packed in rank order.
- ``Allgather`` (the whole result up to a slot): the leader collects its host's blocks from the slots,
  ring-allgathers with the other leaders, and publishes the whole result.
- Everything else (larger messages of the other collectives, whose point-to-point legs inside a host
  are single-copy already, the v-forms, Alltoall, the pickled forms) returns "not handled" and takes
  the general schedules; the choice depends only on what every rank agrees on (sizes, the op,
  the placement), as in shmcoll.py. A rank alone on its host has no region and takes part in the
  leaders' exchange only.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import MpiError
from . import algorithms as alg
from .buffers import is_in_place, parse_buffer
from .execute import BufStore, ObjStore, reduce_to, run_buffers, run_objects
from .ops import Op
from .shm import buffer_address, cma_available, cma_read
from .shmregion import DATA_OFF, LINE, SLOT, Mapping, slot_offset

if TYPE_CHECKING:
    from .collcomm import CollComm as Comm


ERR_TRUNCATE = 15
_cma_ok: list[bool] = []


def _cma() -> bool:
    if not _cma_ok:
        _cma_ok.append(cma_available())
    return _cma_ok[0]


def _u8(mem: memoryview) -> np.ndarray:
    return np.frombuffer(mem, dtype=np.uint8) if mem.nbytes else np.empty(0, dtype=np.uint8)



def fold_pieces(pids: list[int], addrs: list[list[int]], src: np.ndarray, dst: np.ndarray, lo: int, hi: int,
                me: int, op: Op) -> np.ndarray:
    """This rank's piece ``[lo, hi)`` of a reduce-scatter on one host: every local rank's elements there,
    read straight from its memory (``addrs[k][0]``, its send buffer) and folded in rank order into
    ``dst[lo:hi]``, which is returned."""
    isz = dst.dtype.itemsize
    acc = dst[lo:hi]
    own = src[lo:hi].copy() if src is dst else src[lo:hi]  # IN_PLACE: acc overwrites it
    tmp = np.empty(hi - lo, dst.dtype)
    for k in range(len(pids)):
        if k == me:
            piece = own
        else:
            cma_read(pids[k], addrs[k][0] + lo * isz, tmp.view(np.uint8).data)
            piece = tmp
        if k == 0:
            acc[...] = piece
        else:
            reduce_to(op, acc, piece, acc)
    return acc


def copy_pieces(pids: list[int], addrs: list[list[int]], dst: np.ndarray, bounds: list[tuple[int, int]],
                me: int) -> None:
    """After :func:`fold_pieces` on every local rank: copy the other ranks' finished pieces out of their
    outputs (``addrs[k][1]``) into ``dst``."""
    isz = dst.dtype.itemsize
    for k, (a, b) in enumerate(bounds):
        if k != me and b > a:
            cma_read(pids[k], addrs[k][1] + a * isz, dst[a:b].view(np.uint8).data)

class SpanColl:
    """The host legs of a multi-host communicator (see the module docstring). ``reg`` is None when this
    rank is alone on its host."""

    def __init__(self, comm: Comm, mapping: Mapping | None, reg: Any) -> None:
        self.mapping, self.reg = mapping, reg
        size, hosts, me = comm._size, comm._hosts, comm._rank
        self.local = [r for r in range(size) if hosts[r] == hosts[me]]  # comm ranks on this host, ascending
        self.li = self.local.index(me)
        self.n = len(self.local)
        groups = alg._groups(size, hosts)
        self.leaders = [g[0] for g in groups]
        self.leader = self.local[0] == me
        self.seq = 0
        self.last_write = [0, 0]  # per slot parity: the last collective in which this rank wrote it
        self.me = me
        members = comm._members
        self.leader_worlds = [members[r] for r in self.leaders]
        # Leaders fold their host's parts in rank order; across hosts an order-keeping schedule then
        # gives x0 op ... op x(n-1) only if every host holds one contiguous range of ranks.
        self.contiguous = all(g == list(range(g[0], g[0] + len(g))) for g in groups)
        self.max_local = max(len(g) for g in groups)
        # Large Allreduce: local rank i of every host (hosts by lowest rank) reduces piece i across hosts
        self.peers = [g[self.li] for g in groups] if all(len(g) == self.n for g in groups) else None
        self.scheds: dict[tuple[Any, ...], Any] = {}
        if self.leader:
            i, nl = self.leaders.index(me), len(self.leaders)
            self.barrier_sched = alg.barrier(i, nl, list(range(nl)))
            self.allreduce_sched = alg.allreduce_small(i, nl, list(range(nl)), True)
            self.allreduce_ordered = alg.allreduce_small(i, nl, list(range(nl)), False)
        self.engine, self.cctx = comm._engine, comm._cctx

    def close(self) -> None:
        if self.reg is not None:
            self.reg.release()
        if self.mapping is not None:
            self.mapping.close()

    def _view(self, s: int, who: int, nbytes: int) -> memoryview:
        assert self.mapping is not None
        off = slot_offset(self.n, SLOT, who, s)
        return self.mapping.mem[off:off + nbytes]

    def _next(self) -> int:
        self.seq += 1
        return self.seq

    def _put(self, s: int, length: int, data: Any) -> None:
        """``reg.put``, without its wait when nobody can still be reading this rank's slot ``s & 1``.

        The region's rule (shmcoll.py) is that a rank writes slot ``s & 1`` once every rank is done
        with collective ``s - 2``. What matters is only the last collective in which *this* rank wrote
        that slot: if every rank is done with it, the slot is free now. After a Barrier (whose two
        sequence numbers carry no data) that holds at once, where the rule would make a Bcast root or
        a Scatter folder wait until its members have woken up from the Barrier before publishing, and
        they then sleep again until it does."""
        reg, p = self.reg, s & 1
        assert reg is not None and self.mapping is not None
        need, self.last_write[p] = self.last_write[p], s
        mem = self.mapping.mem
        if need and not all(struct.unpack_from("<Q", mem, LINE * (1 + i) + 8)[0] >= need for i in range(self.n)):
            reg.put(s, length, data)
            return
        off = slot_offset(self.n, SLOT, self.li, s)
        if data is not None:
            b = memoryview(data).cast("B")
            if b.nbytes > SLOT:
                raise ValueError("put: data larger than the slot")
            mem[off:off + b.nbytes] = b
        struct.pack_into("<q", mem, off - DATA_OFF, length)

    def barrier(self) -> None:
        reg = self.reg
        if reg is None:
            run_objects(self.engine, self.cctx, self.leader_worlds, self.barrier_sched, ObjStore([None]))
            return
        s1, s2 = self._next(), self._next()
        reg.post(s1)
        if self.leader:
            reg.wait_post(s1, -1)
            run_objects(self.engine, self.cctx, self.leader_worlds, self.barrier_sched, ObjStore([None]))
            reg.post(s2)
        else:
            reg.wait_post(s2, 0)
        reg.done(s2)

    def Allreduce(self, comm: Comm, sendbuf: Any, recvbuf: Any, op: Op) -> bool:
        commutative = op.Is_commutative()
        if not (commutative or self.contiguous):
            return False
        out, src = comm._in_out(sendbuf, recvbuf)
        nbytes = out.nbytes
        mine = src if src is not None else out
        reg = self.reg
        if nbytes > SLOT and reg is not None and self.peers is not None and out.shape[0] >= comm._size and _cma():
            self._allreduce_large(comm, out, mine, op, commutative)
            return True
        if nbytes == 0 or nbytes > SLOT:
            return False
        if reg is None:  # alone on this host: only the leaders' exchange
            if src is not None:
                out[...] = src
            self._leaders_allreduce(out, op, commutative)
            return True
        s1, s2 = self._next(), self._next()
        if not self.leader:
            self._put(s1, nbytes, np.ascontiguousarray(mine).view(np.uint8))
            reg.post(s1)
        try:
            if self.leader:
                self._wait_others(s1)
                self._fold_slots(s1, out, op, mine)
                self._leaders_allreduce(out, op, commutative)
                self._put(s2, nbytes, np.ascontiguousarray(out).view(np.uint8))
                reg.post(s2)
            else:
                reg.wait_post(s2, 0)
                out[...] = np.frombuffer(self._view(s2, 0, nbytes), out.dtype)
        finally:
            reg.done(s2)
        return True

    def _allreduce_large(self, comm: Comm, out: np.ndarray, mine: np.ndarray, op: Op, commutative: bool) -> None:
        """An Allreduce above a slot, hierarchically: the local ranks reduce-scatter the host's
        inputs by reading each other's memory (``process_vm_readv``, as shmcoll's large Allreduce), local
        rank i allreduces piece i with local rank i of every other host (point-to-point, all pieces at
        once: each host sends its whole sum once, where the ring over all ranks sends 1.5x that for two
        ranks per host), then the local ranks copy each other's finished pieces. The region holds the
        buffers' addresses and the three synchronisations; a last one keeps the buffers alive until
        nobody reads them. Every piece is folded in rank order (local ranks in order, then hosts in order
        of their lowest ranks), so non-commutative ops are right too when hosts hold contiguous ranges."""
        n, li, reg = self.n, self.li, self.reg
        assert reg is not None and self.peers is not None
        dst = out if out.flags.c_contiguous else np.empty_like(out)
        src = mine if mine.flags.c_contiguous else np.ascontiguousarray(mine)
        world = comm._rt.world
        pids = [world.addrs[comm._members[r]].pid for r in self.local]
        bounds = alg.block_bounds(out.shape[0], n)
        s1, s2, s3 = self._next(), self._next(), self._next()
        where = [buffer_address(src.view(np.uint8).data), buffer_address(dst.view(np.uint8).data)]
        self._put(s1, 16, np.array(where, np.uint64).view(np.uint8))
        reg.post(s1)
        try:
            reg.wait_post(s1, -1)
            addrs = [np.frombuffer(self._view(s1, k, 16), np.uint64).tolist() for k in range(n)]
            lo, hi = bounds[li]
            acc = fold_pieces(pids, addrs, src, dst, lo, hi, li, op)
            self._peers_allreduce(comm, acc, op, commutative)
            reg.post(s2)
            reg.wait_post(s2, -1)
            copy_pieces(pids, addrs, dst, bounds, li)
            reg.post(s3)
            reg.wait_post(s3, -1)
        finally:
            reg.done(s3)
        if dst is not out:
            out[...] = dst

    def _peers_allreduce(self, comm: Comm, acc: np.ndarray, op: Op, commutative: bool) -> None:
        peers = self.peers
        assert peers is not None
        npeers = len(peers)
        if npeers < 2 or acc.shape[0] == 0:
            return
        large = alg.choose_allreduce(acc.nbytes, npeers, commutative) == "large" and acc.shape[0] >= npeers
        i = peers.index(self.me)
        sched = self._cached(("peers_allreduce", large, commutative), lambda: alg.allreduce_large(
            i, npeers, list(range(npeers))) if large else alg.allreduce_small(i, npeers, list(range(npeers)),
                                                                                commutative))
        bounds = alg.block_bounds(acc.shape[0], npeers) if large else [(0, acc.shape[0])]
        run_buffers(self.engine, self.cctx, [comm._members[r] for r in peers], sched, BufStore(acc, bounds, None, op))

    def _leaders_allreduce(self, out: np.ndarray, op: Op, commutative: bool) -> None:
        store = BufStore(out, [(0, out.shape[0])], None, op)
        sched = self.allreduce_sched if commutative else self.allreduce_ordered
        run_buffers(self.engine, self.cctx, self.leader_worlds, sched, store)

    def Bcast(self, comm: Comm, buf: Any, root: int) -> bool:
        root = comm._root(root)
        arr = _u8(parse_buffer(buf, readonly=self.me == root, name="buffer").mem)
        if arr.shape[0] == 0 or arr.shape[0] > SLOT:
            return False
        groups = alg._groups(comm._size, comm._hosts, root)
        group = next(g for g in groups if self.me in g)
        if self.me == group[0]:
            order = [g[0] for g in groups]
            i = order.index(self.me)
            sched = alg.bcast(i, len(order), 0, list(range(len(order))))
            if sched:
                store = BufStore(arr, [(0, arr.shape[0])], filled=True)
                run_buffers(self.engine, self.cctx, [comm._members[r] for r in order], sched, store)
        reg = self.reg
        if reg is None:
            return True
        s = self._next()
        src = self.local.index(group[0])
        if self.me == group[0]:
            self._put(s, arr.shape[0], arr)
            reg.post(s)
        else:
            reg.wait_post(s, src)
            arr[:] = np.frombuffer(self._view(s, src, arr.shape[0]), np.uint8)
        reg.done(s)
        return True

    # --- the rooted and gathering collectives ----------------------------------------------------
    def _cached(self, key: tuple[Any, ...], make: Any) -> Any:
        got = self.scheds.get(key)
        if got is None:
            got = self.scheds[key] = make()
        return got

    def _rooted_leaders(self, comm: Comm, root: int) -> tuple[list[int], int]:
        """Host leaders of a rooted collective (comm ranks; the root leads its host, elsewhere the lowest
        rank), hosts ordered by their lowest rank; and the root's index among them."""
        def make() -> tuple[list[int], int]:
            leaders = [root if root in g else g[0] for g in alg._groups(comm._size, comm._hosts)]
            return leaders, leaders.index(root)

        return self._cached(("leaders", root), make)  # type: ignore[no-any-return]

    def _wait_others(self, s: int) -> None:
        """Wait for the other local ranks' posts of ``s``. A reader that takes its own part from its own
        buffer neither writes its slot nor posts: writing a slot first waits until everyone is done
        with collective s - 2, i.e. (after a Barrier) for a member still waking up, a second wake-up
        on this rank's path before the one it waits for anyway."""
        assert self.reg is not None
        for k in range(self.n):
            if k != self.li:
                self.reg.wait_post(s, k)

    def _fold_slots(self, s: int, acc: np.ndarray, op: Op, mine: np.ndarray) -> None:
        """acc = x(local 0) op x(local 1) op ...: the other local ranks' slots ``s`` and this rank's
        ``mine``, in rank order."""
        nbytes, dt = acc.nbytes, acc.dtype
        li = self.li
        self._check_lengths(s, nbytes, [k for k in range(self.n) if k != li])
        if li and np.shares_memory(mine, acc):  # IN_PLACE: acc overwrites it before its turn
            mine = mine.copy()
        for k in range(self.n):
            part = mine if k == li else np.frombuffer(self._view(s, k, nbytes), dt)
            if k == 0:
                acc[...] = part
            else:
                reduce_to(op, acc, part, acc)

    def _check_lengths(self, s: int, nbytes: int, who: Any) -> None:
        assert self.reg is not None
        for k in who:
            got = self.reg.header(s, k)
            if got != nbytes:
                raise MpiError(f"collective message of {got} bytes from rank {self.local[k]} where {nbytes} were "
                               "expected: the ranks passed different counts or datatypes", ERR_TRUNCATE)

    def Reduce(self, comm: Comm, sendbuf: Any, recvbuf: Any, op: Op, root: int) -> bool:
        """Every local rank publishes its part; the host's folder (the root on its host, else the leader)
        folds them in rank order; the folders reduce across hosts to the root (an order-keeping tree for
        non-commutative ops, which needs each host's ranks to be one contiguous range)."""
        root = comm._root(root)
        if self.me == root:
            out, src = comm._in_out(sendbuf, recvbuf)
        else:
            src = parse_buffer(sendbuf, readonly=True, name="send buffer").array().reshape(-1)
            out = None
        mine = src if src is not None else out
        assert mine is not None
        commutative = op.Is_commutative()
        if mine.nbytes == 0 or mine.nbytes > SLOT or not (commutative or self.contiguous):
            return False
        folder = root if root in self.local else self.local[0]
        acc = None if self.me != folder else out if out is not None else np.empty_like(mine)
        reg = self.reg
        if reg is not None:
            s = self._next()
            if acc is None:
                self._put(s, mine.nbytes, np.ascontiguousarray(mine).view(np.uint8))
                reg.post(s)
            try:
                if acc is not None:
                    self._wait_others(s)
                    self._fold_slots(s, acc, op, mine)
            finally:
                reg.done(s)
        elif acc is not None and src is not None:
            acc[...] = src
        if acc is None:
            return True
        leaders, ridx = self._rooted_leaders(comm, root)
        nl = len(leaders)
        sched = self._cached(("reduce", root, commutative), lambda: alg.reduce(
            leaders.index(self.me), nl, ridx, list(range(nl)), commutative))
        store = BufStore(acc, [(0, acc.shape[0])], None, op)
        run_buffers(self.engine, self.cctx, [comm._members[r] for r in leaders], sched, store)
        return True

    def Gather(self, comm: Comm, sendbuf: Any, recvbuf: Any, root: int) -> bool:
        """Local ranks publish their blocks; the host's folder (the root, or the leader) collects them;
        each other host's folder sends its host's blocks to the root in one message."""
        root = comm._root(root)
        mine: np.ndarray | None = None
        if self.me == root:
            out, bounds = comm._recv_layout(recvbuf, False, "receive buffer", False)
            blk = bounds[root][1] - bounds[root][0]
            if not is_in_place(sendbuf):
                mine = _u8(parse_buffer(sendbuf, readonly=True, name="send buffer").mem)
                if mine.shape[0] != blk:
                    raise ValueError(f"Gather: the root sends {mine.shape[0]} bytes into a block of {blk}")
        else:
            mine = _u8(parse_buffer(sendbuf, readonly=True, name="send buffer").mem)
            blk = mine.shape[0]
        if blk == 0 or blk > SLOT:
            return False
        folder = root if root in self.local else self.local[0]
        if self.me == folder:
            if self.me != root:  # this host's blocks, packed in rank order
                out = np.empty(self.n * blk, np.uint8)
                bounds = [(0, 0)] * comm._size
                for k, r in enumerate(self.local):
                    bounds[r] = (k * blk, (k + 1) * blk)
            if mine is not None:
                out[bounds[self.me][0]:bounds[self.me][1]] = mine
        reg = self.reg
        if reg is not None:
            s = self._next()
            if self.me != folder:
                self._put(s, blk, mine)
                reg.post(s)
            try:
                if self.me == folder:
                    self._wait_others(s)
                    others = [k for k, r in enumerate(self.local) if r != folder]
                    self._check_lengths(s, blk, others)
                    for k in others:
                        a, b = bounds[self.local[k]]
                        out[a:b] = np.frombuffer(self._view(s, k, blk), np.uint8)
            finally:
                reg.done(s)
        if self.me != folder:
            return True
        leaders, _ = self._rooted_leaders(comm, root)
        if self.me == root:
            groups = [g for g in alg._groups(comm._size, comm._hosts) if root not in g]
            sched = self._cached(("gather", root), lambda: alg._pack(
                [[alg.Xfer(next(x for x in leaders if x in g), False, tuple(g)) for g in groups]]))
        else:
            sched = self._cached(("gather", root), lambda: alg._pack([[alg.Xfer(root, True, tuple(self.local))]]))
        run_buffers(self.engine, self.cctx, comm._members, sched, BufStore(out, bounds, filled=True))
        return True

    def Scatter(self, comm: Comm, sendbuf: Any, recvbuf: Any, root: int) -> bool:
        """The reverse of Gather: the root sends each other host's folder that host's blocks in one
        message; each folder publishes its host's blocks, packed in rank order, for its members."""
        root = comm._root(root)
        rb: np.ndarray | None = None
        if self.me == root:
            work, bounds = comm._recv_layout(sendbuf, False, "send buffer", True)
            blk = bounds[root][1] - bounds[root][0]
            if not is_in_place(recvbuf):
                rb = _u8(parse_buffer(recvbuf, readonly=False, name="receive buffer").mem)
                if rb.shape[0] != blk:
                    raise ValueError(f"Scatter: the root keeps a block of {blk} bytes in a receive buffer "
                                     f"of {rb.shape[0]}")
        else:
            rb = _u8(parse_buffer(recvbuf, readonly=False, name="receive buffer").mem)
            blk = rb.shape[0]
        if blk == 0 or blk * self.max_local > SLOT:
            return False
        folder = root if root in self.local else self.local[0]
        leaders, _ = self._rooted_leaders(comm, root)
        if self.me == root:
            groups = [g for g in alg._groups(comm._size, comm._hosts) if root not in g]
            sched = self._cached(("scatter", root), lambda: alg._pack(
                [[alg.Xfer(next(x for x in leaders if x in g), True, tuple(g)) for g in groups]]))
            run_buffers(self.engine, self.cctx, comm._members, sched, BufStore(work, bounds, filled=True))
            packed = np.concatenate([work[bounds[r][0]:bounds[r][1]] for r in self.local])
        elif self.me == folder:
            packed = np.empty(self.n * blk, np.uint8)
            pb = [(0, 0)] * comm._size
            for k, r in enumerate(self.local):
                pb[r] = (k * blk, (k + 1) * blk)
            sched = self._cached(("scatter", root), lambda: alg._pack([[alg.Xfer(root, False, tuple(self.local))]]))
            run_buffers(self.engine, self.cctx, comm._members, sched, BufStore(packed, pb, filled=True))
        reg = self.reg
        if self.me == folder:
            if rb is not None:
                k = self.li
                rb[:] = packed[k * blk:(k + 1) * blk]
            if reg is not None:
                s = self._next()
                self._put(s, blk, packed)
                reg.post(s)
                reg.done(s)
            return True
        assert reg is not None and rb is not None
        s = self._next()
        src = self.local.index(folder)
        reg.wait_post(s, src)
        try:
            self._check_lengths(s, blk, [src])
            rb[:] = np.frombuffer(self._view(s, src, (self.li + 1) * blk), np.uint8)[self.li * blk:]
        finally:
            reg.done(s)
        return True

    def Allgather(self, comm: Comm, sendbuf: Any, recvbuf: Any) -> bool:
        """Local ranks publish their blocks; the leader collects them, ring-allgathers the hosts' blocks
        with the other leaders, and publishes the whole result for its members."""
        out, bounds = comm._recv_layout(recvbuf, False, "receive buffer", False)
        lo, hi = bounds[self.me]
        if is_in_place(sendbuf):
            mine = out[lo:hi]
        else:
            mine = _u8(parse_buffer(sendbuf, readonly=True, name="send buffer").mem)
            if hi - lo != mine.shape[0]:
                raise ValueError(f"Allgather: this rank sends {mine.shape[0]} bytes into a block of {hi - lo}")
        total = bounds[-1][1]
        if hi == lo or total > SLOT:
            return False
        reg = self.reg
        if reg is None:
            if not is_in_place(sendbuf):
                out[lo:hi] = mine
            self._leaders_allgather(comm, out, bounds)
            return True
        s1, s2 = self._next(), self._next()
        if not self.leader:
            self._put(s1, hi - lo, mine)
            reg.post(s1)
        try:
            if self.leader:
                self._wait_others(s1)
                self._check_lengths(s1, hi - lo, range(1, self.n))
                if not is_in_place(sendbuf):
                    out[lo:hi] = mine
                for k, r in enumerate(self.local[1:], 1):
                    a, b = bounds[r]
                    out[a:b] = np.frombuffer(self._view(s1, k, b - a), np.uint8)
                self._leaders_allgather(comm, out, bounds)
                self._put(s2, total, out[:total])
                reg.post(s2)
            else:
                reg.wait_post(s2, 0)
                self._check_lengths(s2, total, [0])
                out[:total] = np.frombuffer(self._view(s2, 0, total), np.uint8)
        finally:
            reg.done(s2)
        return True

    def _leaders_allgather(self, comm: Comm, out: np.ndarray, bounds: list[tuple[int, int]]) -> None:
        def make() -> Any:
            groups = alg._groups(comm._size, comm._hosts)
            return alg._pack(alg._allgather_ring(self.me, self.leaders, [sorted(g) for g in groups]))

        sched = self._cached(("allgather",), make)
        run_buffers(self.engine, self.cctx, comm._members, sched, BufStore(out, bounds, filled=True))

    # --- not handled here: the general schedules --------------------------------------------------
    def Alltoall(self, comm: Comm, sendbuf: Any, recvbuf: Any, v: bool) -> bool:
        return False

    def bcast(self, obj: Any, root: int) -> tuple[bool, Any]:
        return False, None

    def allgather(self, obj: Any) -> list[Any] | None:
        return None

    def allreduce(self, obj: Any, op: Op | None) -> tuple[bool, Any]:
        return False, None

    def gather(self, comm: Comm, obj: Any, root: int) -> tuple[bool, list[Any] | None]:
        return False, None

    def reduce(self, comm: Comm, obj: Any, op: Op, root: int) -> tuple[bool, Any]:
        return False, None

