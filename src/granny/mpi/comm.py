"""Communicators: mpi4py's Comm/Intracomm point-to-point API and communicator management.

Theory of operation
- A communicator is an ordered list of world ranks (``members``) plus a context id ``cid``. Its
  point-to-point traffic uses context ``2*cid`` and its collectives ``2*cid + 1``, so a collective
  never matches a user's receive.
- New context ids are agreed collectively: every member contributes the next id it considers free
  and the maximum wins (an allreduce over the parent). Two communicators that share a rank can
  therefore never share an id; disjoint ones (the colours of one Split) may, harmlessly.
- Lowercase methods pickle (protocol 5); capitalised methods move buffers without pickling.
- Blocking calls spin briefly and then sleep (see fabric.py); they never burn a core for long.
"""

from __future__ import annotations

import pickle
import sys
import threading
import warnings
from collections.abc import Callable
from typing import Any

from ..errors import MpiError
from . import runtime
from .collectives import Collectives
from .datatypes import buffer_bytes, parse_buffer
from .p2p import ANY_SOURCE, ANY_TAG, ERR_RANK, ERR_TAG, PROC_NULL, RecvReq
from .pickling import dumps
from .request import REQUEST_NULL, Request, Status, completed_request, fill_status

IDENT, CONGRUENT, SIMILAR, UNEQUAL = 0, 1, 2, 3
UNDEFINED = -32766


class NotImplementedMpi(NotImplementedError, AttributeError):
    """An MPI call granny does not implement (also an AttributeError, so ``hasattr`` says False)."""


_KNOWN_MISSING = {
    "Spawn", "Spawn_multiple", "Create_intercomm", "Accept", "Connect", "Join", "Create_graph", "Create_dist_graph",
    "Create_dist_graph_adjacent", "Ibarrier", "Ibcast", "Igather", "Igatherv", "Iscatter", "Iscatterv", "Iallgather",
    "Iallgatherv", "Ialltoall", "Ialltoallv", "Ialltoallw", "Ireduce", "Iallreduce", "Ireduce_scatter",
    "Ireduce_scatter_block", "Iscan", "Iexscan", "Alltoallw", "Neighbor_allgather", "Neighbor_alltoall",
    "Mprobe", "Improbe", "mprobe", "improbe", "Split_type", "Get_parent", "Create_from_group",
    "ibarrier", "Psend_init", "Precv_init", "Isendrecv", "Isendrecv_replace", "Attach_buffer", "Detach_buffer",
    "Flush_buffer", "Iflush_buffer", "Barrier_init", "Bcast_init", "Allreduce_init", "Reduce_init", "Gather_init",
    "Scatter_init", "Allgather_init", "Alltoall_init", "Create_errhandler", "Create_keyval", "Free_keyval",
    "Get_failed", "Ack_failed", "Agree", "Iagree", "Revoke", "Is_revoked", "Shrink", "Ishrink",
    # neighborhood collectives (mpi4py's Topocomm)
    "Neighbor_allgatherv", "Neighbor_alltoallv", "Neighbor_alltoallw", "Ineighbor_allgather",
    "Ineighbor_allgatherv", "Ineighbor_alltoall", "Ineighbor_alltoallv", "Ineighbor_alltoallw",
    "Neighbor_allgather_init", "Neighbor_allgatherv_init", "Neighbor_alltoall_init", "Neighbor_alltoallv_init",
    "Neighbor_alltoallw_init", "neighbor_allgather", "neighbor_alltoall",
}


class _Missing:
    """A class attribute for an MPI call granny lacks: any access raises NotImplementedMpi (an AttributeError,
    so ``hasattr(MPI.Comm, name)`` is False and ``MPI.Comm.name(...)`` raises NotImplementedError)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, obj: object, cls: type | None = None) -> Any:
        owner = cls.__name__ if cls is not None else type(obj).__name__
        raise NotImplementedMpi(f"MPI.{owner}.{self.name} is not implemented by granny")


class Comm(Collectives):
    """A communicator handle. ``Comm()`` is a null handle, ``Comm(comm)`` another handle to ``comm`` (as in
    mpi4py); granny builds real ones as ``Intracomm(members, cid, name)``."""

    def __new__(cls, comm: Any = None, *args: Any, **kwargs: Any) -> Comm:
        # mpi4py's Comm.__new__(cls, comm=None) copies the handle, so a subclass may override __new__
        # alone and call ``super().__new__(cls, comm)`` (mpi4py's demo/reductions); __init__ does it too.
        self = super().__new__(cls)
        if isinstance(comm, Comm) and not args and not kwargs:
            self.__dict__.update(comm.__dict__)
        return self

    def __init__(self, comm: Any = None, cid: int | None = None, name: str = "") -> None:
        if cid is None:
            if comm is None:
                self._set_null()
            elif isinstance(comm, Comm):
                self.__dict__.update(comm.__dict__)  # the same handle: shares attributes, locks, schedules
            else:
                raise TypeError(f"Argument 'comm' has incorrect type (expected MPI.Comm, got {type(comm).__name__})")
            return
        members: list[int] = comm
        rt = runtime.get()
        self._rt = rt
        self._engine = rt.world.engine
        self._members = members
        self._index = {w: i for i, w in enumerate(members)}
        self._rank = self._index.get(rt.world.rank, UNDEFINED)
        self._size = len(members)
        self._cid = cid
        self._ctx = 2 * cid
        self._cctx = 2 * cid + 1
        self._name = name
        self._freed = False
        self._hosts = [rt.world.hosts[w] for w in members]
        self._attrs: dict[int, Any] = {}
        self._locks: dict[Any, Any] = {}

    def _set_null(self) -> None:
        """Turn this handle into MPI_COMM_NULL (what Free does to the handle it is called on)."""
        self._members, self._index, self._size, self._rank, self._cid = [], {}, 0, UNDEFINED, -1
        self._ctx = self._cctx = -2
        self._name, self._freed, self._hosts, self._attrs, self._locks = "MPI_COMM_NULL", True, [], {}, {}
        if runtime.started():
            self._rt = runtime.get()
            self._engine = self._rt.world.engine

    def __getattr__(self, name: str) -> Any:
        if name in _KNOWN_MISSING:
            raise NotImplementedMpi(f"MPI.Comm.{name} is not implemented by granny")
        for klass in type(self).__mro__:  # a _Missing class attribute raised NotImplementedMpi, which
            if isinstance(klass.__dict__.get(name), _Missing):  # Python took as AttributeError: re-raise
                raise NotImplementedMpi(f"MPI.{klass.__name__}.{name} is not implemented by granny")
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    # --- environment --------------------------------------------------------------------------
    def Get_rank(self) -> int:  # noqa: N802
        return self._rank

    def Get_size(self) -> int:  # noqa: N802
        return self._size

    @property
    def rank(self) -> int:
        return self._rank

    @property
    def size(self) -> int:
        return self._size

    def Get_name(self) -> str:  # noqa: N802
        return self._name

    def Set_name(self, name: str) -> None:  # noqa: N802
        self._name = name

    name = property(Get_name, Set_name)

    def Is_inter(self) -> bool:  # noqa: N802
        return False

    def Is_intra(self) -> bool:  # noqa: N802
        return True

    is_inter = property(Is_inter)
    is_intra = property(Is_intra)

    def Get_topology(self) -> int:  # noqa: N802
        return UNDEFINED

    topology = property(Get_topology)

    @property
    def is_topo(self) -> bool:
        return self.Get_topology() != UNDEFINED

    def toint(self) -> int:
        """granny communicators have no integer handles (-1, as mpi4py reports an unavailable one)."""
        return -1

    py2f = toint

    def Get_group(self) -> Any:  # noqa: N802
        from .group import Group

        return Group(self._members)

    group = property(Get_group)

    def Get_attr(self, keyval: int) -> Any:  # noqa: N802
        from . import constants as c

        if keyval == c.TAG_UB:
            return c.TAG_UB_VALUE
        if keyval in (c.IO, c.HOST):
            return PROC_NULL
        if keyval == c.WTIME_IS_GLOBAL:
            return False
        if keyval == c.APPNUM:
            return None
        if keyval == c.UNIVERSE_SIZE:
            return self._rt.world.size
        if keyval == c.LASTUSEDCODE:
            return 0
        return self._attrs.get(keyval)

    def Set_attr(self, keyval: int, value: Any) -> None:  # noqa: N802
        self._attrs[keyval] = value

    def Delete_attr(self, keyval: int) -> None:  # noqa: N802
        self._attrs.pop(keyval, None)

    def Get_errhandler(self) -> Any:  # noqa: N802
        from . import constants as c

        return c.ERRORS_RETURN

    def Set_errhandler(self, errhandler: Any) -> None:  # noqa: N802
        """Errors always raise MPI.Exception (mpi4py's default, ERRORS_RETURN); the handler is recorded only."""

    def Call_errhandler(self, errorcode: int) -> None:  # noqa: N802
        raise MpiError(f"error code {errorcode}", errorcode)

    def Get_info(self) -> Any:  # noqa: N802
        from .group import Info

        return Info()

    def Set_info(self, info: Any) -> None:  # noqa: N802
        pass

    info = property(Get_info, Set_info)

    def Abort(self, errorcode: int = 0) -> None:  # noqa: N802
        runtime.abort(errorcode, self._rank)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Comm):
            return NotImplemented
        return self._cid == other._cid and self._members == other._members

    def __ne__(self, other: object) -> bool:
        eq = self.__eq__(other)
        return eq if eq is NotImplemented else not eq

    def __hash__(self) -> int:
        return hash((self._cid, tuple(self._members)))

    def __bool__(self) -> bool:
        return self._cid >= 0

    def __reduce__(self) -> tuple[Any, ...]:
        """COMM_NULL, COMM_SELF and COMM_WORLD pickle by name (as mpi4py's do); other communicators cannot."""
        if self._cid < 0 or (self._cid <= 1 and self == _predefined(self._cid)):
            return (_restore_comm, (self._cid, self is _predefined(self._cid), type(self)))
        raise ValueError(f"cannot serialize 'mpi4py.MPI.{type(self).__name__}' instance")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._name or self._cid} rank {self._rank} of {self._size}>"

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
        if eng.send_direct(self._ctx, w, tag, data, len(data), True):
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
        if 0 <= source < self._size and tag >= ANY_TAG:  # the common case, without the checks of _post
            n, rtag, value = self._engine.recv_direct(self._ctx, self._members[source], tag, None)
            if n >= 0:  # taken straight off the sender's ring
                if status is not None:
                    fill_status(status, source, rtag, n)
                return value
            req = self._engine.post(self._ctx, self._members[source], tag, None)
        else:
            req = self._post(source, tag, None)
        if not req.done:
            self._engine.wait(req)
        if req.error is not None:
            raise req.error
        if status is not None:
            src = req.msg_src
            fill_status(status, self._to_comm(src) if src >= 0 else src, req.msg_tag, req.nbytes)
        return req.value

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

    def Send(self, buf: Any, dest: int, tag: int = 0) -> None:  # noqa: N802
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

    def Ssend(self, buf: Any, dest: int, tag: int = 0) -> None:  # noqa: N802
        self._send_buf(buf, dest, tag, True, True)

    Rsend = Send

    def Bsend(self, buf: Any, dest: int, tag: int = 0) -> None:  # noqa: N802
        """Buffered: the message is copied, so this returns at once even when a large one is not yet received."""
        self.Ibsend(buf, dest, tag)

    def Ibsend(self, buf: Any, dest: int, tag: int = 0) -> Request:  # noqa: N802
        b = parse_buffer(buf, readonly=True, name="send buffer")
        self._send_buf([bytes(b.mem), b.count, b.datatype] if b.nbytes else buf, dest, tag, False, False)
        return completed_request()

    def Isend(self, buf: Any, dest: int, tag: int = 0) -> Request:  # noqa: N802
        return self._send_buf(buf, dest, tag, False, False)

    def Issend(self, buf: Any, dest: int, tag: int = 0) -> Request:  # noqa: N802
        return self._send_buf(buf, dest, tag, True, False)

    Irsend = Isend

    # --- persistent requests -------------------------------------------------------------------
    def Send_init(self, buf: Any, dest: int, tag: int = 0) -> Prequest:  # noqa: N802
        return Prequest(None, lambda: self.Isend(buf, dest, tag))

    def Ssend_init(self, buf: Any, dest: int, tag: int = 0) -> Prequest:  # noqa: N802
        return Prequest(None, lambda: self.Issend(buf, dest, tag))

    def Bsend_init(self, buf: Any, dest: int, tag: int = 0) -> Prequest:  # noqa: N802
        return Prequest(None, lambda: self.Ibsend(buf, dest, tag))

    def Rsend_init(self, buf: Any, dest: int, tag: int = 0) -> Prequest:  # noqa: N802
        return Prequest(None, lambda: self.Irsend(buf, dest, tag))

    def Recv_init(self, buf: Any, source: int = ANY_SOURCE, tag: int = ANY_TAG) -> Prequest:  # noqa: N802
        return Prequest(None, lambda: self.Irecv(buf, source, tag))

    def Recv(self, buf: Any, source: int = ANY_SOURCE, tag: int = ANY_TAG, status: Status | None = None) -> None:  # noqa: N802
        mem = buffer_bytes(buf, False, "receive buffer")
        if type(source) is not int:
            source = _as_int(source)
        if 0 <= source < self._size and tag >= ANY_TAG:  # the common case, without the checks of _post
            n, rtag, _ = self._engine.recv_direct(self._ctx, self._members[source], tag, mem)
            if n >= 0:  # taken straight off the sender's ring
                if status is not None:
                    fill_status(status, source, rtag, n)
                return
            req = self._engine.post(self._ctx, self._members[source], tag, mem)
        else:
            req = self._post(source, tag, mem)
        if not req.done:
            self._engine.wait(req)
        if req.error is not None:
            raise req.error
        if status is not None:
            src = req.msg_src
            fill_status(status, self._to_comm(src) if src >= 0 else src, req.msg_tag, req.nbytes)

    def Irecv(self, buf: Any, source: int = ANY_SOURCE, tag: int = ANY_TAG) -> Request:  # noqa: N802
        b = parse_buffer(buf, readonly=False, name="receive buffer")
        return Request(self._engine, self._post(source, tag, b.mem), self._to_comm)

    def Sendrecv(self, sendbuf: Any, dest: int, sendtag: int = 0, recvbuf: Any = None, source: int = ANY_SOURCE,  # noqa: N802
                 recvtag: int = ANY_TAG, status: Status | None = None) -> None:
        rb = parse_buffer(recvbuf, readonly=False, name="receive buffer")
        rreq = Request(self._engine, self._post(source, recvtag, rb.mem), self._to_comm)
        sreq = self._send_buf(sendbuf, dest, sendtag, False, False)
        rreq.Wait(status)
        sreq.Wait()

    def Sendrecv_replace(self, buf: Any, dest: int, sendtag: int = 0, source: int = ANY_SOURCE,  # noqa: N802
                         recvtag: int = ANY_TAG, status: Status | None = None) -> None:
        b = parse_buffer(buf, readonly=False, name="buffer")
        copy = bytes(b.mem)
        rreq = Request(self._engine, self._post(source, recvtag, b.mem), self._to_comm)
        sreq = self._send_buf([copy, b.count, b.datatype], dest, sendtag, False, False)
        rreq.Wait(status)
        sreq.Wait()

    def Probe(self, source: int = ANY_SOURCE, tag: int = ANY_TAG, status: Status | None = None) -> bool:  # noqa: N802
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

    def Iprobe(self, source: int = ANY_SOURCE, tag: int = ANY_TAG, status: Status | None = None) -> bool:  # noqa: N802
        self._check_tag(tag, True)
        if source == PROC_NULL:
            fill_status(status, PROC_NULL, ANY_TAG, 0)
            return True
        m = self._engine.probe(self._ctx, self._source(source), tag)
        if m is None:
            return False
        fill_status(status, self._to_comm(m.src), m.tag, m.nbytes)
        return True

    # --- communicator management -------------------------------------------------------------
    def _new_cid(self) -> int:
        cid: int = self.allreduce(self._rt.next_cid, op=None)
        self._rt.next_cid = cid + 1
        return cid

    def Dup(self, info: Any = None) -> Comm:  # noqa: N802
        cid = self._new_cid()
        return type(self)._derive(self, list(self._members), cid)

    Clone = Dup

    def Dup_with_info(self, info: Any) -> Comm:  # noqa: N802
        return self.Dup()

    def Idup(self, info: Any = None) -> tuple[Comm, Request]:  # noqa: N802
        """Completes at once: the duplicate is agreed on collectively, as Dup does."""
        return self.Dup(), completed_request()

    def Idup_with_info(self, info: Any) -> tuple[Comm, Request]:  # noqa: N802
        return self.Idup(info)

    def Create_group(self, group: Any, tag: int = 0) -> Comm:  # noqa: N802
        """Collective over the members of ``group`` only: they agree on a context id among themselves."""
        members = list(group._members)
        me = self._rt.world.rank
        if me not in members:
            return COMM_NULL
        self._check_tag(tag, False)
        cid = self._rt.next_cid
        if len(members) > 1:
            eng, itag, leader = self._engine, -16 - tag, members[0]  # a negative tag: no user receive matches it
            if me == leader:
                for w in members[1:]:
                    r = eng.post(self._ctx, w, itag, None)
                    eng.wait(r)
                    cid = max(cid, r.value)
                data = pickle.dumps(cid)
                for w in members[1:]:
                    eng.wait(eng.send(self._ctx, w, itag, data, len(data), True))
            else:
                data = pickle.dumps(cid)
                eng.wait(eng.send(self._ctx, leader, itag, data, len(data), True))
                r = eng.post(self._ctx, leader, itag, None)
                eng.wait(r)
                cid = r.value
        self._rt.next_cid = cid + 1
        return Intracomm(members, cid)

    def bcast(self, obj: Any = None, root: int = 0) -> Any:
        with comm_lock(self, "bcast"):
            return super().bcast(obj, root)

    @classmethod
    def _derive(cls, parent: Comm, members: list[int], cid: int) -> Comm:
        return Intracomm(members, cid)

    def Split(self, color: int = 0, key: int = 0) -> Comm:  # noqa: N802
        entries = self.allgather((color, key, self._rank))
        cid = self._new_cid()
        if color == UNDEFINED or color is None:
            return COMM_NULL
        mine = sorted((k, r) for c, k, r in entries if c == color)
        return Intracomm([self._members[r] for _, r in mine], cid)

    def Create(self, group: Any) -> Comm:  # noqa: N802
        cid = self._new_cid()
        members = list(group._members)
        if self._rt.world.rank not in members:
            return COMM_NULL
        return Intracomm(members, cid)

    def Free(self) -> None:  # noqa: N802
        if self._cid <= 1:
            raise MpiError("MPI.COMM_NULL, MPI.COMM_WORLD and MPI.COMM_SELF cannot be freed", 5)  # MPI_ERR_COMM
        self._set_null()

    free = Free

    def Disconnect(self) -> None:  # noqa: N802
        self.Free()

    def Compare(self, other: Comm) -> int:  # noqa: N802
        if not isinstance(self, Comm):  # called as MPI.Comm.Compare(a, b)
            raise TypeError("Compare needs two communicators")
        if self._cid == other._cid and self._members == other._members:
            return IDENT
        if self._members == other._members:
            return CONGRUENT
        if sorted(self._members) == sorted(other._members):
            return SIMILAR
        return UNEQUAL

    def _cart_args(self, dims: Any, periods: Any) -> tuple[list[int], list[bool], int]:
        dims = [int(d) for d in dims]
        ndims = len(dims)
        if periods is None:
            periods = False
        if isinstance(periods, bool):
            periods = [periods] * ndims
        periods = [bool(p) for p in periods]
        if len(periods) != ndims:
            raise ValueError(f"expecting {ndims} items, got {len(periods)}")
        total = 1
        for d in dims:
            if d <= 0:
                raise MpiError(f"invalid Cartesian dimension {d} in {dims}", 12)  # MPI_ERR_DIMS
            total *= d
        if total > self._size:
            raise MpiError(f"a {dims} grid needs {total} ranks, the communicator has {self._size}", 12)
        return dims, periods, total

    def Create_cart(self, dims: Any, periods: Any = None, reorder: bool = False) -> Comm:  # noqa: N802
        """Ranks are never reordered: rank r of the grid is rank r of this communicator."""
        from .topo import Cartcomm

        dims, periods, total = self._cart_args(dims, periods)
        cid = self._new_cid()
        if self._rank >= total:
            return COMM_NULL
        return Cartcomm(self._members[:total], cid, dims, periods)

    def Cart_map(self, dims: Any, periods: Any = None) -> int:  # noqa: N802
        _, _, total = self._cart_args(dims, periods)
        return self._rank if self._rank < total else UNDEFINED

    def Abort_world(self, code: int) -> None:  # noqa: N802
        runtime.abort(code, self._rank)


class Intracomm(Comm):
    pass


class Intercomm(Comm):
    """Intercommunicators are not implemented: only the null handle ``Intercomm()`` exists."""

    def __init__(self, comm: Any = None) -> None:
        if comm is not None and not (isinstance(comm, Comm) and comm._cid < 0):
            raise NotImplementedMpi("MPI.Intercomm is not implemented by granny")
        super().__init__()

    def Is_inter(self) -> bool:  # noqa: N802
        return True

    def Is_intra(self) -> bool:  # noqa: N802
        return False

    is_inter = property(Is_inter)
    is_intra = property(Is_intra)
    Get_remote_size, Get_remote_group, Merge = _Missing("Get_remote_size"), _Missing("Get_remote_group"), _Missing("Merge")
    remote_size, remote_group = _Missing("remote_size"), _Missing("remote_group")


COMM_NULL: Comm = Comm()


def _predefined(cid: int) -> Comm:
    """COMM_NULL (cid -1), COMM_WORLD (0) or COMM_SELF (1) of this process."""
    if cid < 0:
        return COMM_NULL
    api = sys.modules.get("granny.mpi.api")
    if api is None:
        return COMM_NULL
    comm: Comm = api.COMM_WORLD if cid == 0 else api.COMM_SELF
    return comm


def _restore_comm(cid: int, same: bool, cls: type[Comm]) -> Comm:
    if cid >= 0:
        from . import api  # noqa: F401 - make sure COMM_WORLD/COMM_SELF exist
    comm = _predefined(cid)
    return comm if same else cls(comm)


# --- buffered sends: MPI.Attach_buffer / Detach_buffer ------------------------------------------
_bsend_buffer: list[Any] = [None]


def attach_buffer(buf: Any) -> None:
    """Bsend copies every message when it is sent, so the attached buffer is recorded only."""
    _bsend_buffer[0] = buf


def detach_buffer() -> Any:
    buf, _bsend_buffer[0] = _bsend_buffer[0], None
    return buf


# --- mpi4py's per-communicator locks (MPI._comm_lock / _comm_lock_table) ---------------------------
_lock_guard = threading.Lock()


def comm_lock_table(comm: Comm) -> dict[Any, Any]:
    return comm._locks


def comm_lock(comm: Comm, key: Any = None) -> Any:
    with _lock_guard:
        lock = comm._locks.get(key)
        if lock is None:
            lock = comm._locks[key] = threading.Lock()
        return lock


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

    def Start(self) -> None:  # noqa: N802
        if self._start is None:
            raise MpiError("MPI.Prequest.Start: invalid request (REQUEST_NULL)", 7)  # MPI_ERR_REQUEST
        if self._inner is not None:
            raise MpiError("MPI.Prequest.Start: the request is already active", 7)
        r = self._start()
        self._engine, self._inner, self._rank, self._obj = r._engine, r._inner, r._rank, r._obj

    start = Start

    @classmethod
    def Startall(cls, requests: Any) -> None:  # noqa: N802
        for r in requests:
            r.Start()

    startall = Startall

    def Free(self) -> None:  # noqa: N802
        if self._start is None:
            raise MpiError("MPI.Prequest.Free: invalid request (REQUEST_NULL)", 7)
        self._start, self._inner = None, None

    def free(self) -> None:
        self._start, self._inner = None, None

    def Cancel(self) -> None:  # noqa: N802
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


class Grequest(Request):
    """Generalized requests are not implemented; the type exists so that mpi4py's type checks behave."""

    def __init__(self, request: Any = None) -> None:
        if request is not None and not isinstance(request, Grequest):
            raise TypeError(f"Argument 'request' has incorrect type (expected MPI.Grequest, "
                            f"got {type(request).__name__})")
        super().__init__()

    @classmethod
    def Start(cls, *args: Any, **kwargs: Any) -> Any:  # noqa: N802
        raise NotImplementedMpi("MPI.Grequest.Start is not implemented by granny")

    def Complete(self) -> None:  # noqa: N802
        raise NotImplementedMpi("MPI.Grequest.Complete is not implemented by granny")


for _name in sorted(_KNOWN_MISSING):
    if not any(_name in k.__dict__ for k in Intracomm.__mro__):
        setattr(Comm, _name, _Missing(_name))


def _as_int(value: Any) -> int:
    """Ranks and tags as mpi4py takes them: anything int() accepts (``nprocs / 2`` is a float)."""
    try:
        return int(value)
    except (TypeError, ValueError):
        raise TypeError(f"a rank or tag must be an integer, got {value!r}") from None
