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
from typing import Any

from ..errors import MpiError
from . import runtime
from .collectives import Collectives
from .datatypes import parse_buffer
from .p2p import ANY_SOURCE, ANY_TAG, ERR_RANK, ERR_TAG, PROC_NULL, RecvReq
from .request import Request, Status, completed_request, fill_status

IDENT, CONGRUENT, SIMILAR, UNEQUAL = 0, 1, 2, 3
UNDEFINED = -32766


class NotImplementedMpi(NotImplementedError, AttributeError):
    """An MPI call granny does not implement (also an AttributeError, so ``hasattr`` says False)."""


_KNOWN_MISSING = {
    "Spawn", "Spawn_multiple", "Create_intercomm", "Accept", "Connect", "Join", "Create_graph", "Create_dist_graph",
    "Create_dist_graph_adjacent", "Ibarrier", "Ibcast", "Igather", "Igatherv", "Iscatter", "Iscatterv", "Iallgather",
    "Iallgatherv", "Ialltoall", "Ialltoallv", "Ialltoallw", "Ireduce", "Iallreduce", "Ireduce_scatter",
    "Ireduce_scatter_block", "Iscan", "Iexscan", "Alltoallw", "Neighbor_allgather", "Neighbor_alltoall",
    "Mprobe", "Improbe", "mprobe", "improbe", "Create_group", "Split_type", "Idup", "Get_parent", "Create_from_group",
    "ibarrier", "Bsend_init", "Rsend_init", "Ssend_init", "Send_init", "Recv_init", "Psend_init", "Precv_init",
}


class Comm(Collectives):
    def __init__(self, members: list[int], cid: int, name: str = "") -> None:
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

    def __getattr__(self, name: str) -> Any:
        if name in _KNOWN_MISSING:
            raise NotImplementedMpi(f"MPI.Comm.{name} is not implemented by granny")
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
        return self._cid == other._cid and self._members == other._members and self._freed == other._freed

    def __hash__(self) -> int:
        return hash((self._cid, tuple(self._members)))

    def __bool__(self) -> bool:
        return not self._freed

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._name or self._cid} rank {self._rank} of {self._size}>"

    # --- helpers -----------------------------------------------------------------------------
    def _dest(self, dest: int) -> int:
        if 0 <= dest < self._size:
            return self._members[dest]
        raise MpiError(f"invalid rank {dest}: communicator has ranks 0..{self._size - 1}", ERR_RANK)

    def _source(self, source: int) -> int:
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
        data = pickle.dumps(obj, 5)
        inner = self._engine.send(self._ctx, self._dest(dest), tag, data, len(data), obj=True, sync=sync)
        if wait:
            self._engine.wait(inner)
            return completed_request()
        return Request(self._engine, inner)

    def send(self, obj: Any, dest: int, tag: int = 0) -> None:
        self._send_obj(obj, dest, tag, False, True)

    def ssend(self, obj: Any, dest: int, tag: int = 0) -> None:
        self._send_obj(obj, dest, tag, True, True)

    bsend = send

    def isend(self, obj: Any, dest: int, tag: int = 0) -> Request:
        return self._send_obj(obj, dest, tag, False, False)

    def issend(self, obj: Any, dest: int, tag: int = 0) -> Request:
        return self._send_obj(obj, dest, tag, True, False)

    ibsend = isend

    def _post(self, source: int, tag: int, mem: memoryview | None) -> RecvReq:
        self._check_tag(tag, True)
        if source == PROC_NULL:
            req = RecvReq(self._ctx, PROC_NULL, ANY_TAG, mem)
            req.done = True
            req.msg_src, req.msg_tag = PROC_NULL, ANY_TAG
            return req
        return self._engine.post(self._ctx, self._source(source), tag, mem)

    def recv(self, buf: Any = None, source: int = ANY_SOURCE, tag: int = ANY_TAG, status: Status | None = None) -> Any:
        req = self._post(source, tag, None)
        return Request(self._engine, req, self._to_comm).wait(status)

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
        self._send_buf(buf, dest, tag, False, True)

    def Ssend(self, buf: Any, dest: int, tag: int = 0) -> None:  # noqa: N802
        self._send_buf(buf, dest, tag, True, True)

    Bsend = Rsend = Send

    def Isend(self, buf: Any, dest: int, tag: int = 0) -> Request:  # noqa: N802
        return self._send_buf(buf, dest, tag, False, False)

    def Issend(self, buf: Any, dest: int, tag: int = 0) -> Request:  # noqa: N802
        return self._send_buf(buf, dest, tag, True, False)

    Ibsend = Irsend = Isend

    def Recv(self, buf: Any, source: int = ANY_SOURCE, tag: int = ANY_TAG, status: Status | None = None) -> None:  # noqa: N802
        b = parse_buffer(buf, readonly=False, name="receive buffer")
        req = self._post(source, tag, b.mem)
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
        if self is COMM_WORLD_REF[0] or self._cid <= 1:
            raise MpiError("MPI.COMM_WORLD and MPI.COMM_SELF cannot be freed", 5)  # MPI_ERR_COMM
        self._freed = True

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

    def Create_cart(self, dims: list[int], periods: list[bool] | None = None, reorder: bool = False) -> Comm:  # noqa: N802
        from .topo import Cartcomm

        ndims = len(dims)
        periods = list(periods) if periods is not None else [False] * ndims
        total = 1
        for d in dims:
            total *= d
        if total > self._size:
            raise MpiError(f"Create_cart: a {dims} grid needs {total} ranks, the communicator has {self._size}", 12)
        cid = self._new_cid()
        if self._rank >= total:
            return COMM_NULL
        return Cartcomm(self._members[:total], cid, list(dims), [bool(p) for p in periods])

    def Abort_world(self, code: int) -> None:  # noqa: N802
        runtime.abort(code, self._rank)


class Intracomm(Comm):
    pass


class _NullComm(Intracomm):
    def __init__(self) -> None:  # noqa: D107 - a communicator with no members
        self._members, self._size, self._rank, self._cid, self._freed = [], 0, UNDEFINED, -1, True
        self._name = "MPI_COMM_NULL"

    def __bool__(self) -> bool:
        return False

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _NullComm)

    def __hash__(self) -> int:
        return 0


COMM_NULL: Comm = _NullComm()
COMM_WORLD_REF: list[Comm | None] = [None]
