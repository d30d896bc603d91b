"""``MPI.Win``: one-sided communication windows with mpi4py's API (creation, attributes, synchronisation).

Theory of operation
- Creating a window is collective over its communicator: one ``Dup`` (a private context for the
  window's own messages and barriers) and one ``allgather`` of every rank's (pid, size, disp_unit,
  base address, segment fd). Each host's first rank makes the host's segment before the allgather, the
  others open it after (rma_shm.py); ``Allocate`` memory lives in that segment, so same-host ranks read
  and write it directly.
- Synchronisation. Every same-host operation is complete when it returns (win_ops.py), so:
  ``Fence`` = finish what went to other hosts, then a barrier (on one host: arrival counters in the
  segment, spinning briefly, then yielding and sleeping); ``Lock``/``Unlock`` take and drop the
  target's lock byte (shared or exclusive, by the kernel); ``Flush*`` only wait for other hosts.
  ``Post``/``Start``/``Complete``/``Wait``/``Test`` are messages on the window's context: Post tells each
  origin, Start waits for those, Complete tells each target, Wait/Test wait for those.
- Windows do not migrate: a migration point with a window open raises (``check_none_open``).
- Not thread-safe (mpi4py's default thread level here is THREAD_SERIALIZED).
"""

from __future__ import annotations

import os
import time
import weakref
from typing import Any

from ..errors import MpiError
from . import rma_constants as K
from . import rma_remote, rma_shm
from .buffers import BOTTOM, parse_buffer
from .comm import Comm, predefined
from .group import Group, Info
from .p2p import PROC_NULL, _AllDone
from .rma_apply import as_buffer
from .shm import buffer_address
from .win_attrs import WinAttrs
from .win_ops import WinOps

POST_TAG, DONE_TAG = -81, -82
_open: weakref.WeakValueDictionary[int, Win] = weakref.WeakValueDictionary()


def check_none_open() -> None:
    """Raise if this rank has a window open (a migration point cannot move one)."""
    live = [w for w in _open.values() if w._key is not None]
    if live:
        names = ", ".join(repr(w._name or f"flavor {w._flavor}") for w in live)
        raise MpiError(f"migration point with {len(live)} open MPI.Win window(s) ({names}): windows cannot "
                       "move between hosts; Free them before the migration point", K.ERR_WIN)


class Win(WinAttrs, WinOps):
    """A window handle. ``Win()`` is WIN_NULL; ``Win(win)`` another handle to ``win``."""

    _key: object | None
    _cell: list[bool]
    _name: str
    _mem: memoryview
    _obj: Any
    _comm: Any
    _rank: int
    _size: int
    _flavor: int
    _all_local: bool
    _attached: dict[int, memoryview]
    _epoch: int
    _slots: memoryview | None
    _stride: int
    _others: list[int] | None
    _lockaddr: list[int]
    _nolock: set[int]
    _bells: list[tuple[int, memoryview]]
    _start: list[int] | None
    _posted: list[Any] | None
    _info: Info
    _attrs: dict[Any, Any]  # keyval -> value; also "handle" and the user errhandler (str keys)
    _errh: str

    def __init__(self, win: Win | None = None) -> None:
        if win is not None and not isinstance(win, Win):
            raise TypeError(f"Argument 'win' has incorrect type (expected MPI.Win, got {type(win).__name__})")
        if win is not None:
            self.__dict__.update(win.__dict__)
        else:
            self._key, self._cell = None, [False]
            self._name = "MPI_WIN_NULL"

    # --- creation -----------------------------------------------------------------------------
    @classmethod
    def _build(cls, comm: Any, flavor: int, size: int, disp_unit: int, mem: memoryview | None, obj: Any) -> Win:
        if not isinstance(comm, Comm) or not comm._members:
            raise MpiError("window creation needs a valid intracommunicator", 5)  # MPI_ERR_COMM
        if size < 0 or disp_unit <= 0:
            raise MpiError(f"invalid window size {size} or displacement unit {disp_unit}", K.ERR_SIZE)
        self = cls()
        wc = comm.Dup()
        n, me = wc._size, wc._rank
        hosts = wc._hosts
        local = [i for i in range(n) if hosts[i] == hosts[me]]
        seg = rma_shm.Segment.create(n) if local[0] == me else None
        self._engine = wc._engine
        self._svc, self._reply_ctx = rma_remote.service_ctx(wc._cid), wc._ctx
        self._mem = mem if mem is not None else memoryview(bytearray(0))
        remote = len(local) < n
        service = None
        if remote:  # before the allgather: after it, an origin on another host may already send
            service = rma_remote.Service(self._engine, self._reply_ctx, me, self._region)
            self._engine.services[self._svc] = service.handle
        base = buffer_address(self._mem) if mem is not None else 0
        table = wc.allgather((os.getpid(), size, disp_unit, base, seg.fd if seg is not None else -1))
        sizes = [t[1] for t in table]
        alloc = flavor in (K.WIN_FLAVOR_ALLOCATE, K.WIN_FLAVOR_SHARED)
        offsets, total = rma_shm.layout([sizes[i] if alloc else 0 for i in local], n)
        if seg is not None:
            seg.grow(total)
        else:
            seg = rma_shm.Segment.open(table[local[0]][0], table[local[0]][4], total)
        self._seg = seg
        self._views = [None] * n
        if alloc:
            for i, off in zip(local, offsets, strict=True):
                self._views[i] = seg.mem[off:off + sizes[i]]
            self._mem = seg.mem[offsets[local.index(me)]:offsets[local.index(me)] + size]
        elif flavor == K.WIN_FLAVOR_CREATE:
            self._views[me] = self._mem
        self._obj = obj
        self._comm, self._rank, self._size, self._flavor = wc, me, n, flavor
        self._pids, self._sizes, self._units = [t[0] for t in table], sizes, [t[2] for t in table]
        self._addrs = [t[3] for t in table]
        self._world = list(wc._members)
        self._local = [hosts[i] == hosts[me] for i in range(n)]
        self._all_local = not remote
        self._dynamic = flavor == K.WIN_FLAVOR_DYNAMIC
        self._attached = {}
        self._excl = {}  # targets this rank holds a lock on -> exclusive?
        self._dirty = set()
        self._nolock = set()  # targets locked with MODE_NOCHECK (no lock was taken)
        self._lockaddr = [seg.lock(r) if self._local[r] else 0 for r in range(n)]
        inboxes = self._engine.f.peer_inboxes
        self._bells = [(w, inboxes[w].words) for w in self._world if w in inboxes]  # same-host peers
        self._epoch = 0
        self._slots = seg.mem[:n * rma_shm.SLOT].cast("Q") if seg.map is not None else None
        self._stride = rma_shm.SLOT // 8
        # the slot indices of the other ranks, when a fence is a barrier in the segment (one host)
        self._others = ([r * self._stride for r in range(n) if r != me] if not remote and self._slots is not None
                        else None)
        self._start = None
        self._posted = None
        self._name, self._info, self._attrs = "", Info(), {}
        self._errh = "ERRORS_RETURN"
        self._key = object()
        self._cell = [True]  # shared by every handle to this window (Win(win) copies): Free clears it
        _open[id(self._key)] = self
        if service is not None:
            service.ready(seg)
        return self

    def _region(self, off: int, n: int) -> memoryview:
        """This rank's window bytes [off, off+n) (an address range of an attached region if dynamic)."""
        if self._dynamic:
            for base, mem in self._attached.items():
                if base <= off and off + n <= base + mem.nbytes:
                    return mem[off - base:off - base + n]
            raise MpiError(f"no attached memory at address {off:#x} ({n} bytes)", K.ERR_RMA_RANGE)
        if off < 0 or off + n > self._mem.nbytes:
            raise MpiError(f"{n} bytes at offset {off} are outside the {self._mem.nbytes}-byte window",
                           K.ERR_RMA_RANGE)
        return self._mem[off:off + n]

    @classmethod
    def Create(cls, memory: Any, disp_unit: int = 1, info: Any = None, comm: Any = None) -> Win:
        """Collective: expose ``memory`` (the program's own buffer) to the ranks of ``comm``."""
        if memory is BOTTOM or memory is None:
            mem, obj = None, None
        else:
            mem, obj = parse_buffer(memory, readonly=False, name="memory").mem, memory
        return cls._build(_comm(comm), K.WIN_FLAVOR_CREATE, mem.nbytes if mem is not None else 0, disp_unit,
                          mem, obj)

    @classmethod
    def Allocate(cls, size: int, disp_unit: int = 1, info: Any = None, comm: Any = None) -> Win:
        """Collective: ``size`` bytes of new window memory per rank (shared with same-host ranks)."""
        return cls._build(_comm(comm), K.WIN_FLAVOR_ALLOCATE, int(size), disp_unit, None, None)

    @classmethod
    def Allocate_shared(cls, size: int, disp_unit: int = 1, info: Any = None, comm: Any = None) -> Win:
        comm = _comm(comm)
        if len(set(comm._hosts)) > 1:
            raise MpiError("Allocate_shared needs a communicator of one host (Split_type(COMM_TYPE_SHARED))",
                           K.ERR_RMA_SHARED)
        return cls._build(comm, K.WIN_FLAVOR_SHARED, int(size), disp_unit, None, None)

    @classmethod
    def Create_dynamic(cls, info: Any = None, comm: Any = None) -> Win:
        return cls._build(_comm(comm), K.WIN_FLAVOR_DYNAMIC, 0, 1, None, None)

    def Attach(self, memory: Any) -> None:
        mem = parse_buffer(memory, readonly=False, name="memory").mem
        self._live()._attached[buffer_address(mem)] = mem

    def Detach(self, memory: Any) -> None:
        mem = parse_buffer(memory, readonly=False, name="memory").mem
        if self._live()._attached.pop(buffer_address(mem), None) is None:
            raise MpiError("Detach: this memory is not attached to the window", K.ERR_RMA_ATTACH)

    def Shared_query(self, rank: int) -> tuple[Any, int]:
        """The memory of a same-host rank (PROC_NULL: the lowest rank with memory), as a buffer."""
        self._live()
        if rank == PROC_NULL:
            rank = next((r for r in range(self._size) if self._sizes[r] and self._views[r] is not None), 0)
        if not 0 <= rank < self._size:
            raise MpiError(f"invalid rank {rank}", 6)
        return as_buffer(self._views[rank]), self._units[rank]

    def Free(self) -> None:
        """Collective: ends the window once every rank's operations are complete."""
        self._live()
        self._forget()  # attribute delete callbacks, while the window is still whole
        self._flush_remote(list(self._dirty))
        self._comm.Barrier()
        self._engine.services.pop(self._svc, None)
        self._slots = None
        self._views, self._mem = [], memoryview(b"")
        self._seg.close()  # type: ignore[union-attr]
        self._comm.Free()
        _open.pop(id(self._key), None)
        self._cell[0] = False  # other handles to it now fail cleanly instead of touching unmapped memory
        self.__dict__.clear()
        self._key, self._cell, self._name = None, [False], "MPI_WIN_NULL"

    free = Free

    def _live(self) -> Win:
        if self._key is None or not self._cell[0]:
            raise MpiError("invalid window (MPI.WIN_NULL or freed)", K.ERR_WIN)
        return self

    # --- synchronisation ----------------------------------------------------------------------
    def _flush_remote(self, ranks: list[int]) -> None:
        for r in ranks:
            if r in self._dirty:
                self._dirty.discard(r)
                rma_remote.request(self._engine, self._svc, self._reply_ctx, self._world[r], rma_remote.FLUSH,
                                   0, 0, None, answer=0)

    def Fence(self, assertion: int = 0) -> None:
        """Collective: every operation of the closing epoch is complete everywhere when it returns."""
        if not self._cell[0]:
            self._live()
        if self._dirty:
            self._flush_remote(list(self._dirty))
        others = self._others
        if others is None:
            self._comm.Barrier()  # ranks on other hosts: the world's barrier
            return
        self._epoch = epoch = self._epoch + 1
        slots, me = self._slots, self._rank * self._stride
        assert slots is not None
        cpu = rma_shm.current_cpu()
        slots[me + 1] = cpu  # where this rank runs: a waiting peer on the same core yields it at once
        slots[me] = epoch
        f = self._engine.f
        for w, words in self._bells:
            if words[0]:  # it sleeps in its own wait (see fabric.py): wake it
                f.doorbell.ring(w)
        for _ in range(64):
            for i in others:
                if slots[i] < epoch:
                    break
            else:
                return
            if slots[i + 1] == cpu or f.yield_spin:
                os.sched_yield()  # the late peer last ran on this core: spinning would only delay it

        def arrived() -> bool:
            return all(slots[i] >= epoch for i in others)

        f.wait_until(arrived)  # spins for the fabric's budget, then sleeps until a peer rings

    def Lock(self, rank: int, lock_type: int = K.LOCK_EXCLUSIVE, assertion: int = 0) -> None:
        """Start a passive-target epoch at ``rank``; blocks (progressing) until the lock is granted."""
        if not self._cell[0]:
            self._live()
        if rank == PROC_NULL:
            return
        if lock_type == K.LOCK_EXCLUSIVE:
            exclusive = True
        elif lock_type == K.LOCK_SHARED:
            exclusive = False
        else:
            raise MpiError(f"invalid lock type {lock_type}", K.ERR_LOCKTYPE)
        if rank in self._excl:
            raise MpiError(f"rank {rank} is already locked by this rank", K.ERR_RMA_SYNC)
        addrs = self._lockaddr
        if not assertion and 0 <= rank < len(addrs):  # the common case: a same-host lock, free
            addr = addrs[rank]
            if addr and (rma_shm.trywr if exclusive else rma_shm.tryrd)(addr) == 0:
                self._excl[rank] = exclusive
                return
        self._lock(rank, exclusive, assertion)

    def _lock(self, rank: int, exclusive: bool, assertion: int) -> None:
        if not 0 <= rank < self._size:
            raise MpiError(f"invalid target rank {rank}", 6)
        if assertion & K.MODE_NOCHECK:
            self._nolock.add(rank)  # the program promises no conflicting lock: take none
        elif not self._local[rank]:
            rma_remote.lock(self._engine, self._svc, self._reply_ctx, self._world[rank], exclusive)
        else:
            addr = self._lockaddr[rank]
            if not rma_shm.try_lock(addr, exclusive):
                f, nap = self._engine.f, 5e-6
                while not rma_shm.try_lock(addr, exclusive):
                    f.progress()  # the holder may wait on us before it unlocks
                    time.sleep(nap)
                    nap = min(nap * 2, 1e-3)
        self._excl[rank] = exclusive

    def Unlock(self, rank: int) -> None:
        """End the epoch at ``rank``: its operations are complete there when it returns."""
        if not self._cell[0]:
            self._live()
        if rank == PROC_NULL:
            return
        if self._excl.pop(rank, None) is None:
            raise MpiError(f"rank {rank} is not locked by this rank", K.ERR_RMA_SYNC)
        addr = self._lockaddr[rank]
        if addr and not self._nolock:
            rma_shm.unlock(addr)
        else:
            self._unlock(rank)

    def _unlock(self, rank: int) -> None:
        held = rank not in self._nolock
        self._nolock.discard(rank)
        if not self._local[rank]:
            self._dirty.discard(rank)
            rma_remote.request(self._engine, self._svc, self._reply_ctx, self._world[rank],
                               rma_remote.UNLOCK if held else rma_remote.FLUSH, 0, 0, None, answer=0)
        elif held:
            rma_shm.unlock(self._lockaddr[rank])

    def Lock_all(self, assertion: int = 0) -> None:
        self._live()
        if self._excl:
            raise MpiError("Lock_all while holding a lock", K.ERR_RMA_SYNC)
        for r in range(self._size):
            self._lock(r, False, assertion)

    def Unlock_all(self) -> None:
        self._live()
        for r in sorted(self._excl):
            del self._excl[r]
            self._unlock(r)

    def Flush(self, rank: int) -> None:
        """Operations to ``rank`` are complete at the target when it returns."""
        self._live()._flush_remote([rank])

    def Flush_all(self) -> None:
        self._live()._flush_remote(list(self._dirty))

    Flush_local = Flush
    Flush_local_all = Flush_all

    def Sync(self) -> None:
        """The memory model is unified (one copy): nothing to synchronise."""
        self._live()

    def Post(self, group: Group, assertion: int = 0) -> None:
        """Start an exposure epoch for the origins in ``group`` (tells each of them)."""
        self._live()
        eng, ctx = self._engine, self._reply_ctx
        origins = list(group._members)
        for w in origins:
            eng.wait(eng.send(ctx, w, POST_TAG, b"", 0, False))
        self._posted = [eng.post(ctx, w, DONE_TAG, memoryview(bytearray(0))) for w in origins]

    def Wait(self) -> bool:
        self._live()
        if self._posted is not None:
            self._engine.wait(_AllDone(self._posted))
            self._posted = None
        return True

    def Test(self) -> bool:
        self._live()
        if self._posted is None:
            return True
        self._engine.progress()
        if all(r.done for r in self._posted):
            self._posted = None
            return True
        return False

    def Start(self, group: Group, assertion: int = 0) -> None:
        """Start an access epoch to the targets in ``group``; returns once each has posted."""
        self._live()
        eng, ctx = self._engine, self._reply_ctx
        targets = list(group._members)
        posts = [eng.post(ctx, w, POST_TAG, memoryview(bytearray(0))) for w in targets]
        eng.wait(_AllDone(posts))
        self._start = targets

    def Complete(self) -> None:
        self._live()
        targets, self._start = self._start or [], None
        self._flush_remote([r for r in list(self._dirty) if self._world[r] in targets])
        eng, ctx = self._engine, self._reply_ctx
        for w in targets:
            eng.wait(eng.send(ctx, w, DONE_TAG, b"", 0, False))

    # --- handle protocol ----------------------------------------------------------------------
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Win):
            return NotImplemented
        return self._key is other._key

    def __ne__(self, other: object) -> bool:
        eq = self.__eq__(other)
        return eq if eq is NotImplemented else not eq

    def __hash__(self) -> int:
        return id(self._key)

    def __bool__(self) -> bool:
        return self._key is not None

    def __reduce__(self) -> Any:
        if self._key is None:
            return "WIN_NULL"
        raise ValueError("cannot serialize 'mpi4py.MPI.Win' instance")

    def __repr__(self) -> str:
        return f"<Win {self._name or self._key}>"


def _comm(comm: Any) -> Any:
    if comm is None:
        return predefined(1)  # COMM_SELF
    return comm


WIN_NULL = Win()
