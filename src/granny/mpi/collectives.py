"""Collective operations of a communicator, objects and buffers, over the schedules of algorithms.py.

Every collective asks algorithms.py for this rank's schedule (cached per communicator) and runs it
with execute.py. Schedules are locality-aware: ranks on one host go through a leader before anything
crosses hosts.

- Buffer specs follow mpi4py's msgbuffer.pxi: a ``None`` send buffer means IN_PLACE; Gather's receive
  buffer (Scatter's send buffer) only matters at the root and holds ``size`` blocks; a non-root rank
  only needs its own block's size, so Gatherv/Scatterv broadcast the root's layout only when a host
  without the root has several ranks (its leader forwards their blocks).
- Buffers may also be DLPack or CUDA-array-interface objects in host memory (as mpi4py accepts):
  buffers.py parses them through foreign.py, for every buffer path.
- Object reductions (reduce/allreduce/scan/exscan) always combine in rank order, as mpi4py does:
  ``x0 op x1 op ... op x(n-1)``, whatever the op claims about commutativity (REPLACE, list ``+``).
- Scan and Exscan of objects are a chain in rank order; of buffers, recursive doubling (log rounds).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from ..errors import MpiError
from . import algorithms as alg
from . import derived_msg, shmcoll
from .argcheck import as_int, check_op
from .buffers import Buf, VBuf, is_in_place, parse_buffer, parse_vbuffer
from .execute import BufStore, ObjStore, run_buffers, run_objects
from .ops import MAX, SUM, Op, reduce_objects
from .pickling import dumps

if TYPE_CHECKING:
    from .p2p import Engine
    from .runtime import Runtime
    from .shmhosts import SpanColl

SCAN_TAG = 1
ALLTOALL_TAG = 3


def _elements(b: Buf) -> np.ndarray:
    return b.array().reshape(-1)


def _u8(mem: memoryview) -> np.ndarray:
    return np.frombuffer(mem, dtype=np.uint8) if mem.nbytes else np.empty(0, dtype=np.uint8)


def _bounds(b: Buf) -> list[tuple[int, int]]:
    """Byte ranges of the ``b.blocks`` equal blocks of a parsed block message."""
    n = b.count * b.datatype.extent
    return [(i * n, (i + 1) * n) for i in range(b.blocks)]


def _vbounds(vb: VBuf) -> list[tuple[int, int]]:
    ext = vb.datatype.extent
    return [(d * ext, (d + c) * ext) for c, d in zip(vb.counts, vb.displs, strict=True)]


def _buf(spec: Any, readonly: bool, name: str, blocks: int = 1) -> Buf:
    return parse_buffer(spec, readonly=readonly, name=name, blocks=blocks)


def _vbuf(spec: Any, size: int, readonly: bool, name: str) -> VBuf:
    return parse_vbuffer(spec, size, readonly=readonly, name=name)


class Collectives:
    _coll: shmcoll.ShmColl | SpanColl | Literal[False] | None = None  # the regions (shmcoll.attach); False: none
    _rt: Runtime
    _cid: int
    _engine: Engine
    _members: list[int]
    _hosts: list[int]
    _rank: int
    _size: int
    _cctx: int

    def _sched(self, key: tuple[Any, ...]) -> alg.Schedule:
        cache: dict[tuple[Any, ...], alg.Schedule] = self.__dict__.setdefault("_schedules", {})
        s = cache.get(key)
        if s is None:
            name, r, n, h = key[0], self._rank, self._size, self._hosts
            if name == "barrier":
                s = alg.barrier(r, n, h)
            elif name == "bcast":
                s = alg.bcast(r, n, key[1], h)
            elif name == "reduce":
                s = alg.reduce(r, n, key[1], h, key[2])
            elif name == "allreduce_small":
                s = alg.allreduce_small(r, n, h, key[1])
            elif name == "allreduce_large":
                s = alg.allreduce_large(r, n, h)
            elif name == "gather":
                s = alg.gather(r, n, key[1], h)
            elif name == "scatter":
                s = alg.scatter(r, n, key[1], h)
            elif name == "allgather":
                s = alg.allgather(r, n, h)
            elif name == "reduce_scatter":
                s = alg.reduce_scatter_block(r, n, h, key[1])
            elif name == "scan":
                s = alg.scan(r, n)
            elif name == "exscan":
                s = alg.exscan(r, n)
            else:
                raise KeyError(name)
            cache[key] = s
        return s

    def _root(self, root: int) -> int:
        if type(root) is not int:
            root = as_int(root)
        if not 0 <= root < self._size:
            raise MpiError(f"invalid root {root}: communicator has ranks 0..{self._size - 1}", 8)  # MPI_ERR_ROOT
        return root

    def _group(self, root: int) -> tuple[list[int], bool]:
        """(this rank's host group for a rooted collective, leader first; whether some host without
        the root has several ranks, i.e. a non-root leader forwards other ranks' blocks)."""
        cache: dict[int, tuple[list[int], bool]] = self.__dict__.setdefault("_groups", {})
        g = cache.get(root)
        if g is None:
            groups = alg._groups(self._size, self._hosts, root)
            mine = next(x for x in groups if self._rank in x)
            g = cache[root] = (mine, any(len(x) > 1 for x in groups[1:]))
        return g

    # --- objects ---------------------------------------------------------------------------
    def barrier(self) -> None:
        sc = self._coll
        if sc is None:
            sc = shmcoll.attach(self)
        if sc:
            sc.barrier()
            return
        run_objects(self._engine, self._cctx, self._members, self._sched(("barrier",)), ObjStore([None]))

    def Barrier(self) -> None:
        sc = self._coll
        if sc is None:
            sc = shmcoll.attach(self)
        if sc:
            sc.barrier()
            return
        self.barrier()

    def bcast(self, obj: Any = None, root: int = 0) -> Any:
        sc = self._coll
        if sc is None:
            sc = shmcoll.attach(self)
        if sc:
            done, value = sc.bcast(obj, root if type(root) is int and 0 <= root < self._size else self._root(root))
            if done:
                return value
        store = ObjStore([obj])
        run_objects(self._engine, self._cctx, self._members, self._sched(("bcast", self._root(root))), store)
        return store.blocks[0]

    def reduce(self, sendobj: Any, op: Op = SUM, root: int = 0) -> Any:
        sc = self._coll
        if sc is None:
            sc = shmcoll.attach(self)
        if sc:
            done, value = sc.reduce(self, sendobj, op, self._root(root))
            if done:
                return value
        store = ObjStore([sendobj], op)
        sched = self._sched(("reduce", self._root(root), False))  # rank order, as mpi4py
        run_objects(self._engine, self._cctx, self._members, sched, store)
        return store.blocks[0] if self._rank == root else None

    def allreduce(self, sendobj: Any, op: Op | None = SUM) -> Any:
        sc = self._coll
        if sc is None:
            sc = shmcoll.attach(self)
        if sc:
            done, value = sc.allreduce(sendobj, op)
            if done:
                return value
        op = MAX if op is None else op
        store = ObjStore([sendobj], op)
        sched = self._sched(("allreduce_small", False))  # rank order, as mpi4py
        run_objects(self._engine, self._cctx, self._members, sched, store)
        return store.blocks[0]

    def gather(self, sendobj: Any, root: int = 0) -> list[Any] | None:
        sc = self._coll
        if sc is None:
            sc = shmcoll.attach(self)
        if sc:
            done, values = sc.gather(self, sendobj, self._root(root))
            if done:
                return values
        blocks: list[Any] = [None] * self._size
        blocks[self._rank] = sendobj
        run_objects(self._engine, self._cctx, self._members, self._sched(("gather", self._root(root))), ObjStore(blocks))
        return blocks if self._rank == root else None

    def scatter(self, sendobj: Any, root: int = 0) -> Any:
        root = self._root(root)
        if self._rank == root:
            blocks = list(sendobj) if sendobj is not None else []
            if len(blocks) != self._size:
                raise ValueError(f"scatter: the root must pass a sequence of {self._size} items, got {len(blocks)}")
        else:
            blocks = [None] * self._size
        run_objects(self._engine, self._cctx, self._members, self._sched(("scatter", root)), ObjStore(blocks))
        return blocks[self._rank]

    def allgather(self, sendobj: Any) -> list[Any]:
        sc = self._coll
        if sc is None:
            sc = shmcoll.attach(self)
        if sc:
            values = sc.allgather(sendobj)
            if values is not None:
                return values
        blocks: list[Any] = [None] * self._size
        blocks[self._rank] = sendobj
        run_objects(self._engine, self._cctx, self._members, self._sched(("allgather",)), ObjStore(blocks))
        return blocks

    def alltoall(self, sendobj: Any) -> list[Any]:
        items = list(sendobj)
        if len(items) != self._size:
            raise ValueError(f"alltoall: pass a sequence of {self._size} items, got {len(items)}")
        out: list[Any] = [None] * self._size
        out[self._rank] = items[self._rank]
        reqs = []
        for peer in range(self._size):
            if peer != self._rank:
                data = dumps(items[peer])
                reqs.append(self._engine.send(self._cctx, self._members[peer], 2, data, len(data), obj=True))
        posted = [(p, self._engine.post(self._cctx, self._members[p], 2, None)) for p in range(self._size) if p != self._rank]
        for s in reqs:
            self._engine.wait(s)
        for p, r in posted:
            self._engine.wait(r)
            out[p] = r.value
        return out

    def _chain(self, value: Any, op: Op, exclusive: bool) -> Any:
        """Inclusive or exclusive prefix reduction, passed along the ranks in order."""
        eng = self._engine
        acc = None
        if self._rank > 0:
            req = eng.post(self._cctx, self._members[self._rank - 1], SCAN_TAG, None)
            eng.wait(req)
            acc = req.value
        mine = value if acc is None else reduce_objects(op, acc, value)
        if self._rank < self._size - 1:
            data = dumps(mine)
            eng.wait(eng.send(self._cctx, self._members[self._rank + 1], SCAN_TAG, data, len(data), obj=True))
        return acc if exclusive else mine

    def scan(self, sendobj: Any, op: Op = SUM) -> Any:
        return self._chain(sendobj, op, False)

    def exscan(self, sendobj: Any, op: Op = SUM) -> Any:
        return self._chain(sendobj, op, True)

    # --- buffers ---------------------------------------------------------------------------
    def Bcast(self, buf: Any, root: int = 0) -> None:
        if isinstance(buf, list | tuple) and (pk := derived_msg.packed(buf)) is not None:
            return pk.bcast(self, root)
        sc = self._coll
        if sc is None:
            sc = shmcoll.attach(self)
        if sc and sc.Bcast(self, buf, root):
            return
        root = self._root(root)
        b = _buf(buf, self._rank == root, "buffer")
        arr = _u8(b.mem)
        if self._size == 1 or arr.shape[0] == 0:
            return
        store = BufStore(arr, [(0, arr.shape[0])], filled=True)
        run_buffers(self._engine, self._cctx, self._members, self._sched(("bcast", root)), store)

    def _in_out(self, sendbuf: Any, recvbuf: Any) -> tuple[np.ndarray, np.ndarray | None]:
        """Reductions: (receive elements, send elements or None for IN_PLACE), checked as mpi4py does."""
        if type(recvbuf) is np.ndarray and type(sendbuf) is np.ndarray:  # the hot path
            rb, sb = parse_buffer(recvbuf, readonly=False, name="receive buffer"), parse_buffer(
                sendbuf, readonly=True, name="send buffer")
        else:
            rb = _buf(recvbuf, False, "receive buffer")
            if is_in_place(sendbuf):
                return _elements(rb), None
            sb = _buf(sendbuf, True, "send buffer")
        return _elements(rb), self._check_send(sb, rb.datatype, rb.count)

    @staticmethod
    def _check_send(sb: Buf, rtype: Any, rcount: int) -> np.ndarray:
        if sb.datatype.dtype != rtype.dtype:
            raise ValueError("mismatch in send and receive MPI datatypes")
        if sb.count != rcount:
            raise ValueError(f"mismatch in send count {sb.count} and receive count {rcount}")
        return _elements(sb)

    def Allreduce(self, sendbuf: Any, recvbuf: Any, op: Op = SUM) -> None:
        if type(op) is not Op:
            check_op(op)  # as mpi4py: only the pickled forms take op=None
        sc = self._coll
        if sc is None:
            sc = shmcoll.attach(self)
        if sc and sc.Allreduce(self, sendbuf, recvbuf, op):
            return
        out, src = self._in_out(sendbuf, recvbuf)
        n = out.shape[0]
        if self._size == 1 or n == 0:
            if src is not None:
                out[...] = src
            return
        large = alg.choose_allreduce(out.nbytes, self._size, op.Is_commutative()) == "large" and n >= self._size
        if large:
            store = BufStore(out, alg.block_bounds(n, self._size), src, op)
            sched = self._sched(("allreduce_large",))
        else:
            store = BufStore(out, [(0, n)], src, op)
            sched = self._sched(("allreduce_small", op.Is_commutative()))
        run_buffers(self._engine, self._cctx, self._members, sched, store)

    def Reduce(self, sendbuf: Any, recvbuf: Any, op: Op = SUM, root: int = 0) -> None:
        check_op(op)
        sc = self._coll
        if sc is None:
            sc = shmcoll.attach(self)
        if sc and sc.Reduce(self, sendbuf, recvbuf, op, root):
            return
        root = self._root(root)
        if self._rank == root:
            out, src = self._in_out(sendbuf, recvbuf)
        else:  # the receive buffer is ignored off the root
            src = _elements(_buf(sendbuf, True, "send buffer"))
            out = np.empty_like(src)
        if self._size == 1 or out.shape[0] == 0:
            if src is not None and self._rank == root:
                out[...] = src
            return
        store = BufStore(out, [(0, out.shape[0])], src, op)
        run_buffers(self._engine, self._cctx, self._members, self._sched(("reduce", root, op.Is_commutative())), store)

    def _reduce_scatter(self, full: np.ndarray, counts: list[int], out: np.ndarray, op: Op) -> None:
        """Reduce ``full`` (sum(counts) elements) over the ranks; this rank's block into ``out``."""
        lo = sum(counts[:self._rank])
        hi = lo + counts[self._rank]
        if self._size == 1 or full.shape[0] == 0:
            out[:hi - lo] = full[lo:hi]
            return
        offs = [0, *np.cumsum(counts).tolist()]
        bounds = [(int(offs[i]), int(offs[i + 1])) for i in range(self._size)]
        acc = np.empty_like(full)
        store = BufStore(acc, bounds, full, op)
        run_buffers(self._engine, self._cctx, self._members, self._sched(("reduce_scatter", op.Is_commutative())),
                    store)
        out[:hi - lo] = acc[lo:hi]

    def Reduce_scatter_block(self, sendbuf: Any, recvbuf: Any, op: Op = SUM) -> None:
        check_op(op)
        if is_in_place(sendbuf):
            rb = _buf(recvbuf, False, "receive buffer", blocks=self._size)
            out = _elements(rb)
            cnt, full = rb.count, out
        else:
            rb = _buf(recvbuf, False, "receive buffer")
            cnt, out = rb.count, _elements(rb)
            full = self._check_send(_buf(sendbuf, True, "send buffer", blocks=self._size), rb.datatype, cnt)
        self._reduce_scatter(full[:cnt * self._size], [cnt] * self._size, out, op)

    def Reduce_scatter(self, sendbuf: Any, recvbuf: Any, recvcounts: Any = None,
                       op: Op = SUM) -> None:
        check_op(op)
        rb = _buf(recvbuf, False, "receive buffer")
        out = _elements(rb)
        inplace = is_in_place(sendbuf)
        sb = None if inplace else _buf(sendbuf, True, "send buffer")
        if recvcounts is None and not inplace:
            counts = [int(c) for c in self.allgather(rb.count)]
        elif recvcounts is None:
            raise TypeError("Reduce_scatter: IN_PLACE needs recvcounts")
        else:
            counts = [int(c) for c in recvcounts]
            if len(counts) != self._size:
                raise ValueError(f"Reduce_scatter: expecting {self._size} receive counts, got {len(counts)}")
        total = sum(counts)
        if sb is None:
            if rb.count != total:
                raise ValueError(f"mismatch in receive count {rb.count} and sum(counts) {total}")
            full = out
        else:
            full = self._check_send(sb, rb.datatype, total)
            if rb.count != counts[self._rank]:
                raise ValueError(f"mismatch in receive count {rb.count} and counts[{self._rank}] "
                                 f"{counts[self._rank]}")
        self._reduce_scatter(full, counts, out, op)

    # -- gather / scatter family (bytes; blocks are this rank's byte ranges) --
    def Gather(self, sendbuf: Any, recvbuf: Any, root: int = 0) -> None:
        sc = self._coll
        if sc is None:
            sc = shmcoll.attach(self)
        if sc and sc.Gather(self, sendbuf, recvbuf, root):
            return
        self._gather(sendbuf, recvbuf, root, False)

    def Gatherv(self, sendbuf: Any, recvbuf: Any, root: int = 0) -> None:
        self._gather(sendbuf, recvbuf, root, True)

    def _recv_layout(self, spec: Any, v: bool, name: str, readonly: bool) -> tuple[np.ndarray, list[tuple[int, int]]]:
        """The root side of a gather/scatter (or any side of allgather/alltoall): bytes and block bounds."""
        if v:
            vb = _vbuf(spec, self._size, readonly, name)
            return _u8(vb.mem), _vbounds(vb)
        b = _buf(spec, readonly, name, blocks=self._size)
        return _u8(b.mem), _bounds(b)

    def _member_layout(self, root: int, mine: int, v: bool, layout: list[tuple[int, int]] | None
                       ) -> tuple[list[tuple[int, int]], int, bool]:
        """A non-root's working layout for a rooted gather/scatter: (bounds, bytes, leads others).
        Only its host group's blocks matter, packed in group order; ``mine`` is its own block's size."""
        group, spread = self._group(root)
        sizes = {r: mine for r in group}
        if v and spread:
            layout = self.bcast(layout, root)  # the root broadcasts too: see _gather/_scatter
            assert layout is not None
            sizes = {r: layout[r][1] - layout[r][0] for r in group}
        bounds, off = [(0, 0)] * self._size, 0
        for r in sorted(group):
            bounds[r] = (off, off + sizes[r])
            off += sizes[r]
        if self._rank != group[0]:  # not a leader: only its own block, at offset 0
            bounds = [(0, 0)] * self._size
            bounds[self._rank] = (0, sizes[self._rank])
            off = sizes[self._rank]
        return bounds, off, self._rank == group[0]

    def _gather(self, sendbuf: Any, recvbuf: Any, root: int, v: bool) -> None:
        root = self._root(root)
        inplace = self._rank == root and is_in_place(sendbuf)
        mine = None if inplace else _u8(_buf(sendbuf, True, "send buffer").mem)
        if self._rank == root:
            out, bounds = self._recv_layout(recvbuf, v, "receive buffer", False)
            if v and self._group(root)[1]:
                self.bcast(bounds, root)
            if mine is not None:
                lo, hi = bounds[root]
                if hi - lo != mine.shape[0]:
                    raise ValueError(f"Gather: the root sends {mine.shape[0]} bytes into a block of {hi - lo}")
                out[lo:hi] = mine
        else:
            assert mine is not None
            bounds, nbytes, leader = self._member_layout(root, mine.shape[0], v, None)
            if bounds[self._rank][1] - bounds[self._rank][0] != mine.shape[0]:
                raise MpiError(f"Gatherv: this rank sends {mine.shape[0]} bytes where the root expects "
                               f"{bounds[self._rank][1] - bounds[self._rank][0]}", 15)  # ERR_TRUNCATE
            if leader:
                out = np.empty(nbytes, dtype=np.uint8)
                lo, hi = bounds[self._rank]
                out[lo:hi] = mine
            else:
                out = mine  # sent as is
        if self._size == 1:
            return
        store = BufStore(out, bounds, filled=True)
        run_buffers(self._engine, self._cctx, self._members, self._sched(("gather", root)), store)

    def Scatter(self, sendbuf: Any, recvbuf: Any, root: int = 0) -> None:
        sc = self._coll
        if sc is None:
            sc = shmcoll.attach(self)
        if sc and sc.Scatter(self, sendbuf, recvbuf, root):
            return
        self._scatter(sendbuf, recvbuf, root, False)

    def Scatterv(self, sendbuf: Any, recvbuf: Any, root: int = 0) -> None:
        self._scatter(sendbuf, recvbuf, root, True)

    def _scatter(self, sendbuf: Any, recvbuf: Any, root: int, v: bool) -> None:
        root = self._root(root)
        inplace = self._rank == root and is_in_place(recvbuf)
        rb = None if inplace else _u8(_buf(recvbuf, False, "receive buffer").mem)
        if self._rank == root:
            work, bounds = self._recv_layout(sendbuf, v, "send buffer", True)
            if v and self._group(root)[1]:
                self.bcast(bounds, root)
            if rb is not None:
                lo, hi = bounds[root]
                if hi - lo != rb.shape[0]:
                    raise ValueError(f"Scatter: the root keeps a block of {hi - lo} bytes in a receive buffer "
                                     f"of {rb.shape[0]}")
                rb[:] = work[lo:hi]
            if self._size == 1:
                return
            store = BufStore(work, bounds, filled=True)
            run_buffers(self._engine, self._cctx, self._members, self._sched(("scatter", root)), store)
            return
        assert rb is not None
        bounds, nbytes, leader = self._member_layout(root, rb.shape[0], v, None)
        lo, hi = bounds[self._rank]
        if hi - lo > rb.shape[0]:
            raise MpiError(f"Scatterv: {hi - lo} bytes for a receive buffer of {rb.shape[0]}", 15)  # ERR_TRUNCATE
        work = np.empty(nbytes, dtype=np.uint8) if leader else rb  # a member receives in place
        store = BufStore(work, bounds, filled=True)
        run_buffers(self._engine, self._cctx, self._members, self._sched(("scatter", root)), store)
        if leader:
            rb[:hi - lo] = work[lo:hi]

    def Allgather(self, sendbuf: Any, recvbuf: Any) -> None:
        sc = self._coll
        if sc is None:
            sc = shmcoll.attach(self)
        if sc and sc.Allgather(self, sendbuf, recvbuf):
            return
        self._allgather(sendbuf, recvbuf, False)

    def Allgatherv(self, sendbuf: Any, recvbuf: Any) -> None:
        self._allgather(sendbuf, recvbuf, True)

    def _allgather(self, sendbuf: Any, recvbuf: Any, v: bool) -> None:
        out, bounds = self._recv_layout(recvbuf, v, "receive buffer", False)
        if not is_in_place(sendbuf):
            mine = _u8(_buf(sendbuf, True, "send buffer").mem)
            lo, hi = bounds[self._rank]
            if hi - lo != mine.shape[0]:
                raise ValueError(f"Allgather: this rank sends {mine.shape[0]} bytes into a block of {hi - lo}")
            out[lo:hi] = mine
        if self._size == 1:
            return
        store = BufStore(out, bounds, filled=True)
        run_buffers(self._engine, self._cctx, self._members, self._sched(("allgather",)), store)

    def Alltoall(self, sendbuf: Any, recvbuf: Any) -> None:
        self._alltoall(sendbuf, recvbuf, False)

    def Alltoallv(self, sendbuf: Any, recvbuf: Any) -> None:
        self._alltoall(sendbuf, recvbuf, True)

    def _alltoall(self, sendbuf: Any, recvbuf: Any, v: bool) -> None:
        sc = self._coll
        if sc is None:
            sc = shmcoll.attach(self)
        if sc and sc.Alltoall(self, sendbuf, recvbuf, v):
            return
        out, rbounds = self._recv_layout(recvbuf, v, "receive buffer", False)
        if is_in_place(sendbuf):
            src, sbounds = out.copy(), rbounds
        else:
            src, sbounds = self._recv_layout(sendbuf, v, "send buffer", True)
        (slo, shi), (rlo, rhi) = sbounds[self._rank], rbounds[self._rank]
        if shi - slo != rhi - rlo:
            raise MpiError(f"Alltoall: this rank sends itself {shi - slo} bytes for a block of {rhi - rlo}", 15)
        eng = self._engine
        sends, recvs = [], []
        for p in range(self._size):
            lo, hi = sbounds[p]
            if p == self._rank:
                rlo = rbounds[p][0]
                out[rlo:rlo + hi - lo] = src[lo:hi]
                continue
            piece = src[lo:hi].data
            sends.append(eng.send(self._cctx, self._members[p], ALLTOALL_TAG, piece, piece.nbytes, obj=False))
        for p in range(self._size):
            if p != self._rank:
                rlo, rhi = rbounds[p]
                recvs.append((rhi - rlo, eng.post(self._cctx, self._members[p], ALLTOALL_TAG, out[rlo:rhi].data)))
        for s in sends:
            eng.wait(s)
        for want, r in recvs:
            eng.wait(r)
            if r.error is not None:
                raise r.error
            if r.nbytes != want:
                raise MpiError(f"Alltoall: {r.nbytes} bytes arrived for a block of {want}", 15)

    def _scan_buf(self, sendbuf: Any, recvbuf: Any, op: Op, exclusive: bool) -> None:
        """Recursive doubling (algorithms.scan): block 0 = the result, block 1 = the running partial."""
        check_op(op)
        out, src = self._in_out(sendbuf, recvbuf)
        n = out.shape[0]
        if self._size == 1 or n == 0:
            if src is not None and not exclusive:
                out[...] = src
            return
        acc = np.empty(2 * n, dtype=out.dtype)
        acc[n:] = src if src is not None else out
        if not exclusive:
            acc[:n] = acc[n:]
        store = BufStore(acc, [(0, n), (n, 2 * n)], op=op)
        run_buffers(self._engine, self._cctx, self._members, self._sched(("exscan" if exclusive else "scan",)), store)
        if not exclusive or self._rank > 0:
            out[...] = acc[:n]

    def Scan(self, sendbuf: Any, recvbuf: Any, op: Op = SUM) -> None:
        self._scan_buf(sendbuf, recvbuf, op, False)

    def Exscan(self, sendbuf: Any, recvbuf: Any, op: Op = SUM) -> None:
        self._scan_buf(sendbuf, recvbuf, op, True)
