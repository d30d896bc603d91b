"""Run a collective schedule (algorithms.py) over the point-to-point engine.

Theory of operation
- A schedule says, per round, which blocks of the rank's working data go to or come from which peer.
  All sends of a round are posted first, from the data as it is at the start of the round; then all
  receives are posted; the round ends when every receive *and* every send has completed (a same-host
  peer may be reading a sent block straight out of this process, so it must not change before the
  peer's ACK); only then are received blocks stored or reduced, in the listed order.
- ``BufStore`` keeps blocks in numpy memory. A block may still live in the caller's send buffer
  (``src``) until it is first written, so Allreduce never pays an initial copy of its input. A block
  received into without being sent in the same round goes straight into place, with no temporary.
- ``ObjStore`` keeps Python objects, one per block, and moves them pickled.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import MpiError
from .algorithms import Schedule
from .ops import Op, reduce_buffers, reduce_objects
from .p2p import Engine
from .pickling import dumps

COLL_TAG = 0


def _adjacent(bounds: Sequence[tuple[int, int]], blocks: Sequence[int]) -> bool:
    """Do ``blocks`` lie back to back in memory, in the listed order (vector collectives may place
    blocks anywhere, so block numbers alone say nothing)?"""
    return all(bounds[a][1] == bounds[b][0] for a, b in zip(blocks, blocks[1:], strict=False))


def reduce_to(op: Op, left: np.ndarray, right: np.ndarray, out: np.ndarray) -> None:
    """out = left op right (MPI order: ``left`` comes from lower ranks); one pass for plain ufuncs."""
    ufunc = _UFUNCS.get(op.name) if op.is_predefined else None
    if ufunc is not None and out.dtype.fields is None:
        ufunc(left, right, out=out)
        return
    tmp = right.copy()
    reduce_buffers(op, left, tmp)
    out[...] = tmp


_UFUNCS = {"SUM": np.add, "PROD": np.multiply, "MAX": np.maximum, "MIN": np.minimum,
           "BAND": np.bitwise_and, "BOR": np.bitwise_or, "BXOR": np.bitwise_xor}


class BufStore:
    """Working blocks over numpy memory: ``acc`` is the result, ``src`` the initial content."""

    def __init__(self, acc: np.ndarray, bounds: Sequence[tuple[int, int]], src: np.ndarray | None = None,
                 op: Op | None = None, filled: bool = False) -> None:
        self.acc, self.src, self.bounds, self.op = acc, src, list(bounds), op
        self.in_acc = [filled or src is None] * len(self.bounds)
        self.whole = (0, acc.shape[0])

    def _range(self, blocks: Sequence[int]) -> tuple[int, int]:
        if not blocks:
            return self.whole
        return self.bounds[blocks[0]][0], self.bounds[blocks[-1]][1]

    def _arr(self, b: int) -> np.ndarray:
        lo, hi = self.bounds[b]
        return self.acc[lo:hi] if self.in_acc[b] or self.src is None else self.src[lo:hi]

    def out(self, blocks: Sequence[int]) -> Any:
        blocks = list(blocks) if blocks else list(range(len(self.bounds)))
        if _adjacent(self.bounds, blocks):
            srcs = {self.in_acc[b] for b in blocks}
            if len(srcs) == 1:
                lo, hi = self._range(blocks)
                arr = self.acc if srcs.pop() or self.src is None else self.src
                return arr[lo:hi].data.cast("B")
        return np.concatenate([self._arr(b) for b in blocks]).data.cast("B")

    def target(self, blocks: Sequence[int], reduce: bool, busy: set[int]) -> tuple[np.ndarray, bool]:
        """Where to receive: (array, direct) — direct means it already is the destination."""
        blist = list(blocks) if blocks else list(range(len(self.bounds)))
        lo, hi = self._range(blist)
        if not reduce and _adjacent(self.bounds, blist) and not busy.intersection(blist):
            return self.acc[lo:hi], True
        n = sum(self.bounds[b][1] - self.bounds[b][0] for b in blist)
        return np.empty(n, dtype=self.acc.dtype), False

    def apply(self, blocks: Sequence[int], data: np.ndarray, direct: bool, reduce: bool, left: bool,
              also_reduce: Sequence[int] = ()) -> None:
        blist = list(blocks) if blocks else list(range(len(self.bounds)))
        off = 0
        for b in blist:
            lo, hi = self.bounds[b]
            piece = data[off:off + hi - lo]
            off += hi - lo
            if reduce:
                self._reduce_into(b, piece, left)
            elif not direct:
                self.acc[lo:hi] = piece
            self.in_acc[b] = True
        for b in also_reduce:  # scan: the same received data, reduced into one more block
            self._reduce_into(b, data, left)
            self.in_acc[b] = True

    def _reduce_into(self, b: int, piece: np.ndarray, left: bool) -> None:
        assert self.op is not None
        lo, hi = self.bounds[b]
        cur, out = self._arr(b), self.acc[lo:hi]
        if left:
            reduce_to(self.op, piece, cur, out)
        else:
            reduce_to(self.op, cur, piece, out)

    def finish(self) -> None:
        if self.src is not None:
            for b, done in enumerate(self.in_acc):
                if not done:
                    lo, hi = self.bounds[b]
                    self.acc[lo:hi] = self.src[lo:hi]


class ObjStore:
    def __init__(self, blocks: list[Any], op: Op | None = None) -> None:
        self.blocks, self.op = blocks, op


def run_buffers(engine: Engine, ctx: int, members: Sequence[int], schedule: Schedule, store: BufStore) -> None:
    """Execute ``schedule`` over numpy blocks; ``members`` maps communicator rank to world rank."""
    itemsize = store.acc.dtype.itemsize
    for rnd in schedule:
        sends = []
        busy: set[int] = set()
        for x in rnd:
            if x.send:
                mem = store.out(x.blocks)
                sends.append(engine.send(ctx, members[x.peer], COLL_TAG, mem, mem.nbytes, obj=False))
                busy.update(x.blocks if x.blocks else range(len(store.bounds)))
        recvs = []
        for x in rnd:
            if not x.send:
                arr, direct = store.target(x.blocks, x.reduce, busy)
                req = engine.post(ctx, members[x.peer], COLL_TAG, arr.data.cast("B"))
                recvs.append((x, arr, direct, req))
        for s in sends:
            engine.wait(s)
        for x, arr, direct, req in recvs:
            engine.wait(req)
            if req.error is not None:
                raise req.error
            if req.nbytes != arr.shape[0] * itemsize:
                raise MpiError(f"collective message of {req.nbytes} bytes where {arr.nbytes} were expected: "
                               "the ranks passed different counts or datatypes", 15)
            store.apply(x.blocks, arr, direct, x.reduce, x.left, x.also_reduce)
    store.finish()


def run_objects(engine: Engine, ctx: int, members: Sequence[int], schedule: Schedule, store: ObjStore) -> None:

    nb = len(store.blocks)
    for rnd in schedule:
        sends = []
        for x in rnd:
            if x.send:
                idx = x.blocks if x.blocks else range(nb)
                data = dumps([store.blocks[b] for b in idx])
                sends.append(engine.send(ctx, members[x.peer], COLL_TAG, data, len(data), obj=True))
        recvs = [(x, engine.post(ctx, members[x.peer], COLL_TAG, None)) for x in rnd if not x.send]
        for s in sends:
            engine.wait(s)
        for x, req in recvs:
            engine.wait(req)
            if req.error is not None:
                raise req.error
            targets = list(x.blocks) if x.blocks else list(range(nb))
            for b, value in zip(targets, req.value, strict=True):
                if x.reduce:
                    assert store.op is not None
                    cur = store.blocks[b]
                    value = reduce_objects(store.op, value, cur) if x.left else reduce_objects(store.op, cur, value)
                store.blocks[b] = value
