"""The same-host machinery of one-sided windows: a per-host segment, its locks, CMA writes.

Theory of operation
- Every window has, on each host, one segment: an anonymous ``memfd`` made by the host's first window
  rank (the leader) before the creating allgather. The others open it through
  ``/proc/<leader pid>/fd/<n>`` during creation, so the segment never has a name in ``/dev/shm`` and
  cannot leak, even after ``kill -9``: it lives as long as some rank has it open or mapped.
- Layout: a control area of one ``SLOT`` per window rank, then, for the ``Allocate`` flavours, each
  local rank's memory at a 64-byte aligned offset, in rank order. A rank's slot holds its fence
  arrival counter and CPU (written only by its owner, read by all: no read-modify-write), its passive-target
  lock and its accumulate lock.
- The locks are process-shared POSIX reader-writer locks (``pthread_rwlock_t``), used only through
  their non-blocking calls (tryrdlock / trywrlock / unlock, a few hundred nanoseconds through ctypes,
  no system call when uncontended): shared and exclusive are exactly MPI's two lock types. A busy
  lock is retried by the caller, who progresses meanwhile (the holder may be waiting for it). The
  leader initialises every lock before the creating allgather, so no rank sees one uninitialised.
  A rank that dies holding a lock leaves it held, but its death ends the whole world anyway.
- Windows whose memory the program owns (``Create``, ``Create_dynamic``) are not in the segment: a
  same-host origin reads and writes the target's memory with ``process_vm_readv``/``writev`` (one copy,
  no target involvement), as the point-to-point rendezvous does.
"""

from __future__ import annotations

import ctypes
import mmap
import os

import numpy as np

from ..errors import MpiError

SLOT = 256  # per rank: fence counter and CPU at 0, passive-target lock at LOCK, accumulate lock at ACC
LOCK, ACC = 64, 128  # each lock has 128 bytes (glibc's pthread_rwlock_t is 56)
ERR_RMA_RANGE = 68
ERR_WIN = 53
EBUSY = 16
_libc = ctypes.CDLL(None, use_errno=True)
for _name in ("pthread_rwlock_init", "pthread_rwlockattr_init", "pthread_rwlockattr_setpshared"):
    getattr(_libc, _name).restype = ctypes.c_int
tryrd, trywr, _unlock = _libc.pthread_rwlock_tryrdlock, _libc.pthread_rwlock_trywrlock, _libc.pthread_rwlock_unlock
for _fn in (tryrd, trywr, _unlock):
    _fn.argtypes, _fn.restype = [ctypes.c_void_p], ctypes.c_int


class _IOVec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


_libc.process_vm_writev.restype = ctypes.c_ssize_t
_libc.process_vm_writev.argtypes = [ctypes.c_int, ctypes.POINTER(_IOVec), ctypes.c_ulong,
                                    ctypes.POINTER(_IOVec), ctypes.c_ulong, ctypes.c_ulong]


def control_size(nranks: int) -> int:
    return nranks * SLOT


def layout(sizes: list[int], nranks: int) -> tuple[list[int], int]:
    """Offsets of the local ranks' memory (``sizes`` in rank order) after the control area, and the total."""
    off = control_size(nranks)
    offsets = []
    for s in sizes:
        offsets.append(off)
        off += (s + 63) & ~63
    return offsets, off


class Segment:
    """One rank's handle on its host's segment of a window: its own descriptor and mapping."""

    def __init__(self, fd: int, total: int) -> None:
        self.fd, self.total = fd, total
        if total:
            os.ftruncate(fd, total)  # idempotent: every local rank computes the same total
        self.map = mmap.mmap(fd, total) if total else None
        self.mem = memoryview(self.map) if self.map is not None else memoryview(bytearray(0))
        self._anchor = (ctypes.c_char * total).from_buffer(self.map) if self.map is not None else None
        self.base = ctypes.addressof(self._anchor) if self._anchor is not None else 0

    @classmethod
    def create(cls, nranks: int) -> Segment:
        """The leader's segment: the control area only, its locks initialised (grown once sizes are known)."""
        seg = cls(os.memfd_create("granny-win", os.MFD_CLOEXEC), control_size(nranks))
        attr = ctypes.create_string_buffer(64)  # pthread_rwlockattr_t is 8 bytes
        _libc.pthread_rwlockattr_init(attr)
        _libc.pthread_rwlockattr_setpshared(attr, 1)  # PTHREAD_PROCESS_SHARED
        for r in range(nranks):
            for lock in (LOCK, ACC):
                _libc.pthread_rwlock_init(ctypes.c_void_p(seg.base + r * SLOT + lock), attr)
        return seg

    @classmethod
    def open(cls, pid: int, fd: int, total: int) -> Segment:
        try:
            own = os.open(f"/proc/{pid}/fd/{fd}", os.O_RDWR | os.O_CLOEXEC)
        except OSError as exc:
            raise MpiError(f"cannot open the window segment of process {pid}: {exc}", ERR_WIN) from None
        return cls(own, total)

    def grow(self, total: int) -> None:
        """The leader made its segment before it knew the sizes: size and map it now."""
        fd = self.fd
        self._unmap()
        self.__init__(fd, total)  # type: ignore[misc]

    def lock(self, rank: int) -> int:
        return self.base + rank * SLOT + LOCK

    def acc(self, rank: int) -> int:
        return self.base + rank * SLOT + ACC

    def _unmap(self) -> None:
        self.mem.release()
        self._anchor = None
        if self.map is not None:
            try:
                self.map.close()
            except BufferError:
                pass  # a view the program still holds keeps the mapping; it goes with the last view

    def close(self) -> None:
        self._unmap()
        os.close(self.fd)


_libc.sched_getcpu.restype = ctypes.c_int
current_cpu = _libc.sched_getcpu


def try_lock(addr: int, exclusive: bool) -> bool:
    """Take the lock at ``addr`` without waiting; False when it is held in a conflicting mode."""
    return bool((trywr if exclusive else tryrd)(addr) == 0)


def unlock(addr: int) -> None:
    _unlock(addr)


def lock_acc(addr: int) -> None:
    """Take an accumulate lock (held for one read-modify-write by whoever has it: yield, do not sleep)."""
    while trywr(addr):
        os.sched_yield()


def cma_write(pid: int, address: int, data: memoryview) -> None:
    """Copy ``data`` into another process's memory at ``address``."""
    total = data.nbytes
    if total == 0:
        return
    src = np.frombuffer(data, dtype=np.uint8)
    base = int(src.ctypes.data)
    done = 0
    while done < total:
        liov = _IOVec(base + done, total - done)
        riov = _IOVec(address + done, total - done)
        got = _libc.process_vm_writev(pid, ctypes.byref(liov), 1, ctypes.byref(riov), 1, 0)
        if got <= 0:
            err = ctypes.get_errno()
            raise MpiError(f"writing {total} bytes to window memory of process {pid} failed: "
                           f"{os.strerror(err)}", ERR_RMA_RANGE)
        done += got
