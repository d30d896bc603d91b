"""One-sided operations on a rank of another host: requests over the world's TCP streams.

Theory of operation
- An origin sends each operation as one record on the window's service context (a negative context no
  communicator uses); the target's engine hands such records to the window's ``Service`` the moment
  its progress loop sees them (p2p.Engine.services), never to the matching queues. So a target serves
  one-sided traffic inside *any* MPI call it makes (a Fence, a Barrier, a Recv, an Unlock, Win.Free),
  without posting anything; a target that computes without calling MPI serves nothing until it does.
  docs/mpi.md ("One-sided communication") says why there is no progress thread.
- Per ordered pair the stream is FIFO and the service applies records in arrival order, so a FLUSH
  answered means every operation sent before it has been applied. Put and Accumulate are not
  answered (the origin remembers the target as *dirty* until a flush); Get, the fetching operations,
  LOCK, UNLOCK and FLUSH are, on the window's point-to-point context with tag ``REPLY``.
- A reply is one status byte (0 ok, 1 error, 2 lock busy) and the data or an error message; an error
  of an unanswered operation is kept and reported by the next answered one.
- LOCK never waits at the target (a handler must not block): the target tries the lock (rma_shm.py)
  on the origin's behalf and answers busy or granted; the origin retries, progressing meanwhile.
- The header is ``HDR`` (byte offset, byte count, length of a pickled ``(op, datatype)``); pickles
  come only from authenticated peers of the world (tcp.py's hello), as every lowercase message does.
"""

from __future__ import annotations

import pickle
import struct
import time
from collections.abc import Callable
from typing import Any

from ..errors import MpiError
from . import rma_shm
from .p2p import K_BUF, Engine
from .rma_apply import ACC, CAS, GET, PUT, apply

LOCK, UNLOCK, FLUSH = 6, 7, 8
REPLY = -77
HDR = struct.Struct("<qqI")
OK, FAILED, BUSY = 0, 1, 2

Region = Callable[[int, int], memoryview]  # (byte offset, byte count) -> this rank's window bytes


def service_ctx(cid: int) -> int:
    return -16 - cid


class Service:
    """The target side of a window for origins on other hosts (runs inside the engine's progress)."""

    def __init__(self, engine: Engine, reply_ctx: int, me: int, region: Region) -> None:
        self.engine, self.reply_ctx, self.me, self.region = engine, reply_ctx, me, region
        self.seg: rma_shm.Segment | None = None
        self.early: list[tuple[int, int, int, int, bytes]] = []
        self.errors: dict[int, str] = {}  # origin (world rank) -> first error of an unanswered operation

    def ready(self, seg: rma_shm.Segment) -> None:
        """The window exists here too: serve what a faster origin sent while it was being created."""
        self.seg = seg
        early, self.early = self.early, []
        for rec in early:
            self.handle(*rec[:4], memoryview(rec[4]))

    def handle(self, kind: int, src: int, tag: int, arg: int, payload: memoryview) -> None:
        if self.seg is None:
            self.early.append((kind, src, tag, arg, bytes(payload)))
            return
        off, n, mlen = HDR.unpack_from(payload, 0)
        body = payload[HDR.size:]
        try:
            if tag == LOCK:
                self._reply(src, OK if rma_shm.try_lock(self.seg.lock(self.me), bool(off)) else BUSY)
                return
            if tag == UNLOCK:
                rma_shm.unlock(self.seg.lock(self.me))
                self._answer(src)
                return
            if tag == FLUSH:
                self._answer(src)
                return
            meta = pickle.loads(body[:mlen]) if mlen else (None, None)
            op, dtype, segs = meta if len(meta) == 3 else (*meta, None)  # segs: a derived target datatype
            data = body[mlen:mlen + n]
            compare = body[mlen + n:mlen + 2 * n] if tag == CAS else None
            region = self.region(off, n)
            if tag in (PUT, GET):
                old = apply(tag, region, op, dtype, data, compare, segs)
            else:
                acc = self.seg.acc(self.me)
                rma_shm.lock_acc(acc)
                try:
                    old = apply(tag, region, op, dtype, data, compare, segs)
                finally:
                    rma_shm.unlock(acc)
        except Exception as exc:  # the origin's call fails, never the target's progress
            if tag in (PUT, ACC):
                self.errors.setdefault(src, f"{exc}")
            else:
                self._reply(src, FAILED, str(exc).encode())
            return
        if tag not in (PUT, ACC):
            self._answer(src, old or b"")

    def _answer(self, src: int, data: bytes = b"") -> None:
        err = self.errors.pop(src, None)
        if err is not None:
            self._reply(src, FAILED, err.encode())
        else:
            self._reply(src, OK, data)

    def _reply(self, src: int, status: int, data: bytes = b"") -> None:
        msg = bytes([status]) + data
        self.engine.f.send(src, K_BUF, 0, self.reply_ctx, REPLY, 0, msg, len(msg))


def request(engine: Engine, svc: int, reply_ctx: int, dst: int, tag: int, off: int, n: int,
            meta: tuple[Any, ...] | None, data: Any = b"", compare: Any = b"", answer: int = -1) -> bytes:
    """Send one operation; with ``answer`` >= 0 wait for the reply and return its data (``answer`` bytes
    at most), else return at once. Raises the target's error."""
    m = pickle.dumps(meta, protocol=5) if meta is not None else b""
    payload = b"".join((HDR.pack(off, n, len(m)), m, bytes(data), bytes(compare)))
    if answer < 0:
        engine.send(svc, dst, tag, payload, len(payload), False)
        return b""
    box = bytearray(1 + answer + 4096)  # room for an error message too
    r = engine.post(reply_ctx, dst, REPLY, memoryview(box))
    engine.send(svc, dst, tag, payload, len(payload), False)
    engine.wait(r)
    if r.error is not None:
        raise r.error
    if box[0] == FAILED:
        raise MpiError(f"one-sided operation at rank {dst} failed: {box[1:r.nbytes].decode(errors='replace')}",
                       rma_shm.ERR_RMA_RANGE)
    if box[0] == BUSY:
        return b"\x02"
    return bytes(box[1:r.nbytes])


def lock(engine: Engine, svc: int, reply_ctx: int, dst: int, exclusive: bool) -> None:
    """Take a passive-target lock at ``dst``: ask until granted, progressing (and so serving) meanwhile."""
    delay = 20e-6
    while request(engine, svc, reply_ctx, dst, LOCK, int(exclusive), 0, None, answer=0) == b"\x02":
        engine.f.wait_until(_after(time.perf_counter() + delay))
        delay = min(delay * 2, 2e-3)


def _after(deadline: float) -> Callable[[], bool]:
    return lambda: time.perf_counter() >= deadline
