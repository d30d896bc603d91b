"""The board: the shared-memory control block through which a team's master and members meet.

Theory of operation
- One file in /dev/shm per team, mapped by the master and by every member on its host. Word 0 is the
  *generation*: the master publishes a region by writing its descriptor, then bumping the generation.
  Members wait for the generation to move, run their share, and write the generation into their own
  ``done`` word. Every word has exactly one writer, so no atomic instructions are needed; x86 keeps
  stores (and loads) in order, so a reader that sees a new generation also sees the descriptor.
- Barriers inside a region work the same way: each thread bumps its own ``barrier`` word and waits
  until every thread's word has reached the same count. The counts are per region: the master zeroes
  the region's threads' words as it publishes it (no thread is in a region then), so a thread that
  joined an elastic team late, or sat regions out, starts level with the master (issue 13).
- Waiting spins for a budget, then sets the thread's ``sleeping`` word and blocks on its doorbell (a
  datagram socket in the abstract namespace); whoever changes something a sleeper waits for rings it.
  ``select`` has a short timeout too, so a wake-up lost to the missing memory fence costs at most a
  few milliseconds, never a hang.
- Dynamic scheduling and ``critical`` need mutual exclusion, which Python cannot build from plain
  loads and stores: they take ``fcntl.flock`` on the board file (a kernel lock, ~1 µs).
"""

from __future__ import annotations

import fcntl
import mmap
import os
import pickle
import select
import socket
import time
from collections.abc import Callable
from enum import IntEnum
from typing import Any

from ..config import ENV_PARALLEL_SPIN_US, env, shm_owner_suffix
from ..tunables import TEAM_SAFETY_TIMEOUT as SAFETY_TIMEOUT

# Layout (8-byte words): a HEADER of Word, then one SLOT of ThreadWord per thread, then the region
# descriptor (DESC_MAX bytes), then one error area per thread (ERR_MAX bytes: a length word, then a
# pickled (exception, traceback text)).
SHM_DIR = "/dev/shm"
HEADER = 64
SLOT = 64
MAX_THREADS = 256
DESC_OFF = HEADER + SLOT * MAX_THREADS
DESC_MAX = 1 << 20
ERR_OFF = DESC_OFF + DESC_MAX
ERR_MAX = 64 * 1024
SIZE = ERR_OFF + ERR_MAX * MAX_THREADS


class Word(IntEnum):
    """The header's words: ``board.words[Word.X]``. The master writes them all."""

    GENERATION = 0  # bumped to publish a region, written last
    COMMAND = 1  # RUN or EXIT
    NEXT_CHUNK = 2  # dynamic schedule: the next chunk to claim (under the board's flock)
    DESC_LEN = 3  # bytes of the pickled region descriptor at DESC_OFF
    SINGLES = 4  # single() constructs of this region already won (under the critical lock)


class ThreadWord(IntEnum):
    """A thread's words: ``board.words[board.word(thread, ThreadWord.X)]``. Only that thread writes
    them, except RETIRED (the master asks a member to leave), ERROR (the master clears it) and BARRIER
    (the master zeroes it at a fork, between regions)."""

    DONE = 0  # the last generation this thread finished
    BARRIER = 1  # barriers this thread reached in the current region
    SLEEPING = 2  # 1 while it blocks on its doorbell: ring it after a change
    ERROR = 3  # the generation of the region whose error its error area holds (0: none)
    PRESENT = 4  # attached and waiting for regions
    RETIRED = 5  # asked to leave the team


RUN, EXIT = 1, 2  # the values of Word.COMMAND


def board_path(team_id: str, pid: int) -> str:
    return f"{SHM_DIR}/granny-team-{team_id}{shm_owner_suffix(pid)}"


def _bell(team_id: str, thread: int) -> bytes:
    return f"\0granny-team-{team_id}-{thread}".encode()


class Board:
    def __init__(self, path: str, team_id: str, thread: int, create: bool) -> None:
        flags = os.O_RDWR | (os.O_CREAT | os.O_EXCL if create else 0)
        self.fd = os.open(path, flags, 0o600)
        if create:
            os.ftruncate(self.fd, SIZE)
        self.map = mmap.mmap(self.fd, SIZE)
        # critical() gets its own open file: flock is per open file, so proxy threads of the master
        # (one Board each) exclude one another as well as other processes.
        self.lock_fd = os.open(path, os.O_RDWR)
        self.mem = memoryview(self.map)
        self.words = self.mem.cast("Q")
        self.path, self.team_id, self.thread = path, team_id, thread
        self.bell = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.bell.bind(_bell(team_id, thread))
        self.bell.setblocking(False)
        self.out = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.out.setblocking(False)
        self.spin = float(env(ENV_PARALLEL_SPIN_US)) * 1e-6
        self.nthreads = 1  # threads taking part in the current region (master included)

    # --- words -------------------------------------------------------------------------------
    @property
    def generation(self) -> int:
        return int(self.words[Word.GENERATION])

    @staticmethod
    def word(thread: int, which: ThreadWord) -> int:
        """The index in ``words`` of ``thread``'s word ``which``."""
        return (HEADER + SLOT * thread) // 8 + which

    def done(self, thread: int) -> int:
        return int(self.words[self.word(thread, ThreadWord.DONE)])

    def set_done(self, generation: int) -> None:
        self.words[self.word(self.thread, ThreadWord.DONE)] = generation

    def present(self, thread: int) -> bool:
        """A member (or the proxy of a remote one) has attached and waits for regions."""
        return bool(self.words[self.word(thread, ThreadWord.PRESENT)])

    def set_present(self) -> None:
        self.words[self.word(self.thread, ThreadWord.PRESENT)] = 1

    def sleeping(self, thread: int) -> bool:
        """``thread`` blocks on its doorbell: whoever changes what it waits for must ring it."""
        return bool(self.words[self.word(thread, ThreadWord.SLEEPING)])

    def retire(self, thread: int) -> None:
        """Ask a member to leave the team (an elastic team gives its slot back)."""
        self.words[self.word(thread, ThreadWord.RETIRED)] = 1
        self.ring(thread)

    def reset(self, thread: int) -> None:
        """The master leases ``thread`` again, once the member that ran it before has ended: its words
        start afresh (that member wrote them last; nobody else writes them until the new one joins)."""
        for which in (ThreadWord.RETIRED, ThreadWord.PRESENT, ThreadWord.SLEEPING):
            self.words[self.word(thread, which)] = 0

    def retired(self) -> bool:
        return bool(self.words[self.word(self.thread, ThreadWord.RETIRED)])

    def moved_since(self, seen: int) -> Callable[[], bool]:
        """For a member's ``wait_until``: the master published a region after generation ``seen``, or retired it."""
        return lambda: self.generation != seen or self.retired()

    # --- regions -----------------------------------------------------------------------------
    def publish(self, desc: Any, command: int = RUN) -> int:
        """Master: write the descriptor and start a new generation; returns it."""
        data = pickle.dumps(desc, 5)
        if len(data) > DESC_MAX:
            raise ValueError(f"the region's descriptor is {len(data)} bytes; at most {DESC_MAX} fit "
                             "(pass large data as shared arrays, not as arguments)")
        self.mem[DESC_OFF:DESC_OFF + len(data)] = data
        self.words[Word.DESC_LEN] = len(data)
        self.words[Word.NEXT_CHUNK] = 0
        self.words[Word.SINGLES] = 0  # every region starts with no single won
        self.words[Word.COMMAND] = command
        # Every thread of the region starts it with no barrier passed. Cumulative counts left a thread
        # that joined later (or sat regions out) behind the master, whose barriers then never completed.
        for t in range(self.nthreads):
            self.words[self.word(t, ThreadWord.BARRIER)] = 0
        gen = self.generation + 1
        self.words[Word.GENERATION] = gen  # publish last: the descriptor is in place before anyone sees it
        self.ring_sleepers()
        return gen

    def descriptor(self) -> tuple[int, Any]:
        n = int(self.words[Word.DESC_LEN])
        return int(self.words[Word.COMMAND]), pickle.loads(self.mem[DESC_OFF:DESC_OFF + n])

    def set_error(self, exc: BaseException) -> None:
        import traceback

        self.set_error_text(exc, "".join(traceback.format_exception(exc)))

    def set_error_text(self, exc: BaseException, text: str) -> None:
        try:
            data = pickle.dumps((exc, text), 5)
        except Exception:  # an unpicklable exception still reports its text
            data = pickle.dumps((RuntimeError(f"{type(exc).__name__}: {exc}"), text), 5)
        if len(data) > ERR_MAX - 8:
            data = pickle.dumps((RuntimeError(f"{type(exc).__name__}: {exc}"), text[-ERR_MAX // 2:]), 5)
        off = ERR_OFF + ERR_MAX * self.thread
        self.mem[off + 8:off + 8 + len(data)] = data
        self.words[off // 8] = len(data)
        # Stamped with the region's generation, so that an error can only ever be taken by the join of
        # the region that raised it (issue 10, defect 8: a stale error must not fail the next region).
        self.words[self.word(self.thread, ThreadWord.ERROR)] = self.generation

    def take_error(self, thread: int, generation: int) -> tuple[BaseException, str] | None:
        """Master, at the join of region ``generation``: thread's error in that region, if any (cleared)."""
        stamp = int(self.words[self.word(thread, ThreadWord.ERROR)])
        if not stamp:
            return None
        self.words[self.word(thread, ThreadWord.ERROR)] = 0
        if stamp != generation:
            return None  # left by an earlier region whose join had already failed for another reason
        off = ERR_OFF + ERR_MAX * thread
        n = int(self.words[off // 8])
        exc, text = pickle.loads(self.mem[off + 8:off + 8 + n])
        return exc, text

    def next_chunk(self) -> int:
        """Dynamic schedule: claim the next chunk number under the board's kernel lock."""
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        try:
            n = int(self.words[Word.NEXT_CHUNK])
            self.words[Word.NEXT_CHUNK] = n + 1
        finally:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
        return n

    def lock(self) -> None:
        fcntl.flock(self.lock_fd, fcntl.LOCK_EX)

    def unlock(self) -> None:
        fcntl.flock(self.lock_fd, fcntl.LOCK_UN)

    def barrier(self) -> None:
        """Every thread of the region arrives before any leaves."""
        mine = self.word(self.thread, ThreadWord.BARRIER)
        count = int(self.words[mine]) + 1
        self.words[mine] = count
        self.ring_sleepers()
        words = [self.word(t, ThreadWord.BARRIER) for t in range(self.nthreads)]
        self.wait_until(lambda: all(self.words[w] >= count for w in words))

    # --- waiting -----------------------------------------------------------------------------
    def ring_sleepers(self) -> None:
        for t in range(self.nthreads if self.thread != 0 else max(self.nthreads, 1)):
            if t != self.thread and self.sleeping(t):
                self.ring(t)

    def ring(self, thread: int) -> None:
        try:
            self.out.sendto(b"!", _bell(self.team_id, thread))
        except (BlockingIOError, ConnectionRefusedError, FileNotFoundError):
            pass

    def wait_until(self, cond: Callable[[], bool], spin: float | None = None) -> None:
        if cond():
            return
        deadline = time.perf_counter() + (self.spin if spin is None else spin)
        while time.perf_counter() < deadline:
            if cond():
                return
        sleeping = self.word(self.thread, ThreadWord.SLEEPING)
        timeout = SAFETY_TIMEOUT
        while True:
            self.words[sleeping] = 1
            if cond():
                self.words[sleeping] = 0
                return
            select.select([self.bell], [], [], timeout)
            timeout = min(timeout * 2, 0.05)
            self.words[sleeping] = 0
            try:
                while True:
                    self.bell.recv(64)
            except BlockingIOError:
                pass
            if cond():
                return

    def unlink(self) -> None:
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass

    def close(self) -> None:
        self.bell.close()
        self.out.close()
        self.words.release()
        self.mem.release()
        try:
            self.map.close()
        except BufferError:
            pass
        os.close(self.fd)
        os.close(self.lock_fd)


