"""The shared-memory collective region of one communicator on one host: layout, set-up, and the
pure-Python twin of the C ``Region`` (``_fastcoll.c``).

Theory of operation
- Layout (offsets in bytes, see ``_fastcoll.c``): a line holding the futex word ``bell`` and the count
  of ``sleepers``; one cache line per local rank holding its ``post`` and ``done`` sequence numbers
  (written only by that rank, so no two writers share a line); then two slots per rank (``seq & 1``),
  each a 16-byte header (length, aux) followed by ``SLOT`` bytes of data.
- Set-up is collective over the local ranks, once per communicator: the leader creates the file
  (named after the world, the communicator's context id and its own pid, so the worker's reaper
  removes it if the leader dies), tells the others its name over point-to-point, and unlinks it once
  every member has mapped it. An error on the way unlinks it too: nothing is left in /dev/shm.
- ``PyRegion`` has the C type's methods and the same protocol (see shmcoll.py), with numpy doing the
  copies and reductions. It waits by spinning, then sleeping with a growing timeout, progressing the
  point-to-point engine in between; it never sleeps on the futex, so a C publisher never needs to
  wake it (a C sleeper woken late by a Python publisher waits at most its own timeout).
"""

from __future__ import annotations

import mmap
import os
import pickle
import time
from collections.abc import Callable
from typing import Any

from ..config import shm_owner_suffix
from .shm import SHM_DIR

LINE = 64
DATA_OFF = 16
SLOT = 16 * 1024  # bytes of data per slot: the size threshold of the shared-memory collectives
SETUP_TAG = -40  # internal tags (negative: no user receive matches them)
ACK_TAG = -41


def stride(slot: int) -> int:
    return (DATA_OFF + slot + LINE - 1) // LINE * LINE


def region_size(n: int, slot: int) -> int:
    return LINE * (1 + n) + 2 * n * stride(slot)


def region_path(world_id: str, cid: int, leader: int) -> str:
    return f"{SHM_DIR}/granny-mpi-{world_id}-c{cid}-{leader}{shm_owner_suffix()}"


class Mapping:
    """One mapped region file (the file itself is unlinked once everyone has it)."""

    def __init__(self, path: str, size: int, create: bool) -> None:
        fd = os.open(path, os.O_RDWR | (os.O_CREAT | os.O_EXCL if create else 0), 0o600)
        try:
            if create:
                os.ftruncate(fd, size)
            self.map = mmap.mmap(fd, size)
        finally:
            os.close(fd)
        self.mem = memoryview(self.map)

    def close(self) -> None:
        self.mem.release()
        try:
            self.map.close()
        except BufferError:
            pass  # a view is still alive somewhere; the mapping goes with the process


def setup(engine: Any, ctx: int, local_world: list[int], me_world: int, path: str, size: int) -> Mapping:
    """Collective over ``local_world`` (world ranks on this host, leader first): map one region."""
    leader = local_world[0]
    if me_world == leader:
        mapping = Mapping(path, size, create=True)
        try:
            data = pickle.dumps(path)
            for w in local_world[1:]:
                engine.wait(engine.send(ctx, w, SETUP_TAG, data, len(data), True))
            for w in local_world[1:]:
                req = engine.post(ctx, w, ACK_TAG, None)
                engine.wait(req)
        finally:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        return mapping
    req = engine.post(ctx, leader, SETUP_TAG, None)
    engine.wait(req)
    if req.error is not None:
        raise req.error
    mapping = Mapping(req.value, size, create=False)
    data = pickle.dumps(True)
    engine.wait(engine.send(ctx, leader, ACK_TAG, data, len(data), True))
    return mapping


OPCODES = {name: i for i, name in enumerate(("SUM", "PROD", "MAX", "MIN", "BAND", "BOR", "BXOR"))}  # the C type's


class PyRegion:
    """The C ``Region``'s methods in Python (see the module docstring)."""

    def __init__(self, buffer: Any, n: int, me: int, slot: int, spin_ns: int, yield_: bool,
                 progress: Callable[[], Any] | None) -> None:
        self.mem = memoryview(buffer)
        self.words = self.mem.cast("Q")
        self.n, self.me, self.slot, self.stride = n, me, slot, stride(slot)
        self.spin = spin_ns * 1e-9
        self.yield_ = yield_
        self.progress = progress
        self.known_done = 0

    def release(self) -> None:
        self.words.release()
        self.mem.release()

    def _slot(self, i: int, s: int) -> int:
        return LINE * (1 + self.n) + (2 * i + (s & 1)) * self.stride

    def _ready(self, kind: int, who: int, s: int) -> bool:
        w = self.words
        if who >= 0:
            return bool(w[8 * (1 + who) + kind] >= s)
        return all(w[8 * (1 + i) + kind] >= s for i in range(self.n))

    def _wait(self, kind: int, who: int, s: int) -> None:
        if self._ready(kind, who, s):
            return
        deadline = time.perf_counter() + self.spin
        while time.perf_counter() < deadline:
            if self.yield_:
                os.sched_yield()
            if self._ready(kind, who, s):
                return
        pause = 20e-6
        while not self._ready(kind, who, s):
            time.sleep(pause)
            if self.progress is not None:
                self.progress()
            pause = min(pause * 2, 2e-3)

    def _publish(self, index: int, s: int) -> None:
        self.words[index] = s
        if self.words[1]:  # sleepers (a C rank on the futex): wake them
            self.words[0] = (self.words[0] + 1) & 0xFFFFFFFF  # bell (the u32 at offset 0) and 4 bytes of pad
            _futex_wake(self.mem)

    def post(self, s: int) -> None:
        self._publish(8 * (1 + self.me), s)

    def done(self, s: int) -> None:
        self._publish(8 * (1 + self.me) + 1, s)

    def wait_post(self, s: int, who: int) -> None:
        self._wait(0, who, s)
        if who < 0 and self.known_done < s - 1:
            self.known_done = s - 1

    def _wait_slot_free(self, s: int) -> None:
        if s >= 3 and self.known_done < s - 2:
            self._wait(1, -1, s - 2)
            self.known_done = s - 2

    def put(self, s: int, length: int, data: Any) -> None:
        self._wait_slot_free(s)
        off = self._slot(self.me, s)
        if data is not None:
            b = memoryview(data).cast("B")
            if b.nbytes > self.slot:
                raise ValueError("put: data larger than the slot")
            self.mem[off + DATA_OFF:off + DATA_OFF + b.nbytes] = b
        self.words[off // 8] = length & 0xFFFFFFFFFFFFFFFF

    def header(self, s: int, who: int) -> int:
        v = int(self.words[self._slot(who, s) // 8])
        return v - (1 << 64) if v >= 1 << 63 else v

    def barrier(self, s: int) -> None:
        self.post(s)
        self.wait_post(s, -1)
        self.done(s)

    def bcast_obj(self, s: int, data: Any, root: int) -> Any:
        if root == self.me:
            fits = len(data) <= self.slot
            self.put(s, len(data) if fits else -1, data if fits else None)
            self.post(s)
            self.done(s)
            return fits
        self.wait_post(s, root)
        length = self.header(s, root)
        off = self._slot(root, s) + DATA_OFF
        out = bytes(self.mem[off:off + length]) if length >= 0 else None
        self.done(s)
        return out

    # The C type's one-call fast paths; here they leave everything to shmcoll's general code.
    def bcast(self, s: int, buf: Any, root: int) -> int:
        return 0

    def allreduce(self, s: int, src: Any, out: Any, op: int) -> int:
        return 0

    def reduce(self, s: int, src: Any, out: Any, op: int, root: int) -> int:
        return 0


def slot_offset(n: int, slot: int, i: int, s: int) -> int:
    """Where the data of rank ``i``'s slot for collective ``s`` starts."""
    return LINE * (1 + n) + (2 * i + (s & 1)) * stride(slot) + DATA_OFF


def _futex_wake(mem: memoryview) -> None:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    addr = ctypes.addressof(ctypes.c_char.from_buffer(mem))
    libc.syscall(202, ctypes.c_void_p(addr), 1, 0x7FFFFFFF, None, None, 0)  # SYS_futex, FUTEX_WAKE (x86-64)
