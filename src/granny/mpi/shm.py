"""Same-host channels between MPI ranks: shared-memory rings, doorbells and single-copy reads.

Theory of operation
- Every rank owns an *inbox*: one file in /dev/shm holding a control line and one single-producer,
  single-consumer ring per possible sender (indexed by the sender's world rank; the file is sparse,
  so only rings that carry traffic use memory). A sender maps the receiver's inbox and appends records
  to its own ring there; only the receiver consumes them. Per ordered pair there is one ring, so
  records between two ranks arrive in the order they were sent.
- A ring is ``head`` (written only by the producer), ``tail`` (written only by the consumer) and a data
  area. Positions are monotonic byte counters; a record never straddles the end of the data area (a PAD
  record fills the gap). x86 keeps stores in order and loads in order, so a consumer that sees the new
  ``head`` also sees the record bytes written before it. Records are 64-byte aligned: a small message
  is one or two cache lines.
- Waiting: a rank spins on its rings for a short budget, then sets its ``sleeping`` flag, checks once
  more, and blocks in ``select`` on its doorbell, a datagram socket in the abstract namespace. Anyone who
  changes something a sleeper may wait for (a record in its ring, space freed in a ring it writes to)
  rings the doorbell when the flag is set. The check-then-sleep pair has no memory fence from Python,
  so ``select`` also has a short timeout: a lost wake-up costs a millisecond, never a hang. (With the C
  ring, the flag and the counters published from C are sequentially consistent stores, a full fence on
  x86, so a wake-up between C code and a sleeper is not lost; the paths still in Python keep the
  timeout.)
- The C ring (``_fastring.c``, optional): ``FastProducer``/``FastConsumer`` subclass its types and keep
  the ring format and counters of ``Producer``/``Consumer``, so the general path (fabric.py, p2p.py)
  runs on either. Their ``send_buf``/``recv_buf`` move a small plain ndarray in one call each (record,
  copy, counter, doorbell) for ``Comm.Send``/``Recv``, and ``send_obj``/``recv_obj`` a pickle for
  ``send``/``recv``; anything unusual goes back to the general path untouched. Without the compiled
  extension, or with ``GRANNY_MPI_PURE=1``, the Python classes are used (``fast_rings``).
- Large payloads do not go through the ring: the sender publishes (pid, address, length) and the
  receiver copies straight out of the sender's memory with ``process_vm_readv`` (one copy, as Open MPI's
  CMA path does), then acknowledges so the sender may reuse its buffer.
- The inbox file is unlinked as soon as every local peer has mapped it, so the memory goes away with
  the last process that maps it, even after ``kill -9``.
"""

from __future__ import annotations

import ctypes
import glob
import mmap
import os
import socket
import struct
from typing import Any, TypeAlias

from ..config import ENV_MPI_PURE, ENV_MPI_RNDV_FROM, env, shm_owner_suffix
from ..errors import MpiError

SHM_DIR = "/dev/shm"
CTRL = 64  # control line: u64 sleeping flag
RING_META = 128  # head (own cache line), tail (own cache line)
RING_DATA = 1 << 20  # bytes of record space per ordered pair
RING_MASK = RING_DATA - 1
ALIGN = 64
EAGER_LIMIT = 64 * 1024  # larger same-host payloads go by rendezvous (p2p.py), not through the ring
# A blocking ``Send`` of a plain ndarray larger than this goes by rendezvous in C (``send_rndv``): one
# ``process_vm_readv`` by the receiver beats two copies through the ring (the ring's 1 MiB of records
# is cold in cache) from here on (measured: 6000 B 1.65 vs 2.0 us, 10 000 B even, 16 KiB 2.4 vs 2.95 us),
# as Open MPI's single-copy path does above its 4 KiB eager limit.
RNDV_FROM = int(env(ENV_MPI_RNDV_FROM))

# kind, flags, ctx, src, tag, arg, payload length
REC = struct.Struct("<BBxxiiiQQ")
_pack = REC.pack_into
PAD = 0xFF

_libc = ctypes.CDLL(None, use_errno=True)

try:
    from . import _fastring
except ImportError:  # the C extension did not build: the pure-Python rings below do everything
    _fastring = None  # type: ignore[assignment]

PURE_ENV = ENV_MPI_PURE  # the name tests use
_c_cma_read = getattr(_fastring, "cma_read", None) if env(ENV_MPI_PURE) in ("", "0") else None
_c_buffer_address = getattr(_fastring, "buffer_address", None) if _c_cma_read is not None else None


def fast_rings() -> bool:
    """Whether new fabrics use the C rings: the extension is importable and ``GRANNY_MPI_PURE`` is unset
    (or "0"). Asked per fabric, so a test may switch between the two in one process."""
    return _fastring is not None and env(ENV_MPI_PURE) in ("", "0")


class _IOVec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


_libc.process_vm_readv.restype = ctypes.c_ssize_t
_libc.process_vm_readv.argtypes = [ctypes.c_int, ctypes.POINTER(_IOVec), ctypes.c_ulong,
                                   ctypes.POINTER(_IOVec), ctypes.c_ulong, ctypes.c_ulong]


def inbox_size(world_size: int) -> int:
    return CTRL + world_size * (RING_META + RING_DATA)


def inbox_path(world_id: str, rank: int, pid: int) -> str:
    """The owner's pid is in the name, so whoever reaps a dead rank can remove its inbox."""
    return f"{SHM_DIR}/granny-mpi-{world_id}-{rank}{shm_owner_suffix(pid)}"


def remove_inboxes_of(pid: int) -> None:
    """Unlink what a dead process left behind (it died before the world's first barrier)."""
    for path in glob.glob(f"{SHM_DIR}/granny-mpi-*-p{pid}"):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def doorbell_name(world_id: str, rank: int) -> bytes:
    return f"\0granny-mpi-{world_id}-{rank}".encode()


class Inbox:
    """One rank's mapping of some rank's inbox (its own, to consume; a peer's, to produce)."""

    def __init__(self, path: str, world_size: int, create: bool, fast: bool = False) -> None:
        flags = os.O_RDWR | (os.O_CREAT | os.O_EXCL if create else 0)
        fd = os.open(path, flags, 0o600)
        try:
            if create:
                os.ftruncate(fd, inbox_size(world_size))
            self.map = mmap.mmap(fd, inbox_size(world_size))
        finally:
            os.close(fd)
        self.path = path
        self.mem = memoryview(self.map)
        self.words = self.mem.cast("Q")  # 8-byte aligned counters, read and written whole
        self.fast = fast and _fastring is not None

    def ring_offset(self, sender: int) -> int:
        return CTRL + sender * (RING_META + RING_DATA)

    @property
    def sleeping(self) -> int:
        return int(self.words[0])

    def set_sleeping(self, value: int) -> None:
        if self.fast:
            _fastring.set_flag(self.map, 0, value)  # a fenced store: see "Waiting" above
        else:
            self.words[0] = value

    def close(self) -> None:
        self.words.release()
        self.mem.release()
        try:
            self.map.close()
        except BufferError:
            pass  # a view handed to a handler is still alive; the mapping dies with the process


class Producer:
    """This rank's ring inside a peer's inbox."""

    __slots__ = ("inbox", "words", "data", "head_i", "tail_i", "base", "head", "tail_cache")

    def __init__(self, inbox: Inbox, me: int) -> None:
        self.inbox = inbox
        off = inbox.ring_offset(me)
        self.words = inbox.words
        self.head_i, self.tail_i = off // 8, (off + 64) // 8
        self.base = off + RING_META
        self.data = inbox.mem[self.base:self.base + RING_DATA]
        self.head = int(self.words[self.head_i])
        self.tail_cache = int(self.words[self.tail_i])

    def try_put(self, kind: int, flags: int, ctx: int, src: int, tag: int, arg: int, payload: Any, plen: int) -> bool:
        """Append one record; False if the ring has no room for it right now."""
        size = (plen + 95) & -64  # 32-byte header + payload, rounded up to whole cache lines
        head = self.head
        pos = head & RING_MASK
        room = RING_DATA - pos
        gap = room if room < size else 0
        if head + gap + size - self.tail_cache > RING_DATA:
            self.tail_cache = int(self.words[self.tail_i])
            if head + gap + size - self.tail_cache > RING_DATA:
                return False
        data = self.data
        if gap:
            _pack(data, pos, PAD, 0, 0, 0, 0, 0, gap)
            head += gap
            pos = 0
        _pack(data, pos, kind, flags, ctx, src, tag, arg, plen)
        if plen:
            data[pos + 32:pos + 32 + plen] = payload
        self.head = head = head + size
        self.words[self.head_i] = head  # publish: the record is complete before head moves
        return True

    def fits(self, plen: int) -> bool:
        return REC.size + plen + ALIGN <= RING_DATA // 2


class Consumer:
    """The ring of one sender inside this rank's own inbox."""

    __slots__ = ("words", "data", "head_i", "tail_i", "tail", "src", "peer_words")

    def __init__(self, inbox: Inbox, sender: int) -> None:
        off = inbox.ring_offset(sender)
        self.words = inbox.words
        self.head_i, self.tail_i = off // 8, (off + 64) // 8
        self.data = inbox.mem[off + RING_META:off + RING_META + RING_DATA]
        self.tail = int(self.words[self.tail_i])
        self.src = sender
        self.peer_words: memoryview | None = None  # the sender's own inbox words (its sleeping flag)


if _fastring is not None:

    class FastProducer(_fastring.Producer):
        """``Producer`` over the C ring: the same records, counters and ``try_put``, plus ``send_buf``
        (a whole buffer ``Send`` of a small ndarray in one C call, doorbell included)."""

        __slots__ = ("head_i", "inbox", "tail_i", "words")

        def __init__(self, inbox: Inbox, me: int, bell_fd: int, bell_name: bytes) -> None:
            off = inbox.ring_offset(me)
            super().__init__(inbox.map, off, RING_DATA, me, EAGER_LIMIT)
            self.buf_eager = min(RNDV_FROM, EAGER_LIMIT)
            self.head_i, self.tail_i = off // 8, (off + 64) // 8
            self.inbox = inbox
            self.words = inbox.words
            self.set_bell(bell_fd, bell_name)

    class FastConsumer(_fastring.Consumer):
        """``Consumer`` over the C ring, plus ``recv_buf`` (a small ``Recv`` straight off the ring)."""

        __slots__ = ("data", "head_i", "peer_words", "tail_i")

        def __init__(self, inbox: Inbox, sender: int) -> None:
            off = inbox.ring_offset(sender)
            super().__init__(inbox.map, off, RING_DATA, sender)
            self.head_i, self.tail_i = off // 8, (off + 64) // 8
            self.data = inbox.mem[off + RING_META:off + RING_META + RING_DATA]
            self.peer_words: memoryview | None = None

        def attach_peer(self, peer: Inbox, bell_fd: int, bell_name: bytes) -> None:
            """The sender's own inbox (its sleeping flag) and doorbell: rung when it may wait for room."""
            self.peer_words = peer.words
            self.set_peer(peer.map)
            self.set_bell(bell_fd, bell_name)


def cma_read(pid: int, address: int, into: memoryview) -> None:
    """Copy ``len(into)`` bytes from another process's memory at ``address`` (one copy, no kernel buffer).

    With the C extension, one C call (``_fastring.cma_read``, the GIL released during the copy): the
    ctypes set-up below costs ~4 µs per call, as much as copying 64 KiB."""
    total = into.nbytes
    if total == 0:
        return
    if _c_cma_read is not None:
        try:
            _c_cma_read(pid, address, into)
        except OSError as exc:
            raise MpiError(f"reading {total} bytes from rank process {pid} failed: {exc.strerror}") from None
        return
    local = (ctypes.c_char * total).from_buffer(into)
    done = 0
    base = ctypes.addressof(local)
    while done < total:
        liov = _IOVec(base + done, total - done)
        riov = _IOVec(address + done, total - done)
        got = _libc.process_vm_readv(pid, ctypes.byref(liov), 1, ctypes.byref(riov), 1, 0)
        if got <= 0:
            err = ctypes.get_errno()
            raise MpiError(f"reading {total} bytes from rank process {pid} failed: {os.strerror(err)}")
        done += got


def buffer_address(mem: memoryview) -> int:
    """Address of a contiguous buffer (read-only ones too), for a peer's ``cma_read``."""
    if _c_buffer_address is not None:
        return int(_c_buffer_address(mem))  # 0.3 µs, where numpy's ctypes attribute takes 2 µs
    import numpy as np

    if mem.nbytes == 0:
        return 0
    return int(np.frombuffer(mem, dtype=np.uint8).ctypes.data)


def cma_available() -> bool:
    src = bytearray(b"granny")
    dst = bytearray(6)
    try:
        cma_read(os.getpid(), buffer_address(memoryview(src)), memoryview(dst))
    except MpiError:
        return False
    return dst == src


class Doorbell:
    """A datagram socket a sleeping rank blocks on; peers ring it by name."""

    def __init__(self, world_id: str, rank: int) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(doorbell_name(world_id, rank))
        self.sock.setblocking(False)
        self.out = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.out.setblocking(False)
        self.world_id = world_id

    def fileno(self) -> int:
        return self.sock.fileno()

    def ring(self, rank: int) -> None:
        try:
            self.out.sendto(b"!", doorbell_name(self.world_id, rank))
        except (BlockingIOError, ConnectionRefusedError, FileNotFoundError):
            pass  # its queue is full (it will wake anyway) or it has already gone

    def drain(self) -> None:
        try:
            while True:
                self.sock.recv(64)
        except BlockingIOError:
            pass

    def close(self) -> None:
        self.sock.close()
        self.out.close()


AnyProducer: TypeAlias = "Producer | FastProducer"  # FastProducer exists only with the C extension
AnyConsumer: TypeAlias = "Consumer | FastConsumer"
