"""Point-to-point communication of a communicator: objects (pickled) and buffers, blocking and not,
probes, and persistent requests (``Send_init``/``Recv_init`` ... and ``Prequest``).

``PointToPoint`` is a mixin of ``Comm`` (comm.py), as ``Collectives`` is. Its traffic uses the
communicator's point-to-point context ``_ctx`` (``2*cid``).
"""

from __future__ import annotations

import pickle
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..errors import MpiError
from ..tunables import DIRECT_SPIN_NS, OBJ_DIRECT_MAX
from .argcheck import as_int
from .buffers import buffer_bytes, parse_buffer
from .p2p import ANY_SOURCE, ANY_TAG, ERR_RANK, ERR_TAG, PROC_NULL, Engine, RecvReq
from .pickling import dumps, loads
from .request import REQUEST_NULL, Request, Status, completed_request, fill_status

if TYPE_CHECKING:
    from .shm import FastConsumer, FastProducer

_pickle_loads = pickle.loads


class PointToPoint:
    _engine: Engine
    _members: list[int]
    _index: dict[int, int]
    _size: int
    _ctx: int
    _out: list[FastProducer | None]  # by world rank: the C ring to a same-host rank (fabric.fast_out)
    _in: list[FastConsumer | None]

    # --- helpers -----------------------------------------------------------------------------
    def _dest(self, dest: int) -> int:
        dest = _as_int(dest)
        if 0 <= dest < self._size:
            return self._members[dest]
        raise MpiError(f"invalid rank {dest}: communicator has ranks 0..{self._size - 1}", ERR_RANK)

    def _source(self, source: int) -> int:
        source = _as_int(source)
        if source == ANY_SOURCE:
            return ANY_SOURCE
        return self._dest(source)

    @staticmethod
    def _check_tag(tag: int, recv: bool) -> None:
        if tag < 0 and not (recv and tag == ANY_TAG):
            raise MpiError(f"invalid tag {tag}: tags are 0..TAG_UB", ERR_TAG)

    def _to_comm(self, world_rank: int) -> int:
        return self._index.get(world_rank, world_rank)

    # --- point-to-point: objects ---------------------------------------------------------------
    def _send_obj(self, obj: Any, dest: int, tag: int, sync: bool, wait: bool) -> Request:
        self._check_tag(tag, False)
        if dest == PROC_NULL:
            return completed_request()
        data = dumps(obj)
        inner = self._engine.send(self._ctx, self._dest(dest), tag, data, len(data), obj=True, sync=sync)
        if wait:
            self._engine.wait(inner)
            return completed_request()
        return Request(self._engine, inner)

    def send(self, obj: Any, dest: int, tag: int = 0) -> None:
        if type(dest) is not int:
            dest = _as_int(dest)
        if tag < 0 or dest < 0 or dest >= self._size:
            self._send_obj(obj, dest, tag, False, True)  # PROC_NULL, or the error
            return
        data = dumps(obj)
        eng, w = self._engine, self._members[dest]
        prod = self._out[w]
        if prod is not None:
            if type(tag) is int and prod.send_obj(data, self._ctx, tag) > 0:
                return  # one C call (shm.FastProducer)
        elif eng.send_direct(self._ctx, w, tag, data, len(data), True):
            return
        inner = eng.send(self._ctx, w, tag, data, len(data), True)
        if not inner.done:
            eng.wait(inner)

    def ssend(self, obj: Any, dest: int, tag: int = 0) -> None:
        self._send_obj(obj, dest, tag, True, True)

    def bsend(self, obj: Any, dest: int, tag: int = 0) -> None:
        """Buffered: the pickle is the buffer, so this returns at once even for a large message."""
        self._send_obj(obj, dest, tag, False, False)

    def ibsend(self, obj: Any, dest: int, tag: int = 0) -> Request:
        self._send_obj(obj, dest, tag, False, False)
        return completed_request()

    def isend(self, obj: Any, dest: int, tag: int = 0) -> Request:
        return self._send_obj(obj, dest, tag, False, False)

    def issend(self, obj: Any, dest: int, tag: int = 0) -> Request:
        return self._send_obj(obj, dest, tag, True, False)

    def _post(self, source: int, tag: int, mem: memoryview | None) -> RecvReq:
        self._check_tag(tag, True)
        if source == PROC_NULL:
            req = RecvReq(self._ctx, PROC_NULL, ANY_TAG, mem)
            req.done = True
            req.msg_src, req.msg_tag = PROC_NULL, ANY_TAG
            return req
        return self._engine.post(self._ctx, self._source(source), tag, mem)

    def recv(self, buf: Any = None, source: int = ANY_SOURCE, tag: int = ANY_TAG, status: Status | None = None) -> Any:
        if buf is not None:
            warnings.warn("the 'buf' argument is deprecated", UserWarning, stacklevel=2)
        if type(source) is not int:
            source = _as_int(source)
        # Written out again in Recv rather than shared: a common helper would cost a call per message.
        if 0 <= source < self._size and tag >= ANY_TAG:  # the common case, without the checks of _post
            eng, ctx, w = self._engine, self._ctx, self._members[source]
            cons = self._in[w]
            data: Any = False
            if cons is not None and type(tag) is int and not (
                    eng.deferred or eng.unexpected.get(ctx) or eng.posted.get(ctx)):  # as in recv_direct
                data = cons.recv_obj(ctx, tag, DIRECT_SPIN_NS, OBJ_DIRECT_MAX)
                if type(data) is bytearray:  # the pickle, taken off the ring in C (shm.FastConsumer)
                    try:
                        # a plain pickle (starts with PROTO, not the out-of-band frame's "G"): no detour
                        value = _pickle_loads(data) if data and data[0] != 0x47 else loads(data, True)
                    except Exception as exc:  # a bad pickle fails this receive only
                        raise MpiError(f"could not unpickle the message from rank {w}: {exc!r}") from None
                    if status is not None:
                        fill_status(status, source, cons.last_tag, len(data))
                    return value
            if data is False:  # not tried, or a larger pickle: recv_direct unpickles it in place
                n, rtag, value = eng.recv_direct(ctx, w, tag, None)
                if n >= 0:  # taken straight off the sender's ring
                    if status is not None:
                        fill_status(status, source, rtag, n)
                    return value
            req = eng.post(ctx, w, tag, None)
        else:
            req = self._post(source, tag, None)
        return self._finish_recv(req, status).value

    def irecv(self, buf: Any = None, source: int = ANY_SOURCE, tag: int = ANY_TAG) -> Request:
        return Request(self._engine, self._post(source, tag, None), self._to_comm, obj=True)

    def sendrecv(self, sendobj: Any, dest: int, sendtag: int = 0, recvbuf: Any = None, source: int = ANY_SOURCE,
                 recvtag: int = ANY_TAG, status: Status | None = None) -> Any:
        rreq = self._post(source, recvtag, None)
        sreq = self._send_obj(sendobj, dest, sendtag, False, False)
        value = Request(self._engine, rreq, self._to_comm).wait(status)
        sreq.Wait()
        return value

    def probe(self, source: int = ANY_SOURCE, tag: int = ANY_TAG, status: Status | None = None) -> bool:
        return self.Probe(source, tag, status)

    def iprobe(self, source: int = ANY_SOURCE, tag: int = ANY_TAG, status: Status | None = None) -> bool:
        return self.Iprobe(source, tag, status)

    # --- point-to-point: buffers ---------------------------------------------------------------
    def _send_buf(self, buf: Any, dest: int, tag: int, sync: bool, wait: bool) -> Request:
        self._check_tag(tag, False)
        b = parse_buffer(buf, readonly=True, name="send buffer")
        if dest == PROC_NULL:
            return completed_request()
        inner = self._engine.send(self._ctx, self._dest(dest), tag, b.mem, b.nbytes, obj=False, sync=sync)
        if wait:
            if not inner.done:
                self._engine.wait(inner)
            return completed_request()
        return Request(self._engine, inner)

    def Send(self, buf: Any, dest: int, tag: int = 0) -> None:
        if type(dest) is int and 0 <= dest < self._size and type(tag) is int and tag >= 0:
            prod = self._out[self._members[dest]]
            if prod is not None:
                rc = prod.send_buf(buf, self._ctx, tag)
                if rc > 0:
                    return  # a small plain ndarray to a same-host rank: one C call (shm.FastProducer)
                if rc < 0 and self._engine.send_rndv(prod, self._members[dest], buf, self._ctx, tag):
                    return  # a larger one: rendezvous in C, the receiver copies it (shm.FastConsumer)
        if type(dest) is not int:
            dest = _as_int(dest)
        if tag < 0 or dest < 0 or dest >= self._size:
            self._send_buf(buf, dest, tag, False, True)  # PROC_NULL, or the error
            return
        mem = buffer_bytes(buf, True, "send buffer")
        eng, w = self._engine, self._members[dest]
        if eng.send_direct(self._ctx, w, tag, mem, mem.nbytes, False):
            return
        inner = eng.send(self._ctx, w, tag, mem, mem.nbytes, False)
        if not inner.done:
            eng.wait(inner)

    def Ssend(self, buf: Any, dest: int, tag: int = 0) -> None:
        self._send_buf(buf, dest, tag, True, True)

    Rsend = Send

    def Bsend(self, buf: Any, dest: int, tag: int = 0) -> None:
        """Buffered: the message is copied, so this returns at once even when a large one is not yet received."""
        self.Ibsend(buf, dest, tag)

    def Ibsend(self, buf: Any, dest: int, tag: int = 0) -> Request:
        b = parse_buffer(buf, readonly=True, name="send buffer")
        self._send_buf([bytes(b.mem), b.count, b.datatype] if b.nbytes else buf, dest, tag, False, False)
        return completed_request()

    def Isend(self, buf: Any, dest: int, tag: int = 0) -> Request:
        return self._send_buf(buf, dest, tag, False, False)

    def Issend(self, buf: Any, dest: int, tag: int = 0) -> Request:
        return self._send_buf(buf, dest, tag, True, False)

    Irsend = Isend

    # --- persistent requests -------------------------------------------------------------------
    def Send_init(self, buf: Any, dest: int, tag: int = 0) -> Prequest:
        return Prequest(None, lambda: self.Isend(buf, dest, tag))

    def Ssend_init(self, buf: Any, dest: int, tag: int = 0) -> Prequest:
        return Prequest(None, lambda: self.Issend(buf, dest, tag))

    def Bsend_init(self, buf: Any, dest: int, tag: int = 0) -> Prequest:
        return Prequest(None, lambda: self.Ibsend(buf, dest, tag))

    def Rsend_init(self, buf: Any, dest: int, tag: int = 0) -> Prequest:
        return Prequest(None, lambda: self.Irsend(buf, dest, tag))

    def Recv_init(self, buf: Any, source: int = ANY_SOURCE, tag: int = ANY_TAG) -> Prequest:
        return Prequest(None, lambda: self.Irecv(buf, source, tag))

    def Recv(self, buf: Any, source: int = ANY_SOURCE, tag: int = ANY_TAG, status: Status | None = None) -> None:
        direct = True
        if type(source) is int and 0 <= source < self._size and type(tag) is int and tag >= ANY_TAG:
            cons = self._in[self._members[source]]
            if cons is not None:
                eng, ctx = self._engine, self._ctx
                # As Engine.recv_direct: only when nothing else is pending is the next record of the
                # source's ring the one this receive matches.
                if not (eng.deferred or eng.unexpected.get(ctx) or eng.posted.get(ctx)):
                    n = cons.recv_buf(buf, ctx, tag, DIRECT_SPIN_NS)
                    if n >= 0:  # a small plain ndarray, straight off the ring in C (shm.FastConsumer)
                        if status is not None:
                            fill_status(status, source, cons.last_tag, n)
                        return
                    if n == -3:  # a rendezvous, copied in C, whose ACK found the ring full: send it later
                        eng.deferred.append((self._members[source], cons.last_arg))
                        if status is not None:
                            fill_status(status, source, cons.last_tag, cons.last_len)
                        return
                    direct = n == -1  # -2: the C receive saw what recv_direct would see; go general
        mem = buffer_bytes(buf, False, "receive buffer")
        if type(source) is not int:
            source = _as_int(source)
        if 0 <= source < self._size and tag >= ANY_TAG:  # the common case, without the checks of _post
            if direct:
                n, rtag, _ = self._engine.recv_direct(self._ctx, self._members[source], tag, mem)
                if n >= 0:  # taken straight off the sender's ring
                    if status is not None:
                        fill_status(status, source, rtag, n)
                    return
            req = self._engine.post(self._ctx, self._members[source], tag, mem)
        else:
            req = self._post(source, tag, mem)
        self._finish_recv(req, status)

    def _finish_recv(self, req: Any, status: Status | None) -> Any:
        """The general path of recv/Recv (the ring fast paths above stay inline): wait, raise, fill status."""
        if not req.done:
            self._engine.wait(req)
        if req.error is not None:
            raise req.error
        if status is not None:
            src = req.msg_src
            fill_status(status, self._to_comm(src) if src >= 0 else src, req.msg_tag, req.nbytes)
        return req

    def Irecv(self, buf: Any, source: int = ANY_SOURCE, tag: int = ANY_TAG) -> Request:
        b = parse_buffer(buf, readonly=False, name="receive buffer")
        return Request(self._engine, self._post(source, tag, b.mem), self._to_comm)

    def Sendrecv(self, sendbuf: Any, dest: int, sendtag: int = 0, recvbuf: Any = None, source: int = ANY_SOURCE,
                 recvtag: int = ANY_TAG, status: Status | None = None) -> None:
        rb = parse_buffer(recvbuf, readonly=False, name="receive buffer")
        rreq = Request(self._engine, self._post(source, recvtag, rb.mem), self._to_comm)
        sreq = self._send_buf(sendbuf, dest, sendtag, False, False)
        rreq.Wait(status)
        sreq.Wait()

    def Sendrecv_replace(self, buf: Any, dest: int, sendtag: int = 0, source: int = ANY_SOURCE,
                         recvtag: int = ANY_TAG, status: Status | None = None) -> None:
        b = parse_buffer(buf, readonly=False, name="buffer")
        copy = bytes(b.mem)
        rreq = Request(self._engine, self._post(source, recvtag, b.mem), self._to_comm)
        sreq = self._send_buf([copy, b.count, b.datatype], dest, sendtag, False, False)
        rreq.Wait(status)
        sreq.Wait()

    def Probe(self, source: int = ANY_SOURCE, tag: int = ANY_TAG, status: Status | None = None) -> bool:
        self._check_tag(tag, True)
        if source == PROC_NULL:
            fill_status(status, PROC_NULL, ANY_TAG, 0)
            return True
        src = self._source(source)
        found: list[Any] = []

        def hit() -> bool:
            m = self._engine.probe(self._ctx, src, tag)
            if m is not None:
                found.append(m)
            return m is not None

        self._engine.f.wait_until(hit)
        m = found[0]
        fill_status(status, self._to_comm(m.src), m.tag, m.nbytes)
        return True

    def Iprobe(self, source: int = ANY_SOURCE, tag: int = ANY_TAG, status: Status | None = None) -> bool:
        self._check_tag(tag, True)
        if source == PROC_NULL:
            fill_status(status, PROC_NULL, ANY_TAG, 0)
            return True
        m = self._engine.probe(self._ctx, self._source(source), tag)
        if m is None:
            return False
        fill_status(status, self._to_comm(m.src), m.tag, m.nbytes)
        return True


# --- persistent requests ------------------------------------------------------------------------
_persistent: dict[int, Callable[[], Request]] = {}


class Prequest(Request):
    """A persistent request (Send_init/Recv_init...): ``Start`` begins the operation again each time.

    Completing it (Wait/Test...) makes it inactive, not null; ``Free`` makes it REQUEST_NULL.
    """

    def __init__(self, request: Any = None, start: Callable[[], Request] | None = None) -> None:
        super().__init__()
        if request is not None:
            if not isinstance(request, Request):
                raise TypeError(f"Argument 'request' has incorrect type (expected MPI.Prequest, "
                                f"got {type(request).__name__})")
            start = getattr(request, "_start", None)
            self._engine, self._inner, self._rank, self._obj = (request._engine, request._inner, request._rank,
                                                                request._obj)
        self._start = start
        if start is not None:
            _persistent[id(start)] = start

    def Start(self) -> None:
        if self._start is None:
            raise MpiError("MPI.Prequest.Start: invalid request (REQUEST_NULL)", 7)  # MPI_ERR_REQUEST
        if self._inner is not None:
            raise MpiError("MPI.Prequest.Start: the request is already active", 7)
        r = self._start()
        self._engine, self._inner, self._rank, self._obj = r._engine, r._inner, r._rank, r._obj

    start = Start

    @classmethod
    def Startall(cls, requests: Any) -> None:
        for r in requests:
            r.Start()

    startall = Startall

    def Free(self) -> None:
        if self._start is None:
            raise MpiError("MPI.Prequest.Free: invalid request (REQUEST_NULL)", 7)
        self._start, self._inner = None, None

    def free(self) -> None:
        self._start, self._inner = None, None

    def Cancel(self) -> None:
        if self._inner is not None:
            super().Cancel()

    cancel = Cancel

    def __bool__(self) -> bool:
        return self._start is not None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Request):
            return NotImplemented
        if self is other:
            return True
        theirs = getattr(other, "_start", None)
        if self._start is None:
            return theirs is None and other._inner is None
        if isinstance(other, Prequest):
            return theirs is self._start
        return other._inner is self._inner and other is not REQUEST_NULL

    def __ne__(self, other: object) -> bool:
        eq = self.__eq__(other)
        return eq if eq is NotImplemented else not eq

    def __hash__(self) -> int:
        return id(self)

    def __reduce__(self) -> tuple[Any, ...]:
        raise ValueError("cannot serialize 'mpi4py.MPI.Prequest' instance")

    @property
    def handle(self) -> int:
        return 0 if self._start is None else id(self._start)

    def toint(self) -> int:
        return self.handle

    def py2f(self) -> int:
        return self.handle

    @classmethod
    def fromhandle(cls, handle: int) -> Prequest:
        return cls(None, _persistent.get(handle))

    @classmethod
    def fromint(cls, arg: int, /) -> Prequest:
        return cls.fromhandle(arg)

    @classmethod
    def f2py(cls, arg: int) -> Prequest:
        return cls.fromhandle(arg)


def _as_int(value: Any) -> int:
    """Ranks and tags as mpi4py takes them: anything with ``__int__`` (``nprocs / 2`` is a float), not a string."""
    return as_int(value)
