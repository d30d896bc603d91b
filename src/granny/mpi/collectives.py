"""Collective operations of a communicator, objects and buffers, over the schedules of algorithms.py.

Every collective asks algorithms.py for this rank's schedule (cached per communicator) and runs it
with execute.py. Schedules are locality-aware: ranks on one host go through a leader before anything
crosses hosts. Scan and Exscan are a chain in rank order (they are order-sensitive by definition and
rare on hot paths).
"""

from __future__ import annotations

import pickle
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import MpiError
from . import algorithms as alg
from .datatypes import IN_PLACE, Buf, parse_buffer, parse_vbuffer
from .execute import BufStore, ObjStore, reduce_to, run_buffers, run_objects
from .ops import MAX, SUM, Op, reduce_objects

if TYPE_CHECKING:
    from .p2p import Engine

SCAN_TAG = 1


def _elements(b: Buf) -> np.ndarray:
    return b.array().reshape(-1)


def _bytes(b: Buf) -> np.ndarray:
    return np.frombuffer(b.mem, dtype=np.uint8)


class Collectives:
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
            else:
                raise KeyError(name)
            cache[key] = s
        return s

    def _root(self, root: int) -> int:
        if not 0 <= root < self._size:
            raise MpiError(f"invalid root {root}: communicator has ranks 0..{self._size - 1}", 8)  # MPI_ERR_ROOT
        return root

    # --- objects ---------------------------------------------------------------------------
    def barrier(self) -> None:
        run_objects(self._engine, self._cctx, self._members, self._sched(("barrier",)), ObjStore([None]))

    def Barrier(self) -> None:  # noqa: N802
        self.barrier()

    def bcast(self, obj: Any = None, root: int = 0) -> Any:
        store = ObjStore([obj])
        run_objects(self._engine, self._cctx, self._members, self._sched(("bcast", self._root(root))), store)
        return store.blocks[0]

    def reduce(self, sendobj: Any, op: Op = SUM, root: int = 0) -> Any:
        store = ObjStore([sendobj], op)
        sched = self._sched(("reduce", self._root(root), op.Is_commutative()))
        run_objects(self._engine, self._cctx, self._members, sched, store)
        return store.blocks[0] if self._rank == root else None

    def allreduce(self, sendobj: Any, op: Op | None = SUM) -> Any:
        op = MAX if op is None else op
        store = ObjStore([sendobj], op)
        sched = self._sched(("allreduce_small", op.Is_commutative()))
        run_objects(self._engine, self._cctx, self._members, sched, store)
        return store.blocks[0]

    def gather(self, sendobj: Any, root: int = 0) -> list[Any] | None:
        blocks: list[Any] = [None] * self._size
        blocks[self._rank] = sendobj
        run_objects(self._engine, self._cctx, self._members, self._sched(("gather", self._root(root))), ObjStore(blocks))
        return blocks if self._rank == root else None

    def scatter(self, sendobj: Any, root: int = 0) -> Any:
        if self._rank == self._root(root):
            blocks = list(sendobj) if sendobj is not None else []
            if len(blocks) != self._size:
                raise ValueError(f"scatter: the root must pass a sequence of {self._size} items, got {len(blocks)}")
        else:
            blocks = [None] * self._size
        run_objects(self._engine, self._cctx, self._members, self._sched(("scatter", root)), ObjStore(blocks))
        return blocks[self._rank]

    def allgather(self, sendobj: Any) -> list[Any]:
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
                data = pickle.dumps(items[peer], 5)
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
            data = pickle.dumps(mine, 5)
            eng.wait(eng.send(self._cctx, self._members[self._rank + 1], SCAN_TAG, data, len(data), obj=True))
        return acc if exclusive else mine

    def scan(self, sendobj: Any, op: Op = SUM) -> Any:
        return self._chain(sendobj, op, False)

    def exscan(self, sendobj: Any, op: Op = SUM) -> Any:
        return self._chain(sendobj, op, True)

    # --- buffers ---------------------------------------------------------------------------
    def Bcast(self, buf: Any, root: int = 0) -> None:  # noqa: N802
        b = parse_buffer(buf, readonly=self._rank == root, name="buffer")
        arr = np.frombuffer(b.mem, dtype=np.uint8)
        store = BufStore(arr, [(0, arr.shape[0])], filled=True)
        run_buffers(self._engine, self._cctx, self._members, self._sched(("bcast", self._root(root))), store)

    def _in_out(self, sendbuf: Any, recvbuf: Any) -> tuple[np.ndarray, np.ndarray | None]:
        rb = parse_buffer(recvbuf, readonly=False, name="receive buffer")
        out = _elements(rb)
        if sendbuf is IN_PLACE or sendbuf is None:
            return out, None
        sb = parse_buffer(sendbuf, readonly=True, name="send buffer")
        src = sb.array().reshape(-1)
        if src.shape[0] != out.shape[0]:
            raise MpiError(f"send buffer has {src.shape[0]} elements, receive buffer {out.shape[0]}", 2)  # ERR_COUNT
        return out, src

    def Allreduce(self, sendbuf: Any, recvbuf: Any, op: Op = SUM) -> None:  # noqa: N802
        out, src = self._in_out(sendbuf, recvbuf)
        n = out.shape[0]
        if self._size == 1:
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

    def Reduce(self, sendbuf: Any, recvbuf: Any, op: Op = SUM, root: int = 0) -> None:  # noqa: N802
        self._root(root)
        if self._rank == root:
            out, src = self._in_out(sendbuf, recvbuf)
        else:
            sb = parse_buffer(sendbuf, readonly=True, name="send buffer")
            src = sb.array().reshape(-1)
            out = np.empty_like(src)
        store = BufStore(out, [(0, out.shape[0])], src, op)
        run_buffers(self._engine, self._cctx, self._members, self._sched(("reduce", root, op.Is_commutative())), store)

    def Reduce_scatter_block(self, sendbuf: Any, recvbuf: Any, op: Op = SUM) -> None:  # noqa: N802
        rb = parse_buffer(recvbuf, readonly=False, name="receive buffer")
        out = _elements(rb)
        if sendbuf is IN_PLACE or sendbuf is None:
            full = out.copy()
            cnt = full.shape[0] // self._size
        else:
            full = parse_buffer(sendbuf, readonly=True, name="send buffer").array().reshape(-1).copy()
            cnt = out.shape[0]
        if full.shape[0] < cnt * self._size:
            raise MpiError(f"Reduce_scatter_block: send buffer needs {cnt * self._size} elements", 2)
        self.Allreduce(IN_PLACE, full, op)
        out[:cnt] = full[self._rank * cnt:(self._rank + 1) * cnt]

    def Reduce_scatter(self, sendbuf: Any, recvbuf: Any, recvcounts: list[int] | None = None, op: Op = SUM) -> None:  # noqa: N802
        rb = parse_buffer(recvbuf, readonly=False, name="receive buffer")
        out = _elements(rb)
        counts = list(recvcounts) if recvcounts is not None else self.allgather(out.shape[0])
        full = (out if sendbuf is IN_PLACE else parse_buffer(sendbuf, readonly=True).array().reshape(-1)).copy()
        self.Allreduce(IN_PLACE, full, op)
        lo = sum(counts[:self._rank])
        out[:counts[self._rank]] = full[lo:lo + counts[self._rank]]

    def _gatherlike(self, key: tuple[Any, ...], out: np.ndarray, bounds: list[tuple[int, int]],
                    mine: np.ndarray | None) -> None:
        """Gather-shaped collectives over bytes: ``out`` is uint8, ``bounds`` in bytes."""
        if mine is not None:
            lo, hi = bounds[self._rank]
            if hi - lo != mine.shape[0]:
                raise MpiError(f"this rank sends {mine.shape[0]} bytes where {hi - lo} are expected", 2)
            out[lo:hi] = mine
        store = BufStore(out, bounds, filled=True)
        run_buffers(self._engine, self._cctx, self._members, self._sched(key), store)

    def Gather(self, sendbuf: Any, recvbuf: Any, root: int = 0) -> None:  # noqa: N802
        self._gatherv(sendbuf, recvbuf, root, False)

    def Gatherv(self, sendbuf: Any, recvbuf: Any, root: int = 0) -> None:  # noqa: N802
        self._gatherv(sendbuf, recvbuf, root, True)

    def _gatherv(self, sendbuf: Any, recvbuf: Any, root: int, v: bool) -> None:
        self._root(root)
        mine = None if sendbuf is IN_PLACE else _bytes(parse_buffer(sendbuf, readonly=True, name="send buffer"))
        if self._rank == root:
            vb = parse_vbuffer(recvbuf, self._size, readonly=False)
            isz = vb.datatype.Get_size()
            bounds = [(d * isz, (d + c) * isz) for c, d in zip(vb.counts, vb.displs, strict=True)]
            out = np.frombuffer(vb.mem, dtype=np.uint8)
            if v:
                self.bcast(bounds, root)
        else:
            assert mine is not None
            n = mine.shape[0]
            bounds = self.bcast(None, root) if v else [(i * n, (i + 1) * n) for i in range(self._size)]
            out = np.empty(max((hi for _, hi in bounds), default=0), dtype=np.uint8)
        self._gatherlike(("gather", root), out, bounds, mine)

    def Allgather(self, sendbuf: Any, recvbuf: Any) -> None:  # noqa: N802
        vb = parse_vbuffer(recvbuf, self._size, readonly=False)
        isz = vb.datatype.Get_size()
        bounds = [(d * isz, (d + c) * isz) for c, d in zip(vb.counts, vb.displs, strict=True)]
        out = np.frombuffer(vb.mem, dtype=np.uint8)
        mine = None if sendbuf is IN_PLACE else _bytes(parse_buffer(sendbuf, readonly=True, name="send buffer"))
        self._gatherlike(("allgather",), out, bounds, mine)

    Allgatherv = Allgather

    def Scatter(self, sendbuf: Any, recvbuf: Any, root: int = 0) -> None:  # noqa: N802
        self._scatterv(sendbuf, recvbuf, root, False)

    def Scatterv(self, sendbuf: Any, recvbuf: Any, root: int = 0) -> None:  # noqa: N802
        self._scatterv(sendbuf, recvbuf, root, True)

    def _scatterv(self, sendbuf: Any, recvbuf: Any, root: int, v: bool) -> None:
        self._root(root)
        inplace = recvbuf is IN_PLACE and self._rank == root
        rb = None if inplace else parse_buffer(recvbuf, readonly=False, name="receive buffer")
        if self._rank == root:
            vb = parse_vbuffer(sendbuf, self._size, readonly=True)
            isz = vb.datatype.Get_size()
            bounds = [(d * isz, (d + c) * isz) for c, d in zip(vb.counts, vb.displs, strict=True)]
            if v:
                self.bcast(bounds, root)
            work = np.frombuffer(vb.mem, dtype=np.uint8).copy()
        else:
            assert rb is not None
            n = rb.nbytes
            bounds = self.bcast(None, root) if v else [(i * n, (i + 1) * n) for i in range(self._size)]
            work = np.empty(max((hi for _, hi in bounds), default=0), dtype=np.uint8)
        store = BufStore(work, bounds, filled=True)
        run_buffers(self._engine, self._cctx, self._members, self._sched(("scatter", root)), store)
        if rb is not None:
            lo, hi = bounds[self._rank]
            if hi - lo > rb.nbytes:
                raise MpiError(f"Scatter: {hi - lo} bytes for a receive buffer of {rb.nbytes}", 15)
            np.frombuffer(rb.mem, dtype=np.uint8)[:hi - lo] = work[lo:hi]

    def Alltoall(self, sendbuf: Any, recvbuf: Any) -> None:  # noqa: N802
        self._alltoallv(sendbuf, recvbuf)

    def Alltoallv(self, sendbuf: Any, recvbuf: Any) -> None:  # noqa: N802
        self._alltoallv(sendbuf, recvbuf)

    def _alltoallv(self, sendbuf: Any, recvbuf: Any) -> None:
        rv = parse_vbuffer(recvbuf, self._size, readonly=False)
        sv = rv if sendbuf is IN_PLACE else parse_vbuffer(sendbuf, self._size, readonly=True)
        out = np.frombuffer(rv.mem, dtype=np.uint8)
        src = np.frombuffer(sv.mem, dtype=np.uint8)
        if sendbuf is IN_PLACE:
            src = src.copy()
        rs, ss = rv.datatype.Get_size(), sv.datatype.Get_size()
        eng = self._engine
        sends, recvs = [], []
        for p in range(self._size):
            lo, hi = sv.displs[p] * ss, (sv.displs[p] + sv.counts[p]) * ss
            if p == self._rank:
                rlo = rv.displs[p] * rs
                out[rlo:rlo + hi - lo] = src[lo:hi]
                continue
            piece = memoryview(src[lo:hi])
            sends.append(eng.send(self._cctx, self._members[p], 3, piece, piece.nbytes, obj=False))
        for p in range(self._size):
            if p != self._rank:
                rlo, rhi = rv.displs[p] * rs, (rv.displs[p] + rv.counts[p]) * rs
                recvs.append(eng.post(self._cctx, self._members[p], 3, memoryview(out[rlo:rhi])))
        for s in sends:
            eng.wait(s)
        for r in recvs:
            eng.wait(r)
            if r.error is not None:
                raise r.error

    def _scan_buf(self, sendbuf: Any, recvbuf: Any, op: Op, exclusive: bool) -> None:
        out, src = self._in_out(sendbuf, recvbuf)
        mine = (src if src is not None else out).copy()
        eng = self._engine
        if self._rank > 0:
            prev = np.empty_like(mine)
            req = eng.post(self._cctx, self._members[self._rank - 1], SCAN_TAG, memoryview(prev).cast("B"))
            eng.wait(req)
            total = np.empty_like(mine)
            reduce_to(op, prev, mine, total)
        else:
            prev, total = None, mine
        if self._rank < self._size - 1:
            eng.wait(eng.send(self._cctx, self._members[self._rank + 1], SCAN_TAG, memoryview(total).cast("B"),
                              total.nbytes, obj=False))
        if exclusive:
            if prev is not None:
                out[...] = prev
        else:
            out[...] = total

    def Scan(self, sendbuf: Any, recvbuf: Any, op: Op = SUM) -> None:  # noqa: N802
        self._scan_buf(sendbuf, recvbuf, op, False)

    def Exscan(self, sendbuf: Any, recvbuf: Any, op: Op = SUM) -> None:  # noqa: N802
        self._scan_buf(sendbuf, recvbuf, op, True)
