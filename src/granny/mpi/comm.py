"""Communicators: mpi4py's Comm/Intracomm, their null handles and communicator management.

Theory of operation
- A communicator is an ordered list of world ranks (``members``) plus a context id ``cid``. Its
  point-to-point traffic uses context ``2*cid`` and its collectives ``2*cid + 1``, so a collective
  never matches a user's receive.
- New context ids are agreed collectively: every member contributes the next id it considers free
  and the maximum wins (an allreduce over the parent). Two communicators that share a rank can
  therefore never share an id; disjoint ones (the colours of one Split) may, harmlessly.
- Lowercase methods pickle (protocol 5); capitalised methods move buffers without pickling.
- Blocking calls spin briefly and then sleep (see fabric.py); they never burn a core for long.
- ``Comm`` is assembled from mixins: ``CommEnvironment`` (comm_env.py: rank, size, attributes ...),
  ``PointToPoint`` (p2p_api.py: send/recv ..., persistent requests) and ``Collectives``
  (collectives.py); communicator management (Dup, Split, Create ...) is here.
"""

from __future__ import annotations

import pickle
import threading
from collections.abc import Callable
from typing import Any

from ..errors import MpiError, NotImplementedMpi
from . import runtime, shmcoll
from .argcheck import as_int, index_list
from .buffers import BUFFER_AUTOMATIC, parse_buffer
from .collectives import Collectives
from .comm_env import UNDEFINED as UNDEFINED
from .comm_env import CommEnvironment
from .group import Info
from .p2p_api import PointToPoint
from .p2p_api import Prequest as Prequest
from .request import Request, completed_request

IDENT, CONGRUENT, SIMILAR, UNEQUAL = 0, 1, 2, 3


_KNOWN_MISSING = {
    "Spawn", "Spawn_multiple", "Create_intercomm", "Accept", "Connect", "Join", "Create_graph", "Create_dist_graph",
    "Create_dist_graph_adjacent", "Ibarrier", "Ibcast", "Igather", "Igatherv", "Iscatter", "Iscatterv", "Iallgather",
    "Iallgatherv", "Ialltoall", "Ialltoallv", "Ialltoallw", "Ireduce", "Iallreduce", "Ireduce_scatter",
    "Ireduce_scatter_block", "Iscan", "Iexscan", "Alltoallw", "Neighbor_allgather", "Neighbor_alltoall",
    "Mprobe", "Improbe", "mprobe", "improbe", "Get_parent", "Create_from_group",
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


_BOUND = frozenset({"_rt", "_engine", "_out", "_in", "_hosts", "_schedules", "_groups", "_locks", "_coll"})


def _rebind_comm(cls: type[Comm], state: dict[str, Any]) -> Comm:
    comm = cls.__new__(cls)
    comm.__dict__.update(state)
    rt = runtime.get()
    comm._rt, comm._engine = rt, rt.world.engine
    comm._out, comm._in = comm._engine.f.fast_out, comm._engine.f.fast_in
    comm._hosts = [rt.world.hosts[w] for w in comm._members]
    comm._locks = {}
    rt.comms[id(comm)] = comm
    return comm


class _Missing:
    """A class attribute for an MPI call granny lacks: any access raises NotImplementedMpi (an AttributeError,
    so ``hasattr(MPI.Comm, name)`` is False and ``MPI.Comm.name(...)`` raises NotImplementedError)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, obj: object, cls: type | None = None) -> Any:
        owner = cls.__name__ if cls is not None else type(obj).__name__
        raise NotImplementedMpi(f"MPI.{owner}.{self.name} is not implemented by granny")


class Comm(CommEnvironment, PointToPoint, Collectives):
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
                if runtime.started() and comm._members:
                    self._rt.comms[id(self)] = self
            else:
                raise TypeError(f"Argument 'comm' has incorrect type (expected MPI.Comm, got {type(comm).__name__})")
            return
        members: list[int] = comm
        rt = runtime.get()
        self._rt = rt
        self._engine = rt.world.engine
        self._out, self._in = self._engine.f.fast_out, self._engine.f.fast_in  # by world rank (p2p_api.py)
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
        rt.comms[id(self)] = self

    def _placement_changed(self, hosts: list[int]) -> None:
        """The world was rebuilt with ranks on other hosts: what depended on where they were is redone."""
        if self._members:
            self._hosts = [hosts[w] for w in self._members]
        self.__dict__.pop("_schedules", None)
        self.__dict__.pop("_groups", None)
        self.__dict__.pop("_coll", None)  # the region of the old world (shmcoll)


    def _set_null(self) -> None:
        """Turn this handle into MPI_COMM_NULL (what Free does to the handle it is called on)."""
        shmcoll.release(self)
        self._members, self._index, self._size, self._rank, self._cid = [], {}, 0, UNDEFINED, -1
        self._ctx = self._cctx = -2
        self._name, self._freed, self._hosts, self._attrs, self._locks = "MPI_COMM_NULL", True, [], {}, {}
        self._out, self._in = [], []
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
        if self._cid < 0 or (self._cid <= 1 and self == predefined(self._cid)):
            restore = _restore_null if self._cid < 0 else _restore[0]
            return (restore, (self._cid, self is predefined(self._cid), type(self)))
        if runtime.packing[0]:
            # A migrating rank's state (granny.migration): the communicator travels as its members and
            # context id, and the resumed rank binds it to its world (the same world, rebuilt).
            return _rebind_comm, (type(self), {k: v for k, v in self.__dict__.items() if k not in _BOUND})
        raise ValueError(f"cannot serialize 'mpi4py.MPI.{type(self).__name__}' instance")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._name or self._cid} rank {self._rank} of {self._size}>"

    # --- communicator management -------------------------------------------------------------
    def _new_cid(self) -> int:
        cid: int = self.allreduce(self._rt.next_cid, op=None)
        self._rt.next_cid = cid + 1
        return cid

    def Dup(self, info: Any = None) -> Comm:
        _check_info(info)
        cid = self._new_cid()
        return type(self)._derive(self, list(self._members), cid)

    Clone = Dup

    def Dup_with_info(self, info: Any) -> Comm:
        return self.Dup()

    def Idup(self, info: Any = None) -> tuple[Comm, Request]:
        """Completes at once: the duplicate is agreed on collectively, as Dup does."""
        return self.Dup(), completed_request()

    def Idup_with_info(self, info: Any) -> tuple[Comm, Request]:
        return self.Idup(info)

    def Create_group(self, group: Any, tag: int = 0) -> Comm:
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

    def Split(self, color: int = 0, key: int = 0) -> Comm:
        color, key = as_int(color), as_int(key)
        entries = self.allgather((color, key, self._rank))
        cid = self._new_cid()
        if color == UNDEFINED:
            return COMM_NULL
        mine = sorted((k, r) for c, k, r in entries if c == color)
        return Intracomm([self._members[r] for _, r in mine], cid)

    def Split_type(self, split_type: int, key: int = 0, info: Any = None) -> Comm:
        """COMM_TYPE_SHARED: the ranks of this rank's host; UNDEFINED (or a type granny lacks): COMM_NULL."""
        return self.Split(self._hosts[self._rank] if split_type == 0 else UNDEFINED, key)

    def Create(self, group: Any) -> Comm:
        cid = self._new_cid()
        members = list(group._members)
        if self._rt.world.rank not in members:
            return COMM_NULL
        return Intracomm(members, cid)

    def Free(self) -> None:
        if self._cid <= 1:
            raise MpiError("MPI.COMM_NULL, MPI.COMM_WORLD and MPI.COMM_SELF cannot be freed", 5)  # MPI_ERR_COMM
        self._set_null()

    free = Free

    def Disconnect(self) -> None:
        self.Free()

    def Compare(self, other: Comm) -> int:
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
        dims = index_list(dims)  # as mpi4py: float dims raise TypeError
        ndims = len(dims)
        if periods is None:
            periods = False
        if isinstance(periods, bool):
            periods = [periods] * ndims
        periods = [bool(p) for p in index_list(periods)]
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

    def Create_cart(self, dims: Any, periods: Any = None, reorder: bool = False) -> Comm:
        """Ranks are never reordered: rank r of the grid is rank r of this communicator."""
        dims, periods, total = self._cart_args(dims, periods)
        cid = self._new_cid()
        if self._rank >= total:
            return COMM_NULL
        return _cart[0](self._members[:total], cid, dims, periods)

    def Cart_map(self, dims: Any, periods: Any = None) -> int:
        _, _, total = self._cart_args(dims, periods)
        return self._rank if self._rank < total else UNDEFINED

    def Abort_world(self, code: int) -> None:
        runtime.abort(code, self._rank)


class Intracomm(Comm):
    pass


class Intercomm(Comm):
    """Intercommunicators are not implemented: only the null handle ``Intercomm()`` exists."""

    def __init__(self, comm: Any = None) -> None:
        if comm is not None and not (isinstance(comm, Comm) and comm._cid < 0):
            raise NotImplementedMpi("MPI.Intercomm is not implemented by granny")
        super().__init__()

    def Is_inter(self) -> bool:
        return True

    def Is_intra(self) -> bool:
        return False

    is_inter = property(Is_inter)
    is_intra = property(Is_intra)
    Get_remote_size, Get_remote_group, Merge = _Missing("Get_remote_size"), _Missing("Get_remote_group"), _Missing("Merge")
    remote_size, remote_group = _Missing("remote_size"), _Missing("remote_group")


COMM_NULL: Comm = Comm()


def _check_info(info: Any) -> None:
    if info is not None and not isinstance(info, Info):
        raise TypeError(f"Argument 'info' has incorrect type (expected MPI.Info, got {type(info).__name__})")


# --- what the modules above this one register here: comm.py cannot import them (they import it) -------
# api.py builds COMM_WORLD and COMM_SELF (building them starts MPI) and registers them with the function
# that unpickles one: that function lives in api.py, so unpickling one in a process starts MPI there
# first. topo.py registers Cartcomm, which Create_cart builds.
Restore = Callable[[int, bool, type[Comm]], Comm]
CartFactory = Callable[[list[int], int, list[int], list[bool]], Comm]
_predefined: dict[int, Comm] = {}
_restore: list[Restore] = []
_cart: list[CartFactory] = []


def register_predefined(world: Comm, self_: Comm, restore: Restore) -> None:
    _predefined.update({0: world, 1: self_})
    _restore[:] = [restore]


def register_cart(cart: CartFactory) -> None:
    _cart[:] = [cart]


def predefined(cid: int) -> Comm:
    """COMM_NULL (cid -1), COMM_WORLD (0) or COMM_SELF (1) of this process (COMM_NULL before api.py ran)."""
    return _predefined.get(cid, COMM_NULL)


def _restore_null(cid: int, same: bool, cls: type[Comm]) -> Comm:
    return COMM_NULL if same else cls(COMM_NULL)


# --- buffered sends: MPI.Attach_buffer / Detach_buffer ------------------------------------------
_bsend_buffer: list[Any] = [None]


def attach_buffer(buf: Any) -> None:
    """Bsend copies every message when it is sent, so the attached buffer is recorded only."""
    if buf is not BUFFER_AUTOMATIC:
        parse_buffer(buf, readonly=True, name="buffer")  # as mpi4py: any buffer (DLPack too), not a number
    _bsend_buffer[0] = buf


def detach_buffer() -> Any:
    buf, _bsend_buffer[0] = _bsend_buffer[0], None
    return buf


# --- mpi4py's per-communicator locks (MPI._comm_lock / _comm_lock_table) ---------------------------
_lock_guard = threading.Lock()


def comm_lock_table(comm: Comm) -> dict[Any, Any]:
    return comm._locks


def comm_lock(comm: Comm, key: Any = None) -> Any:
    lock = comm._locks.get(key)  # the common case, without the guard (a dict read is atomic)
    if lock is None:
        with _lock_guard:
            lock = comm._locks.get(key)
            if lock is None:
                lock = comm._locks[key] = threading.Lock()
    return lock


class Grequest(Request):
    """Generalized requests are not implemented; the type exists so that mpi4py's type checks behave."""

    def __init__(self, request: Any = None) -> None:
        if request is not None and not isinstance(request, Grequest):
            raise TypeError(f"Argument 'request' has incorrect type (expected MPI.Grequest, "
                            f"got {type(request).__name__})")
        super().__init__()

    @classmethod
    def Start(cls, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedMpi("MPI.Grequest.Start is not implemented by granny")

    def Complete(self) -> None:
        raise NotImplementedMpi("MPI.Grequest.Complete is not implemented by granny")


for _name in sorted(_KNOWN_MISSING):
    if not any(_name in k.__dict__ for k in Intracomm.__mro__):
        setattr(Comm, _name, _Missing(_name))
