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
from . import derived_msg, rma_remote, rma_shm
from .buffers import Buf, parse_buffer
from .ops import SUM, Op
from .p2p import PROC_NULL
from .request import Request, completed_request
from .rma_apply import ACC, CAS, GACC, GET, PUT, apply, single, target_spec
from .shm import cma_read
from .typemap import Segs, repeat, span

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
            compare: Any = None, segs: Segs | None = None) -> bytes | None:
        view = self._views[rank]
        if view is not None and kind in (PUT, GET):
            return apply(kind, view[off:off + n], op, dtype, origin, compare, segs)
        if not self._local[rank]:
            meta: tuple[Any, ...] | None = (op, dtype) if kind in (ACC, GACC) else None
            if segs is not None:
                meta = (op, dtype, segs)
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
                return apply(kind, view[off:off + n], op, dtype, origin, compare, segs)
            addr = self._addrs[rank] + off  # a dynamic window's base is 0: off is the address
            tmp = memoryview(bytearray(n))
            if kind != PUT or segs is not None:
                cma_read(self._pids[rank], addr, tmp)
            old = apply(kind, tmp, op, dtype, origin, compare, segs)
            if kind != GET:  # a derived datatype's pieces only: the gaps are not this operation's
                for o, ln in segs if segs is not None else ((0, n),):
                    rma_shm.cma_write(self._pids[rank], addr + o, tmp[o:o + ln])
            return old
        finally:
            if atomic:
                rma_shm.unlock(seg.acc(rank))

    def _on_error(self, exc: MpiError) -> None:
        raise NotImplementedError  # win_attrs.py

    def _rma(self, kind: int, origin: Any, rank: int, target: Any, op: Op | None = None,
             result: Any = None) -> None:
        try:
            self._rma_op(kind, origin, rank, target, op, result)
        except MpiError as exc:
            self._on_error(exc)
            raise

    def _rma_op(self, kind: int, origin: Any, rank: int, target: Any, op: Op | None, result: Any) -> None:
        self._live()
        if rank == PROC_NULL:
            return
        pk = derived_msg.packed(origin)
        if pk is not None:  # a derived origin datatype: its elements packed, unpacked after a Get
            ob = Buf(memoryview(pk.data), pk.data.shape[0] // origin[-1].size, origin[-1], origin[0], 1)
        else:
            ob = parse_buffer(origin, readonly=kind != GET, name="origin")
        disp, count, dtype = target_spec(target, ob)
        n = ob.nbytes
        segs = None
        if dtype._map is not None and not (dtype._map.contiguous and kind in (PUT, GET)):
            # a derived target datatype: the span its elements touch, and their pieces in it
            segs = repeat(dtype._map, count)
            lo, hi = span(segs)
            off = self._where(rank, disp, 0) + lo
            if not self._dynamic and (off < 0 or off + hi - lo > self._sizes[rank]):
                raise MpiError(f"the target datatype reaches bytes {off}..{off + hi - lo} outside the "
                               f"{self._sizes[rank]}-byte window of rank {rank}", rma_shm.ERR_RMA_RANGE)
            segs = tuple((o - lo, ln) for o, ln in segs)
            n, dtype = hi - lo, dtype._map.base
        else:
            off = self._where(rank, disp, n)
        rb: Buf | None = None
        if result is not None:
            rb = parse_buffer(result, readonly=False, name="result")
            if rb.nbytes != n and kind == GACC and op is not None and op._name == "NO_OP":
                n = rb.nbytes
        if kind == GET:
            old = self._do(GET, rank, off, n, None, dtype, b"", None, segs)
            if old is not None:
                ob.mem[:len(old)] = old
                if pk is not None:
                    pk.unpack()
            return
        old = self._do(kind, rank, off, n, op, dtype, ob.mem, None, segs)
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
        try:
            self._fetch_and_op(origin, result, target_rank, target_disp, op)
        except MpiError as exc:
            self._on_error(exc)
            raise

    def _fetch_and_op(self, origin: Any, result: Any, target_rank: int, target_disp: int, op: Op) -> None:
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
        try:
            self._compare_and_swap(origin, compare, result, target_rank, target_disp)
        except MpiError as exc:
            self._on_error(exc)
            raise

    def _compare_and_swap(self, origin: Any, compare: Any, result: Any, target_rank: int, target_disp: int) -> None:
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
