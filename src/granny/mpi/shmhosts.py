"""Small collectives of a communicator that spans hosts: the per-host legs through the host's region.

Theory of operation
- The ranks of the communicator on one host share a region (shmregion.py), set up on the first
  collective as for a one-host communicator. Across hosts the leader scheme of algorithms.py stays:
  only host leaders exchange messages, over the schedules of algorithms.py run among the leaders.
- ``Barrier``: every local rank posts; the leader waits for them, runs a dissemination barrier with
  the other leaders, then posts again (the release) for its members.
- ``Allreduce`` (commutative ops, up to a slot): every local rank publishes its part; the leader folds
  them in local rank order, allreduces the host sums with the other leaders (recursive doubling), and
  publishes the result for its members.
- ``Bcast`` (up to a slot): the root's value travels down a binomial tree of leaders (the root leads its
  host); each leader then publishes it for its members.
- Everything else (larger messages, non-commutative ops, the other collectives, the pickled forms)
  returns "not handled" and takes the general schedules; the choice depends only on what every rank
  agrees on (sizes, the op), as in shmcoll.py. A leader alone on its host has no region.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from . import algorithms as alg
from .buffers import parse_buffer
from .execute import BufStore, ObjStore, reduce_to, run_buffers, run_objects
from .ops import Op
from .shmregion import SLOT, Mapping, slot_offset

if TYPE_CHECKING:
    from .collectives import Collectives as Comm


def _u8(mem: memoryview) -> np.ndarray:
    return np.frombuffer(mem, dtype=np.uint8) if mem.nbytes else np.empty(0, dtype=np.uint8)


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
        self.me = me
        members = comm._members
        self.leader_worlds = [members[r] for r in self.leaders]
        if self.leader:
            i, nl = self.leaders.index(me), len(self.leaders)
            self.barrier_sched = alg.barrier(i, nl, list(range(nl)))
            self.allreduce_sched = alg.allreduce_small(i, nl, list(range(nl)), True)
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
        if not op.Is_commutative():
            return False
        out, src = comm._in_out(sendbuf, recvbuf)
        nbytes = out.nbytes
        if nbytes == 0 or nbytes > SLOT:
            return False
        mine = src if src is not None else out
        reg = self.reg
        if reg is None:  # alone on this host: only the leaders' exchange
            if src is not None:
                out[...] = src
            self._leaders_allreduce(out, op)
            return True
        s1, s2 = self._next(), self._next()
        reg.put(s1, nbytes, np.ascontiguousarray(mine).view(np.uint8))
        reg.post(s1)
        try:
            if self.leader:
                reg.wait_post(s1, -1)
                dt = out.dtype
                out[...] = np.frombuffer(self._view(s1, 0, nbytes), dt)
                for k in range(1, self.n):
                    reduce_to(op, out, np.frombuffer(self._view(s1, k, nbytes), dt), out)
                self._leaders_allreduce(out, op)
                reg.put(s2, nbytes, np.ascontiguousarray(out).view(np.uint8))
                reg.post(s2)
            else:
                reg.wait_post(s2, 0)
                out[...] = np.frombuffer(self._view(s2, 0, nbytes), out.dtype)
        finally:
            reg.done(s2)
        return True

    def _leaders_allreduce(self, out: np.ndarray, op: Op) -> None:
        store = BufStore(out, [(0, out.shape[0])], None, op)
        run_buffers(self.engine, self.cctx, self.leader_worlds, self.allreduce_sched, store)

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
            reg.put(s, arr.shape[0], arr)
            reg.post(s)
        else:
            reg.wait_post(s, src)
            arr[:] = np.frombuffer(self._view(s, src, arr.shape[0]), np.uint8)
        reg.done(s)
        return True

    # --- not handled here: the general schedules --------------------------------------------------
    def Reduce(self, comm: Comm, sendbuf: Any, recvbuf: Any, op: Op, root: int) -> bool:
        return False

    def Allgather(self, comm: Comm, sendbuf: Any, recvbuf: Any) -> bool:
        return False

    def Gather(self, comm: Comm, sendbuf: Any, recvbuf: Any, root: int) -> bool:
        return False

    def Scatter(self, comm: Comm, sendbuf: Any, recvbuf: Any, root: int) -> bool:
        return False

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

