"""Small collectives of a one-host communicator through its shared-memory region (shmregion.py).

Theory of operation
- Every communicator whose ranks all share one host gets a region the first time it runs a
  collective (``attach``; set-up is collective and happens once). Collectives on it count a sequence
  number ``s``, the same on every rank, as they are called in the same order everywhere. A rank
  publishes its part of collective ``s`` in its slot ``s & 1`` and then ``post = s``; readers wait for
  the posts they need; every rank ends with ``done = s``, and nobody rewrites a slot before every rank
  is done with what it held two collectives ago. Barrier is post + wait for all; Bcast is the root's
  post; Allreduce, Allgather are post + read everyone's slots (every rank folds all slots in rank order,
  so the result is ``x0 op x1 op ... op x(n-1)`` with the same bits everywhere, for any op); Reduce and
  Gather are the same with one reader; Scatter is the root's post.
- Whether a collective goes through the region or through the point-to-point schedules
  (collectives.py) depends only on what every rank agrees on: the message size (the same on every
  rank, as MPI requires) and the root's decision for Bcast/Scatter/bcast, which it writes into its slot
  header (``-1``: "not here, take the general path"). Pickled objects too large for a slot are marked
  the same way; a rooted collective then moves only those through point-to-point.
- The C ``Region`` (``_fastcoll.c``) runs Barrier, Bcast and Allreduce/Reduce of predefined ops on
  plain numeric arrays in one call each; anything it declines (returning 0 before touching the region)
  takes the general code below, which follows the same protocol with numpy (``reduce_to`` for the ops,
  so every op and datatype works). Without the C extension, or with ``GRANNY_MPI_PURE=1``, the region is
  a ``PyRegion`` with the same protocol. ``GRANNY_MPI_SHMCOLL=0`` turns the regions off.
- Communicators spanning hosts get a ``SpanColl`` (shmhosts.py): per-host regions for the host legs of
  Barrier and of small Allreduce, Reduce, Bcast, Gather, Scatter, Allgather (and a hierarchical large
  Allreduce), the leaders' schedules across hosts. A world rebuilt after a
  migration gets new regions: the registry is per world id, and ``Comm._placement_changed``
  drops a handle's region. Handles of one communicator (``Comm(comm)``) share its region.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from ..config import ENV_MPI_SHMCOLL, env
from ..errors import MpiError
from ..tunables import ALLREDUCE_LARGE_BYTES as LARGE
from ..tunables import OVERSUBSCRIBED_SPIN
from . import shmregion
from .algorithms import block_bounds
from .buffers import is_in_place, parse_buffer
from .datatypes import from_numpy
from .execute import reduce_to
from .ops import MAX, Op, reduce_objects
from .pickling import dumps, loads
from .shm import buffer_address, cma_available, cma_read
from .shmhosts import SpanColl, copy_pieces, fold_pieces
from .shmregion import OPCODES, SLOT, Mapping, PyRegion, region_path, region_size, slot_offset

try:
    from . import _fastring
except ImportError:  # the C extension did not build: PyRegion does it all
    _fastring = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from .collcomm import CollComm as Comm

ENV = ENV_MPI_SHMCOLL  # the name tests use
OBJ_TAG = -42  # a rooted pickled collective's oversized parts, point-to-point
ERR_TRUNCATE = 15


def _u8(mem: memoryview) -> np.ndarray:
    return np.frombuffer(mem, dtype=np.uint8) if mem.nbytes else np.empty(0, dtype=np.uint8)



_PLAIN_DTYPES: dict[np.dtype[Any], bool] = {}  # whether a dtype maps to a predefined MPI datatype


def _plain_blocks(buf: Any, n: int, writable: bool) -> tuple[np.ndarray, list[tuple[int, int]]] | None:
    """Bytes and equal block bounds of a plain C-contiguous numeric ndarray split ``n`` ways, without
    ``parse_buffer`` (whose ~5 us, twice per call, were a tenth of a 1 MiB Alltoall after the copies had
    emptied the caches); None: anything else, which the general parsing handles (and checks)."""
    if type(buf) is not np.ndarray or not buf.flags.c_contiguous or (writable and not buf.flags.writeable) or (
            buf.size % n):
        return None
    ok = _PLAIN_DTYPES.get(buf.dtype)
    if ok is None:
        try:
            from_numpy(buf.dtype)
            ok = buf.dtype.fields is None
        except ValueError:
            ok = False
        _PLAIN_DTYPES[buf.dtype] = ok
    if not ok:
        return None
    u8 = buf.reshape(-1).view(np.uint8)
    blk = u8.shape[0] // n
    return u8, [(i * blk, (i + 1) * blk) for i in range(n)]

class ShmColl:
    """The region of one communicator on this host, and its collectives. Not thread-safe (MPI does not
    allow concurrent collectives on one communicator either)."""

    def __init__(self, mapping: Mapping, reg: Any, n: int, me: int) -> None:
        self.mapping, self.reg, self.n, self.me = mapping, reg, n, me
        self.seq = 0
        self.cma = _cma()  # large Allreduce reads the other ranks' memory (the same answer on one host)

    def close(self) -> None:
        self.reg.release()
        self.mapping.close()

    def _view(self, s: int, who: int, nbytes: int) -> memoryview:
        off = slot_offset(self.n, SLOT, who, s)
        return self.mapping.mem[off:off + nbytes]

    def _next(self) -> int:
        self.seq += 1
        return self.seq

    # --- buffers -----------------------------------------------------------------------------
    def barrier(self) -> None:
        self.seq += 1
        self.reg.barrier(self.seq)

    def Bcast(self, comm: Comm, buf: Any, root: int) -> bool:
        """True: done here; False: the caller runs the general path (the root said so)."""
        if type(buf) is np.ndarray and type(root) is int and 0 <= root < self.n:
            rc = self.reg.bcast(self.seq + 1, buf, root)
            if rc:
                self.seq += 1
                if rc == -3:
                    raise MpiError("Bcast: the ranks passed different buffer sizes", ERR_TRUNCATE)
                return bool(rc == 1)
        root = comm._root(root)
        arr = _u8(parse_buffer(buf, readonly=self.me == root, name="buffer").mem)
        if arr.shape[0] == 0:
            return True
        s = self._next()
        reg = self.reg
        if self.me == root:
            fits = arr.nbytes <= SLOT
            reg.put(s, arr.nbytes if fits else -1, arr if fits else None)
            reg.post(s)
            reg.done(s)
            return fits
        reg.wait_post(s, root)
        length = reg.header(s, root)
        try:
            if length >= 0:
                if length != arr.nbytes:
                    raise MpiError(f"Bcast: {length} bytes from the root for a buffer of {arr.nbytes}", ERR_TRUNCATE)
                arr[:] = np.frombuffer(self._view(s, root, length), np.uint8)
        finally:
            reg.done(s)
        return bool(length >= 0)

    def Allreduce(self, comm: Comm, sendbuf: Any, recvbuf: Any, op: Op) -> bool:
        code = OPCODES.get(op._name) if op._fn is None else None
        if code is not None and type(recvbuf) is np.ndarray:
            src = sendbuf if type(sendbuf) is np.ndarray else None if is_in_place(sendbuf) else False
            if src is not False and self.reg.allreduce(self.seq + 1, src, recvbuf, code):
                self.seq += 1
                return True
        out, src = comm._in_out(sendbuf, recvbuf)
        if out.nbytes >= LARGE and out.shape[0] >= self.n and self.cma:
            self._allreduce_cma(comm, out, src if src is not None else out, op)
            return True
        if out.nbytes == 0 or out.nbytes > SLOT:
            return False
        self._fold(self._next(), out, src if src is not None else out, op, -1)
        return True

    def _allreduce_cma(self, comm: Comm, out: np.ndarray, mine: np.ndarray, op: Op) -> None:
        """A large Allreduce as a reduce-scatter then an allgather, each rank reading the others' memory
        directly (one ``process_vm_readv`` per piece, no messages): the ranks publish the addresses of
        their input and output; rank k folds piece k of every input in rank order into its output; once
        all pieces are done, every rank copies the others' pieces out of their outputs; a last barrier
        keeps every buffer alive until nobody reads it. Three synchronisations, whatever the number of
        ranks, where the ring takes 2(n-1) rounds of messages (each a wake-up when ranks share cores)."""
        n, me, reg = self.n, self.me, self.reg
        dst = out if out.flags.c_contiguous else np.empty_like(out)
        src = mine if mine.flags.c_contiguous else np.ascontiguousarray(mine)
        world = comm._rt.world
        pids = [world.addrs[w].pid for w in comm._members]
        bounds = block_bounds(out.shape[0], n)
        s1, s2, s3 = self._next(), self._next(), self._next()
        where = [buffer_address(src.view(np.uint8).data), buffer_address(dst.view(np.uint8).data)]
        reg.put(s1, 16, np.array(where, np.uint64).view(np.uint8))
        reg.post(s1)
        try:
            reg.wait_post(s1, -1)
            addrs = [np.frombuffer(self._view(s1, k, 16), np.uint64).tolist() for k in range(n)]
            lo, hi = bounds[me]
            fold_pieces(pids, addrs, src, dst, lo, hi, me, op)
            reg.post(s2)
            reg.wait_post(s2, -1)
            copy_pieces(pids, addrs, dst, bounds, me)
            reg.post(s3)
            reg.wait_post(s3, -1)
        finally:
            reg.done(s3)
        if dst is not out:
            out[...] = dst

    def Reduce(self, comm: Comm, sendbuf: Any, recvbuf: Any, op: Op, root: int) -> bool:
        code = OPCODES.get(op._name) if op._fn is None else None
        root = comm._root(root)
        if code is not None and type(sendbuf) is np.ndarray and (
                root != self.me or type(recvbuf) is np.ndarray) and self.reg.reduce(
                self.seq + 1, sendbuf, recvbuf if root == self.me else None, code, root):
            self.seq += 1
            return True
        if root == self.me:
            out, src = comm._in_out(sendbuf, recvbuf)
        else:
            src = parse_buffer(sendbuf, readonly=True, name="send buffer").array().reshape(-1)
            out = None
        mine = src if src is not None else out
        assert mine is not None
        if mine.nbytes == 0 or mine.nbytes > SLOT:
            return False
        self._fold(self._next(), out, mine, op, root)
        return True

    def _fold(self, s: int, out: np.ndarray | None, mine: np.ndarray, op: Op, root: int) -> None:
        """Publish ``mine``; a reader (root < 0: everyone) folds every slot in rank order into ``out``."""
        reg, n = self.reg, mine.nbytes
        reg.put(s, n, np.ascontiguousarray(mine).view(np.uint8))
        reg.post(s)
        try:
            if out is not None and (root < 0 or root == self.me):
                reg.wait_post(s, -1)
                self._check_lengths(s, n)
                dt = out.dtype
                out[...] = np.frombuffer(self._view(s, 0, n), dt)
                for k in range(1, self.n):
                    reduce_to(op, out, np.frombuffer(self._view(s, k, n), dt), out)
        finally:
            reg.done(s)

    def _check_lengths(self, s: int, n: int) -> None:
        for k in range(self.n):
            got = self.reg.header(s, k)
            if got != n:
                raise MpiError(f"collective message of {got} bytes from rank {k} where {n} were expected: the "
                               "ranks passed different counts or datatypes", ERR_TRUNCATE)

    def Allgather(self, comm: Comm, sendbuf: Any, recvbuf: Any) -> bool:
        out, bounds = comm._recv_layout(recvbuf, False, "receive buffer", False)
        lo, hi = bounds[self.me]
        if is_in_place(sendbuf):
            mine = out[lo:hi]
        else:
            mine = _u8(parse_buffer(sendbuf, readonly=True, name="send buffer").mem)
            if hi - lo != mine.shape[0]:
                raise ValueError(f"Allgather: this rank sends {mine.shape[0]} bytes into a block of {hi - lo}")
        if mine.shape[0] == 0 or mine.shape[0] > SLOT:
            return False
        s, reg = self._next(), self.reg
        reg.put(s, mine.shape[0], mine)
        reg.post(s)
        try:
            reg.wait_post(s, -1)
            self._check_lengths(s, mine.shape[0])
            for k, (a, b) in enumerate(bounds):
                if k != self.me or not is_in_place(sendbuf):
                    out[a:b] = np.frombuffer(self._view(s, k, b - a), np.uint8)
        finally:
            reg.done(s)
        return True

    def Gather(self, comm: Comm, sendbuf: Any, recvbuf: Any, root: int) -> bool:
        root = comm._root(root)
        s_reg = self.reg
        if self.me != root:
            mine = _u8(parse_buffer(sendbuf, readonly=True, name="send buffer").mem)
            if mine.shape[0] == 0 or mine.shape[0] > SLOT:
                return False
            s = self._next()
            s_reg.put(s, mine.shape[0], mine)
            s_reg.post(s)
            s_reg.done(s)
            return True
        out, bounds = comm._recv_layout(recvbuf, False, "receive buffer", False)
        lo, hi = bounds[root]
        if hi - lo == 0 or hi - lo > SLOT:
            return False
        if not is_in_place(sendbuf):
            mine = _u8(parse_buffer(sendbuf, readonly=True, name="send buffer").mem)
            if hi - lo != mine.shape[0]:
                raise ValueError(f"Gather: the root sends {mine.shape[0]} bytes into a block of {hi - lo}")
            out[lo:hi] = mine
        s = self._next()
        s_reg.put(s, hi - lo, None)
        s_reg.post(s)
        try:
            s_reg.wait_post(s, -1)
            self._check_lengths(s, hi - lo)
            for k, (a, b) in enumerate(bounds):
                if k != root:
                    out[a:b] = np.frombuffer(self._view(s, k, b - a), np.uint8)
        finally:
            s_reg.done(s)
        return True

    def Scatter(self, comm: Comm, sendbuf: Any, recvbuf: Any, root: int) -> bool:
        root = comm._root(root)
        reg = self.reg
        if self.me == root:
            work, bounds = comm._recv_layout(sendbuf, False, "send buffer", True)
            inplace = is_in_place(recvbuf)
            blk = bounds[root][1] - bounds[root][0]
            if not inplace:
                rb = _u8(parse_buffer(recvbuf, readonly=False, name="receive buffer").mem)
                if blk != rb.shape[0]:
                    raise ValueError(f"Scatter: the root keeps a block of {blk} bytes in a receive buffer "
                                     f"of {rb.shape[0]}")
            fits = bounds[-1][1] <= SLOT  # the root decides (receivers may pass larger buffers)
            s = self._next()
            reg.put(s, blk if fits else -1, work[:bounds[-1][1]] if fits else None)
            reg.post(s)
            reg.done(s)
            if fits and not inplace:
                rb[:] = work[bounds[root][0]:bounds[root][1]]
            return fits
        rb = _u8(parse_buffer(recvbuf, readonly=False, name="receive buffer").mem)
        s = self._next()
        reg.wait_post(s, root)
        blk = reg.header(s, root)
        try:
            if blk >= 0:
                if blk > rb.shape[0]:
                    raise MpiError(f"Scatterv: {blk} bytes for a receive buffer of {rb.shape[0]}", ERR_TRUNCATE)
                if blk:
                    rb[:blk] = np.frombuffer(self._view(s, root, (self.me + 1) * blk), np.uint8)[self.me * blk:]
        finally:
            reg.done(s)
        return bool(blk >= 0)

    def Alltoall(self, comm: Comm, sendbuf: Any, recvbuf: Any, v: bool) -> bool:
        """Alltoall(v) as single-copy reads, pairwise: every rank publishes where its send buffer is and
        its blocks' bounds; each reads the block meant for it out of every other rank's send buffer
        straight into its receive buffer (one ``process_vm_readv`` each); a last barrier keeps the send
        buffers alive until nobody reads them. Two synchronisations, no messages."""
        n, me = self.n, self.me
        if not self.cma or 16 * (n + 1) > SLOT:
            return False
        plain = None if v else _plain_blocks(recvbuf, n, True)
        if plain is not None:
            out, rbounds = plain
        else:
            out, rbounds = comm._recv_layout(recvbuf, v, "receive buffer", False)
        if is_in_place(sendbuf):
            src, sbounds = out.copy(), rbounds
        elif plain is not None and (splain := _plain_blocks(sendbuf, n, False)) is not None:
            src, sbounds = splain
        else:
            src, sbounds = comm._recv_layout(sendbuf, v, "send buffer", True)
        (slo, shi), (rlo, rhi) = sbounds[me], rbounds[me]
        if shi - slo != rhi - rlo:
            raise MpiError(f"Alltoall: this rank sends itself {shi - slo} bytes for a block of {rhi - rlo}", 15)
        world = comm._rt.world
        meta = np.array([buffer_address(src.data) if src.nbytes else 0, 0, *(x for b in sbounds for x in b)],
                        np.uint64)
        s1, s2, reg = self._next(), self._next(), self.reg
        reg.put(s1, meta.nbytes, meta.view(np.uint8))
        reg.post(s1)
        error: MpiError | None = None
        try:
            out[rlo:rhi] = src[slo:shi]  # this rank's own block, while the others arrive
            reg.wait_post(s1, -1)
            for j in range(n):
                lo, hi = rbounds[j]
                if j == me:
                    continue
                peer = np.frombuffer(self._view(s1, j, 16 * (n + 1)), np.uint64)
                plo, phi = int(peer[2 + 2 * me]), int(peer[3 + 2 * me])
                if phi - plo != hi - lo:
                    error = error or MpiError(f"Alltoall: {phi - plo} bytes arrived for a block of {hi - lo}", 15)
                elif hi > lo:
                    cma_read(world.addrs[comm._members[j]].pid, int(peer[0]) + plo, out[lo:hi].data)
            reg.post(s2)
            reg.wait_post(s2, -1)
        finally:
            reg.done(s2)
        if error is not None:
            raise error
        return True

    # --- pickled objects -------------------------------------------------------------------------
    def _put_obj(self, s: int, obj: Any) -> Any:
        """Publish a pickle of ``obj`` (or the mark -1 when it does not fit); returns the pickle."""
        data = dumps(obj)
        fits = len(data) <= SLOT
        self.reg.put(s, len(data) if fits else -1, data if fits else None)
        return data

    def _get_obj(self, s: int, who: int, length: int) -> Any:
        return loads(self._view(s, who, length))

    def bcast(self, obj: Any, root: int) -> tuple[bool, Any]:
        """(done here, value); not done: the pickle did not fit, the caller runs the general bcast."""
        self.seq += 1
        if self.me == root:
            return self.reg.bcast_obj(self.seq, dumps(obj), root), obj
        data = self.reg.bcast_obj(self.seq, None, root)
        if data is None:
            return False, None
        return True, loads(data, True)

    def allgather(self, obj: Any) -> list[Any] | None:
        """Every rank's object, or None when one did not fit (the caller runs the general path)."""
        s, reg = self._next(), self.reg
        self._put_obj(s, obj)
        reg.post(s)
        try:
            reg.wait_post(s, -1)
            lengths = [reg.header(s, k) for k in range(self.n)]
            if min(lengths) < 0:
                return None
            return [obj if k == self.me else self._get_obj(s, k, lengths[k]) for k in range(self.n)]
        finally:
            reg.done(s)

    def allreduce(self, obj: Any, op: Op | None) -> tuple[bool, Any]:
        op = MAX if op is None else op
        values = self.allgather(obj)
        if values is None:
            return False, None
        acc = values[0]
        for v in values[1:]:
            acc = reduce_objects(op, acc, v)
        return True, acc

    def gather(self, comm: Comm, obj: Any, root: int) -> tuple[bool, list[Any] | None]:
        """Always done here (True, the list or None off the root): a part that does not fit a slot goes
        point-to-point to the root."""
        return True, self._gather(comm, obj, root)

    def _gather(self, comm: Comm, obj: Any, root: int) -> list[Any] | None:
        s, reg, eng = self._next(), self.reg, comm._engine
        data = self._put_obj(s, obj)
        reg.post(s)
        try:
            if self.me != root:
                if len(data) > SLOT:
                    eng.wait(eng.send(comm._cctx, comm._members[root], OBJ_TAG, data, len(data), True))
                return None
            reg.wait_post(s, -1)
            out: list[Any] = []
            for k in range(self.n):
                length = reg.header(s, k)
                if k == self.me:
                    out.append(obj)
                elif length >= 0:
                    out.append(self._get_obj(s, k, length))
                else:
                    req = eng.post(comm._cctx, comm._members[k], OBJ_TAG, None)
                    eng.wait(req)
                    if req.error is not None:
                        raise req.error
                    out.append(req.value)
            return out
        finally:
            reg.done(s)

    def reduce(self, comm: Comm, obj: Any, op: Op, root: int) -> tuple[bool, Any]:
        values = self._gather(comm, obj, root)
        if values is None:
            return True, None
        acc = values[0]
        for v in values[1:]:
            acc = reduce_objects(op, acc, v)
        return True, acc


_cma_ok: list[bool] = []


def _cma() -> bool:
    if not _cma_ok:
        _cma_ok.append(cma_available())
    return _cma_ok[0]


# --- attaching communicators to regions ----------------------------------------------------------
_registry: dict[tuple[int, tuple[int, ...]], ShmColl | SpanColl] = {}
_registry_world: list[str] = [""]


def enabled() -> bool:
    return env(ENV_MPI_SHMCOLL) not in ("0", "")


def attach(comm: Comm) -> ShmColl | SpanColl | Literal[False]:
    """This communicator's region (set up collectively on first use): a ``ShmColl`` on one host, a
    ``SpanColl`` (the host legs, shmhosts.py) across hosts; False when the communicator has one rank or
    regions are off. Cached on the handle as ``_coll``."""
    if comm._size < 2 or comm._rank < 0 or not enabled():
        comm._coll = False
        return False
    world = comm._rt.world
    if _registry_world[0] != world.world_id:  # a new world (generation): the old regions are gone
        for old in _registry.values():
            old.close()
        _registry.clear()
        _registry_world[0] = world.world_id
    key = (comm._cid, tuple(comm._members))
    sc = _registry.get(key)
    if sc is None:
        hosts = comm._hosts
        local = [r for r in range(comm._size) if hosts[r] == hosts[comm._rank]]
        mapping, reg = _region(comm, local) if len(local) > 1 else (None, None)
        if len(local) == comm._size:
            assert mapping is not None
            sc = ShmColl(mapping, reg, comm._size, comm._rank)
        else:
            sc = SpanColl(comm, mapping, reg)
        _registry[key] = sc
    comm._coll = sc
    return sc


def _region(comm: Comm, local: list[int]) -> tuple[Mapping, Any]:
    """Map the region of the communicator's ``local`` ranks (comm ranks on this host), collectively."""
    world = comm._rt.world
    fab = world.fabric
    members = [comm._members[r] for r in local]
    n, me = len(local), local.index(comm._rank)
    mapping = shmregion.setup(comm._engine, comm._cctx, members, world.rank,
                              region_path(world.world_id, comm._cid, members[0]), region_size(n, SLOT))
    spin_ns = int(fab.spin * 1e9) if not fab.yield_spin else int(OVERSUBSCRIBED_SPIN * 1e9)
    args = (mapping.map, n, me, SLOT, spin_ns, fab.yield_spin, comm._engine.progress)
    reg = _fastring.Region(*args) if fab.fast and _fastring is not None else PyRegion(*args)
    return mapping, reg




def release(comm: Comm) -> None:
    """The communicator is freed (or its world rebuilt): drop its region."""
    sc = comm.__dict__.pop("_coll", None)
    if sc:
        for key, value in list(_registry.items()):
            if value is sc:
                del _registry[key]
                sc.close()
