"""Point-to-point matching: posted receives, unexpected messages, eager and rendezvous sends.

Theory of operation
- A message is matched by (context, source, tag) in arrival order. Each ordered pair of ranks has one
  FIFO channel (fabric.py) and both the posted list and the unexpected queue are scanned oldest first,
  so MPI's non-overtaking rule holds per (source, tag, communicator). ``ANY_TAG`` never matches the
  negative tags the runtime uses internally.
- Eager: a payload up to ``EAGER_LIMIT`` (or any payload to another host, or to oneself) travels in
  the record. An unexpected eager message is copied out of the ring; a matched one goes straight from
  the ring into the receive buffer.
- Rendezvous (same host, larger payloads): the record carries (pid, address, length) of the sender's
  buffer; whoever matches it copies it with one ``process_vm_readv`` and sends an ACK, which completes
  the sender's request. Until then the sender keeps a reference to its buffer.
  A blocking ``Send`` of a plain ndarray past ``shm.RNDV_FROM`` runs this protocol in C (``send_rndv``,
  and ``recv_buf`` copies and ACKs), falling back here whenever the other side or the ring does not fit.
- Synchronous sends (``ssend``) ask for the same ACK, sent when the message is matched.
- Handlers run inside ``Fabric.progress``: they never block and never re-enter the fabric, so an ACK
  that finds its ring full is deferred and flushed by the next wait.
"""

from __future__ import annotations

import os
import pickle
import struct
from collections import deque
from typing import Any

from ..errors import MpiError
from ..tunables import DIRECT_SPINS, RNDV_SPIN_NS
from .fabric import Fabric
from .pickling import loads
from .shm import EAGER_LIMIT, REC, RING_DATA, buffer_address, cma_read

RING_MASK = RING_DATA - 1
_pickle_loads = pickle.loads
_unpack = REC.unpack_from

ANY_SOURCE = -1
ANY_TAG = -1
PROC_NULL = -2

K_BUF, K_OBJ, K_RTS_BUF, K_RTS_OBJ, K_ACK = 1, 2, 3, 4, 5
F_SYNC = 1
RTS = struct.Struct("<iQQ")
ERR_TRUNCATE = 15
ERR_RANK = 6
ERR_TAG = 4


class Msg:
    """An unexpected message: arrived before any receive matched it."""

    __slots__ = ("arg", "data", "flags", "kind", "nbytes", "src", "tag")

    def __init__(self, kind: int, flags: int, src: int, tag: int, arg: int, data: bytes) -> None:
        self.kind, self.flags, self.src, self.tag, self.arg, self.data = kind, flags, src, tag, arg, data
        self.nbytes = RTS.unpack_from(data)[2] if kind in (K_RTS_BUF, K_RTS_OBJ) else len(data)


class RecvReq:
    __slots__ = ("cancelled", "ctx", "done", "error", "mem", "msg_src", "msg_tag", "nbytes", "src", "tag", "value")

    def __init__(self, ctx: int, src: int, tag: int, mem: memoryview | None) -> None:
        self.ctx, self.src, self.tag, self.mem = ctx, src, tag, mem
        self.done = self.cancelled = False
        self.error: MpiError | None = None
        self.msg_src, self.msg_tag, self.nbytes = src, tag, 0
        self.value: Any = None


class SendReq:
    __slots__ = ("done", "keep")

    def __init__(self, keep: Any = None, done: bool = False) -> None:
        self.keep, self.done = keep, done


SENT = SendReq(done=True)


class _AnyDone:
    """``done`` when any of the inner requests is (for ``Engine.wait``)."""

    __slots__ = ("inners",)

    def __init__(self, inners: list[RecvReq | SendReq]) -> None:
        self.inners = inners

    @property
    def done(self) -> bool:
        return any(r.done for r in self.inners)


class _AllDone(_AnyDone):
    __slots__ = ()

    @property
    def done(self) -> bool:
        return all(r.done for r in self.inners)


class Engine:
    def __init__(self, fabric: Fabric) -> None:
        self.f = fabric
        fabric.handler = self._on_record
        self.rank = fabric.rank
        self.posted: dict[int, list[RecvReq]] = {}
        self.unexpected: dict[int, deque[Msg]] = {}
        self.sends: dict[int, SendReq] = {}
        self.deferred: list[tuple[int, int]] = []
        self.sinking: dict[int, RecvReq] = {}  # source -> the receive its next TCP record lands in  # ACKs whose ring was full: (dst, msg id)
        self._next = 1
        self.pid = os.getpid()
        # Negative contexts below -2 are one-sided service contexts: their records go to these handlers
        # (rma_remote.py), whatever the program is blocked in, and never to the matching queues.
        self.services: dict[int, Any] = {}

    # --- sending ----------------------------------------------------------------------------
    def send(self, ctx: int, dst: int, tag: int, mem: Any, nbytes: int, obj: bool, sync: bool = False) -> SendReq:
        """Start a send; the returned request is done when the buffer may be reused."""
        f = self.f
        if nbytes <= EAGER_LIMIT or dst == self.rank or not f.is_local(dst):
            if not sync:
                f.send(dst, K_OBJ if obj else K_BUF, 0, ctx, tag, 0, mem, nbytes)
                return SENT
            mid = self._id()
            req = self.sends[mid] = SendReq()
            f.send(dst, K_OBJ if obj else K_BUF, F_SYNC, ctx, tag, mid, mem, nbytes)
            return req
        mid = self._id()
        req = self.sends[mid] = SendReq(keep=mem)
        addr = buffer_address(mem if isinstance(mem, memoryview) else memoryview(mem))
        f.send(dst, K_RTS_OBJ if obj else K_RTS_BUF, 0, ctx, tag, mid, RTS.pack(self.pid, addr, nbytes), RTS.size)
        return req

    def send_rndv(self, prod: Any, dst: int, buf: Any, ctx: int, tag: int) -> bool:
        """A blocking rendezvous send of a plain ndarray to a same-host rank, in C (``send_rndv``): the RTS,
        then a spin for the ACK that the receiver's ``recv_buf`` sends once it has copied the array. False:
        not handled (the general path sends it)."""
        f = self.f
        cons = f.fast_in[dst]
        if cons is None:
            return False
        mid = self._id()
        rc = prod.send_rndv(buf, ctx, tag, mid, self.pid, cons, 0 if f.yield_spin else RNDV_SPIN_NS)
        if rc == 1:
            return True
        if rc != 2:
            return False
        req = self.sends[mid] = SendReq(keep=buf)  # the ACK is still to come: handled by _on_record
        self.wait(req)
        return True

    def _id(self) -> int:
        self._next += 1
        return self._next

    # --- receiving --------------------------------------------------------------------------
    def post(self, ctx: int, src: int, tag: int, mem: memoryview | None) -> RecvReq:
        """Post a receive (``mem`` None: a pickled object). It may complete at once from the queue."""
        req = RecvReq(ctx, src, tag, mem)
        q = self.unexpected.get(ctx)
        if q:
            for m in q:
                if (src == m.src or src == ANY_SOURCE) and (tag == m.tag or (tag == ANY_TAG and m.tag >= 0)):
                    q.remove(m)
                    self._complete(req, m.kind, m.flags, m.src, m.tag, m.arg, m.data)
                    return req
        lst = self.posted.get(ctx)
        if lst is None:
            lst = self.posted[ctx] = []
        lst.append(req)
        return req

    def recv_direct(self, ctx: int, src: int, tag: int, mem: memoryview | None) -> tuple[int, int, Any]:
        """Blocking receive of a small message from one same-host rank, straight off its ring.

        The fast path of ``Recv``/``recv`` (``mem`` None: a pickled object): when nothing else is
        pending on this context (no unexpected message, no posted receive, no deferred ACK), the next
        record of ``src``'s ring is the one this receive matches, so it is taken without the matching
        machinery. Returns ``(nbytes, tag, value)``, or ``(-1, 0, None)`` when the general path must
        take over (a record that does not match simply, or nothing within a short spin)."""
        c = self.f.consumer_of.get(src)
        if c is None or self.deferred or self.unexpected.get(ctx) or self.posted.get(ctx):
            return -1, 0, None
        words, data, head_i, tail = self.f.inbox.words, c.data, c.head_i, c.tail
        want = K_BUF if mem is not None else K_OBJ
        for _ in range(DIRECT_SPINS):
            if words[head_i] == tail:
                continue
            pos = tail & RING_MASK
            kind, flags, rctx, _src, rtag, _arg, plen = _unpack(data, pos)
            if kind != want or flags or rctx != ctx or (mem is not None and plen > mem.nbytes) or not (
                    rtag == tag or (tag == ANY_TAG and rtag >= 0)):
                return -1, 0, None  # a PAD, a rendezvous, another context or tag: the general path sorts it out
            start = pos + 32
            value: Any = None
            if mem is not None:
                if plen:
                    mem[:plen] = data[start:start + plen]
            else:
                try:
                    chunk = data[start:start + plen]
                    # a plain pickle (starts with PROTO, not the out-of-band frame's "G"): no detour
                    value = _pickle_loads(chunk) if plen and data[start] != 0x47 else loads(chunk)
                except Exception as exc:  # a bad pickle fails this receive, not the engine
                    value = MpiError(f"could not unpickle the message from rank {src}: {exc!r}")
            c.tail = tail = tail + ((plen + 95) & -64)
            words[c.tail_i] = tail
            peer = c.peer_words
            if peer is not None and peer[0]:
                self.f.doorbell.ring(src)  # it may sleep waiting for room in this ring
            if isinstance(value, MpiError):
                raise value
            return plen, rtag, value
        return -1, 0, None

    def send_direct(self, ctx: int, dst: int, tag: int, mem: Any, nbytes: int, obj: bool) -> bool:
        """A small eager send to a same-host rank, straight into its ring; False: use ``send``."""
        prod = self.f.producers[dst]
        if prod is None or nbytes > EAGER_LIMIT:
            return False
        if not prod.try_put(K_OBJ if obj else K_BUF, 0, ctx, self.rank, tag, 0, mem, nbytes):
            return False  # the ring is full: the general path waits for room (and progresses)
        if prod.words[0]:
            self.f.doorbell.ring(dst)
        return True

    def cancel(self, req: RecvReq) -> bool:
        lst = self.posted.get(req.ctx)
        if lst and req in lst:
            lst.remove(req)
            req.cancelled = req.done = True
            return True
        return False

    def probe(self, ctx: int, src: int, tag: int) -> Msg | None:
        """The first unexpected message that would match, without receiving it."""
        self.progress()
        q = self.unexpected.get(ctx)
        if q:
            for m in q:
                if (src == m.src or src == ANY_SOURCE) and (tag == m.tag or (tag == ANY_TAG and m.tag >= 0)):
                    return m
        return None

    def progress(self) -> int:
        n = self.f.progress()
        if self.deferred:
            self._flush()
        return n

    def wait(self, done: Any) -> None:
        """Progress until ``done.done`` (a request) holds."""
        if not done.done:
            self.f.wait_until(lambda: done.done or bool(self.deferred and self._flush()))

    def _flush(self) -> bool:
        pending = self.deferred[:]
        self.deferred.clear()  # in place: p2p_api.Recv appends to this list too
        for dst, mid in pending:
            if not self._ack(dst, mid):
                self.deferred.append((dst, mid))
        return False

    def _ack(self, dst: int, mid: int) -> bool:
        prod = self.f.producers[dst]
        if prod is None:
            self.f.send(dst, K_ACK, 0, 0, 0, mid)
            return True
        if not prod.try_put(K_ACK, 0, 0, self.rank, 0, mid, b"", 0):
            return False
        if prod.words[0]:
            self.f.doorbell.ring(dst)
        return True

    def sink(self, src: int, header: memoryview, plen: int) -> memoryview | None:
        """TCP links ask, once a large record's header is in: where should its payload go? If a posted
        receive matches it now, straight into that receive's buffer (no copy afterwards). The receive
        leaves the posted list at once, so nothing else can match it before the payload is complete."""
        kind, flags, ctx, _src, tag, _arg, _plen = _unpack(header, 0)
        if kind != K_BUF or flags:
            return None
        posted = self.posted.get(ctx)
        if not posted:
            return None
        for i, r in enumerate(posted):
            if (r.src == src or r.src == ANY_SOURCE) and (r.tag == tag or (r.tag == ANY_TAG and tag >= 0)):
                if r.mem is None or r.mem.nbytes < plen:
                    return None  # an object receive, or truncation: the general path reports it
                del posted[i]
                self.sinking[src] = r
                return r.mem[:plen]
        return None

    def _on_record(self, kind: int, flags: int, ctx: int, src: int, tag: int, arg: int, payload: memoryview) -> None:
        if self.sinking:
            r = self.sinking.pop(src, None)
            if r is not None:  # its payload was received into r's buffer (sink): complete without a copy
                r.msg_src, r.msg_tag, r.nbytes, r.done = src, tag, payload.nbytes, True
                return
        if kind == K_ACK:
            req = self.sends.pop(arg, None)
            if req is not None:
                req.done, req.keep = True, None
            return
        posted = self.posted.get(ctx)
        if posted:
            for i, r in enumerate(posted):
                if (r.src == src or r.src == ANY_SOURCE) and (r.tag == tag or (r.tag == ANY_TAG and tag >= 0)):
                    del posted[i]
                    self._complete(r, kind, flags, src, tag, arg, payload)
                    return
        if ctx < -2 and ctx in self.services:
            self.services[ctx](kind, src, tag, arg, payload)
            return
        q = self.unexpected.get(ctx)
        if q is None:
            q = self.unexpected[ctx] = deque()
        q.append(Msg(kind, flags, src, tag, arg, bytes(payload)))

    def _complete(self, r: RecvReq, kind: int, flags: int, src: int, tag: int, arg: int, payload: Any) -> None:
        r.msg_src, r.msg_tag = src, tag
        rts = kind in (K_RTS_BUF, K_RTS_OBJ)
        if rts:
            pid, addr, n = RTS.unpack_from(payload)
        else:
            n = len(payload)
        r.nbytes = n
        try:
            mem = r.mem
            if mem is not None:
                if n > mem.nbytes:
                    r.error = MpiError(f"message truncated: {n} bytes arrived from rank {src} (tag {tag}) for a "
                                       f"receive buffer of {mem.nbytes} bytes", ERR_TRUNCATE)
                elif rts:
                    cma_read(pid, addr, mem[:n])
                elif n:
                    mem[:n] = payload
            else:
                owned = False
                if rts:
                    data = bytearray(n)
                    cma_read(pid, addr, memoryview(data))
                    payload, owned = data, True
                r.value = loads(payload, owned) if n else None  # mpi4py unpickles buffer messages too
        except MpiError as exc:
            r.error = exc
        except Exception as exc:  # a bad pickle fails this receive, not the engine
            r.error = MpiError(f"could not unpickle the message from rank {src}: {exc!r}")
        if (rts or flags & F_SYNC) and not self._ack(src, arg):
            self.deferred.append((src, arg))
        r.done = True
