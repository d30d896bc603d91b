"""The same-host machinery of one-sided windows: a per-host segment, byte-range locks, CMA writes.

Theory of operation
- Every window has, on each host, one segment: an anonymous ``memfd`` made by the host's first window
  rank (the leader) before the creating allgather. The others open it through
  ``/proc/<leader pid>/fd/<n>`` during creation, so the segment never has a name in ``/dev/shm`` and
  cannot leak, even after ``kill -9``: it lives as long as some rank has it open or mapped.
- Layout: a control area of one 64-byte slot per window rank (the fence barrier's arrival counters,
  written only by their owner, read by all: no read-modify-write is ever needed), then, for the
  ``Allocate`` flavours, each local rank's memory at a 64-byte aligned offset, in rank order.
- Locks are Linux open-file-description byte-range locks (``F_OFD_SETLK``) on the segment: byte ``t``
  is the passive-target lock of window rank ``t`` (shared or exclusive, exactly MPI's two lock types),
  byte ``ACC + t`` makes accumulates to ``t`` atomic. Every rank opens the segment itself, so each has
  its own description and the kernel arbitrates between them; the locks vanish with the process.
- Windows whose memory the program owns (``Create``, ``Create_dynamic``) are not in the segment: a
  same-host origin reads and writes the target's memory with ``process_vm_readv``/``writev`` (one copy,
  no target involvement), as the point-to-point rendezvous does.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import mmap
import os
import struct

import numpy as np

from ..errors import MpiError

SLOT = 64
ACC = 1 << 20  # lock byte offset of the accumulate locks (the passive-target locks are bytes 0..size-1)
ERR_RMA_RANGE = 68
ERR_WIN = 53
_FLOCK = struct.Struct("hhqqi4x")  # struct flock on Linux x86-64 / arm64 (native alignment)
_libc = ctypes.CDLL(None, use_errno=True)


class _IOVec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


_libc.process_vm_writev.restype = ctypes.c_ssize_t
_libc.process_vm_writev.argtypes = [ctypes.c_int, ctypes.POINTER(_IOVec), ctypes.c_ulong,
                                    ctypes.POINTER(_IOVec), ctypes.c_ulong, ctypes.c_ulong]


def layout(sizes: list[int], nranks: int) -> tuple[list[int], int]:
    """Offsets of the local ranks' memory (``sizes`` in rank order) after the control area, and the total."""
    off = (nranks * SLOT + 63) & ~63
    offsets = []
    for s in sizes:
        offsets.append(off)
        off += (s + 63) & ~63
    return offsets, off


class Segment:
    """One rank's handle on its host's segment of a window: its own file description and mapping."""

    def __init__(self, fd: int, total: int) -> None:
        self.fd, self.total = fd, total
        if total:
            os.ftruncate(fd, total)  # idempotent: every local rank computes the same total
        self.map = mmap.mmap(fd, total) if total else None
        self.mem = memoryview(self.map) if self.map is not None else memoryview(bytearray(0))
        self._peers: dict[int, int] = {}  # remote origin -> a description of its own (rma_remote.py)

    @classmethod
    def create(cls) -> Segment:
        return cls(os.memfd_create("granny-win", os.MFD_CLOEXEC), 0)

    @classmethod
    def open(cls, pid: int, fd: int, total: int) -> Segment:
        try:
            own = os.open(f"/proc/{pid}/fd/{fd}", os.O_RDWR | os.O_CLOEXEC)
        except OSError as exc:
            raise MpiError(f"cannot open the window segment of process {pid}: {exc}", ERR_WIN) from None
        return cls(own, total)

    def grow(self, total: int) -> None:
        """The leader made its segment before it knew the sizes: size and map it now."""
        self.__init__(self.fd, total)  # type: ignore[misc]

    def peer_fd(self, origin: int) -> int:
        """A file description for a remote origin's locks, so the kernel tells it from this rank's own."""
        fd = self._peers.get(origin)
        if fd is None:
            fd = self._peers[origin] = os.open(f"/proc/self/fd/{self.fd}", os.O_RDWR | os.O_CLOEXEC)
        return fd

    def close(self) -> None:
        self.mem.release()
        if self.map is not None:
            try:
                self.map.close()
            except BufferError:
                pass  # a view the program still holds keeps the mapping; it goes with the last view
        for fd in (self.fd, *self._peers.values()):
            os.close(fd)
        self._peers.clear()


def try_lock(fd: int, byte: int, exclusive: bool) -> bool:
    """Take lock byte ``byte`` without waiting; False when another description holds a conflicting one."""
    kind = fcntl.F_WRLCK if exclusive else fcntl.F_RDLCK
    try:
        fcntl.fcntl(fd, fcntl.F_OFD_SETLK, _FLOCK.pack(kind, os.SEEK_SET, byte, 1, 0))
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            return False
        raise
    return True


def lock_wait(fd: int, byte: int) -> None:
    """Take lock byte ``byte`` exclusively, sleeping in the kernel until it is free (brief holds only)."""
    fcntl.fcntl(fd, fcntl.F_OFD_SETLKW, _FLOCK.pack(fcntl.F_WRLCK, os.SEEK_SET, byte, 1, 0))


def unlock(fd: int, byte: int) -> None:
    fcntl.fcntl(fd, fcntl.F_OFD_SETLK, _FLOCK.pack(fcntl.F_UNLCK, os.SEEK_SET, byte, 1, 0))


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
