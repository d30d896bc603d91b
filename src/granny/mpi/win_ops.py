"""The communication calls of ``MPI.Win``: Put, Get, Accumulate and friends, blocking and request forms.

Theory of operation
- Every operation completes before it returns when the target shares this host: through the shared
  mapping of an ``Allocate`` window (a plain memory copy), or through ``process_vm_readv/writev`` into
  the target's own memory (``Create``/``Create_dynamic``). Nothing is left for a flush to do, which MPI
  allows (completion may happen any time within the epoch).
- Accumulates are atomic per target: read-modify-write under the target's accumulate lock byte
  (rma_shm.py), skipped when this origin holds the target's exclusive lock anyway.
- A target on another host gets a request (rma_remote.py). Put/Accumulate return at once and leave
  the target dirty; Get and the fetching operations wait for their answer.
- The request forms (``Rput`` ...) do the same work and return a completed request.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import MpiError
from . import rma_remote, rma_shm
from .buffers import Buf, parse_buffer
from .ops import SUM, Op
from .p2p import PROC_NULL
from .request import Request, completed_request
from .rma_apply import ACC, CAS, GACC, GET, PUT, apply, single, target_spec
from .shm import cma_read

ERR_RANK = 6


class WinOps:
    """Mixin of ``Win``; see win.py for the state it uses."""

    _views: list[memoryview | None]
    _local: list[bool]
    _pids: list[int]
    _addrs: list[int]
    _sizes: list[int]
    _units: list[int]
    _world: list[int]
    _excl: dict[int, bool]
    _dirty: set[int]
    _dynamic: bool
    _seg: rma_shm.Segment | None
    _engine: Any
    _svc: int
    _reply_ctx: int
    _cell: list[bool]

    def _live(self) -> Any:
        raise NotImplementedError  # win.py

    # --- the one path every operation takes ---------------------------------------------------
    def _where(self, rank: int, disp: int, nbytes: int) -> int:
        """Byte offset of ``disp`` at ``rank`` (an address in a dynamic window), range-checked."""
        if not 0 <= rank < len(self._sizes):
            raise MpiError(f"invalid target rank {rank} (the window has {len(self._sizes)} ranks)", ERR_RANK)
        off = disp * self._units[rank]
        if not self._dynamic and (off < 0 or off + nbytes > self._sizes[rank]):
            raise MpiError(f"{nbytes} bytes at displacement {disp} are outside the {self._sizes[rank]}-byte "
                           f"window of rank {rank}", rma_shm.ERR_RMA_RANGE)
        return off

    def _do(self, kind: int, rank: int, off: int, n: int, op: Op | None, dtype: Any, origin: Any,
            compare: Any = None) -> bytes | None:
        view = self._views[rank]
        if view is not None and kind in (PUT, GET):
            return apply(kind, view[off:off + n], op, dtype, origin, compare)
        if not self._local[rank]:
            meta = (op, dtype) if kind in (ACC, GACC) else None
            if kind in (PUT, ACC):
                self._dirty.add(rank)
                rma_remote.request(self._engine, self._svc, self._reply_ctx, self._world[rank], kind, off, n, meta,
                                   origin)
                return None
            return rma_remote.request(self._engine, self._svc, self._reply_ctx, self._world[rank], kind, off, n,
                                      meta, origin, compare if compare is not None else b"", answer=n)
        atomic = kind not in (PUT, GET) and not self._excl.get(rank, False)
        seg = self._seg
        assert seg is not None
        if atomic:
            rma_shm.lock_acc(seg.acc(rank))
        try:
            if view is not None:
                return apply(kind, view[off:off + n], op, dtype, origin, compare)
            addr = self._addrs[rank] + off  # a dynamic window's base is 0: off is the address
            tmp = memoryview(bytearray(n))
            if kind != PUT:
                cma_read(self._pids[rank], addr, tmp)
            old = apply(kind, tmp, op, dtype, origin, compare)
            if kind != GET:
                rma_shm.cma_write(self._pids[rank], addr, tmp)
            return old
        finally:
            if atomic:
                rma_shm.unlock(seg.acc(rank))

    def _rma(self, kind: int, origin: Any, rank: int, target: Any, op: Op | None = None,
             result: Any = None) -> None:
        self._live()
        if rank == PROC_NULL:
            return
        ob = parse_buffer(origin, readonly=kind != GET, name="origin")
        disp, _count, dtype = target_spec(target, ob)
        n = ob.nbytes
        off = self._where(rank, disp, n)
        rb: Buf | None = None
        if result is not None:
            rb = parse_buffer(result, readonly=False, name="result")
            if rb.nbytes != n and kind == GACC and op is not None and op._name == "NO_OP":
                n = rb.nbytes
        if kind == GET:
            old = self._do(GET, rank, off, n, None, dtype, b"")
            if old is not None:
                ob.mem[:n] = old
            return
        old = self._do(kind, rank, off, n, op, dtype, ob.mem)
        if rb is not None and old is not None:
            rb.mem[:len(old)] = old

    # --- mpi4py API ---------------------------------------------------------------------------
    def _direct(self, origin: Any, rank: int, target: Any) -> memoryview | None:
        """The target bytes for a plain ndarray to a shared-mapped rank at an int displacement (the common
        case, in well under a microsecond), or None: the general path decides (and reports errors)."""
        if type(origin) is not np.ndarray or not (target is None or type(target) is int) or rank < 0 \
                or not self._cell[0]:
            return None
        try:
            view = self._views[rank]
        except IndexError:
            return None
        n = origin.nbytes
        if view is None or not origin.flags.c_contiguous or origin.dtype.hasobject or not n:
            return None
        off = target * self._units[rank] if target else 0
        if off < 0 or off + n > view.nbytes:
            return None
        return view[off:off + n]

    def Put(self, origin: Any, target_rank: int, target: Any = None) -> None:
        """Put data into a memory window on a (remote) process."""
        dst = self._direct(origin, target_rank, target)
        if dst is not None:
            dst[:] = origin.data.cast("B")
            return
        self._rma(PUT, origin, target_rank, target)

    def Get(self, origin: Any, target_rank: int, target: Any = None) -> None:
        """Get data from a memory window on a (remote) process."""
        src = self._direct(origin, target_rank, target)
        if src is not None and origin.flags.writeable:
            origin.data.cast("B")[:] = src
            return
        self._rma(GET, origin, target_rank, target)

    def Accumulate(self, origin: Any, target_rank: int, target: Any = None, op: Op = SUM) -> None:
        self._rma(ACC, origin, target_rank, target, op)

    def Get_accumulate(self, origin: Any, result: Any, target_rank: int, target: Any = None,
                       op: Op = SUM) -> None:
        if target_rank == PROC_NULL:
            return
        self._rma(GACC, origin, target_rank, target, op, result)

    def Fetch_and_op(self, origin: Any, result: Any, target_rank: int, target_disp: int = 0,
                     op: Op = SUM) -> None:
        self._live()
        ob = parse_buffer(origin, readonly=True, name="origin")
        rb = parse_buffer(result, readonly=False, name="result")
        if target_rank == PROC_NULL:
            return
        single(ob, "origin")
        single(rb, "result")
        if ob.datatype != rb.datatype:
            raise ValueError("mismatch in origin and result MPI datatypes")
        off = self._where(target_rank, target_disp, ob.nbytes)
        old = self._do(GACC, target_rank, off, ob.nbytes, op, ob.datatype, ob.mem)
        if old is not None:
            rb.mem[:] = old

    def Compare_and_swap(self, origin: Any, compare: Any, result: Any, target_rank: int,
                         target_disp: int = 0) -> None:
        self._live()
        ob = parse_buffer(origin, readonly=True, name="origin")
        cb = parse_buffer(compare, readonly=True, name="compare")
        rb = parse_buffer(result, readonly=False, name="result")
        if target_rank == PROC_NULL:
            return
        single(ob, "origin")
        single(cb, "compare")
        single(rb, "result")
        if ob.datatype != cb.datatype:
            raise ValueError("mismatch in origin and compare MPI datatypes")
        if ob.datatype != rb.datatype:
            raise ValueError("mismatch in origin and result MPI datatypes")
        off = self._where(target_rank, target_disp, ob.nbytes)
        old = self._do(CAS, target_rank, off, ob.nbytes, None, ob.datatype, ob.mem, cb.mem)
        if old is not None:
            rb.mem[:] = old

    def Rput(self, origin: Any, target_rank: int, target: Any = None) -> Request:
        """Completes before it returns (same host) or once sent (another host): the request is done."""
        self.Put(origin, target_rank, target)
        return completed_request()

    def Rget(self, origin: Any, target_rank: int, target: Any = None) -> Request:
        self.Get(origin, target_rank, target)
        return completed_request()

    def Raccumulate(self, origin: Any, target_rank: int, target: Any = None, op: Op = SUM) -> Request:
        self.Accumulate(origin, target_rank, target, op)
        return completed_request()

    def Rget_accumulate(self, origin: Any, result: Any, target_rank: int, target: Any = None,
                        op: Op = SUM) -> Request:
        self.Get_accumulate(origin, result, target_rank, target, op)
        return completed_request()
