"""Result lanes: a granule hands a function's result straight to the client that submitted it.

Theory of operation
- Without a lane a result takes two hops, granule -> planner -> client, and the planner's event loop
  wakes, decodes and re-encodes it in between: about a third of a no-op call's round trip here.
- A client opens a lane: a Unix socket in the abstract namespace (nothing to clean up; the kernel
  drops the name with the socket), announced to the planner in its Hello together with a random key
  and the client's :func:`local_id`. The planner copies these into the Run of that client's plain
  function calls.
- A granule with the same ``local_id`` (same machine, network and mount namespace) dials the lane
  once, proves it knows the key with the planner's own challenge-response, and from then on writes
  each Result there first. It then sends the Done to the planner marked ``delivered``: the planner
  still does all the bookkeeping (slots, journal), just not on the client's critical path.
- Nothing from a lane connection is unpickled before its handshake: until then the lane thread only
  decodes headers, and a wrong key or a malformed frame closes that one connection, never the client.
- A lane that cannot be dialled, or breaks, is simply not used: the Done then carries the result and
  the planner forwards it as before. A result may arrive twice (lane, then planner after a restart);
  the client keeps the first.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import socket
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any

from ..config import (
    ENV_DEFAULTS,
    ENV_RESULT_LANE,
    ENV_SPIN_US,
    MAX_FRAME_BYTES,
    MAX_PREAUTH_FRAME_BYTES,
    PREAUTH_BUFFER_BYTES,
    env,
)
from ..errors import GrannyError, ProtocolError
from ..tunables import LANE_SEND_TIMEOUT as SEND_TIMEOUT
from ..tunables import MAX_LANES
from ..wire import Challenge, FrameReader, Hello, Message, Reject, Result, Role, Welcome, encode_frame
from ..wire.framing import Buffer
from .auth import client_handshake
from .blocking import BlockingConn, local_id
from .macs import acceptor_proof, check_dialer

log = logging.getLogger("granny.lane")



def _spin_max() -> float:
    try:
        return max(0.0, float(env(ENV_SPIN_US))) / 1e6
    except ValueError:
        return float(ENV_DEFAULTS[ENV_SPIN_US]) / 1e6


def lanes_enabled() -> bool:
    return env(ENV_RESULT_LANE) != "0"


def _sockaddr(path: str) -> str:
    return "\0" + path[1:] if path.startswith("@") else path


class _Peer:
    __slots__ = ("authed", "nonce", "reader", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        # Any local process may dial a lane: tiny frames until it proves it knows the key.
        self.reader = FrameReader(MAX_PREAUTH_FRAME_BYTES, PREAUTH_BUFFER_BYTES, "before the lane handshake")
        self.nonce = os.urandom(16)
        self.authed = False


class LaneServer:
    """The client's end: a listening socket, and one thread that reads every granule's results.

    A thread that blocks on one of those results may read the lane itself (:meth:`wait`), which
    spares it the hand-off from the lane thread (a wake-up, tens of microseconds here). Every lane
    connection is registered, exclusively, first in that waiter's epoll set and then in the lane
    thread's. The kernel wakes the first exclusive waiter that is really waiting, so a result wakes
    the foreground waiter alone while it waits, and the lane thread otherwise.

    That waiter spins (polls without blocking) before it blocks, when recent calls came back fast:
    waking a blocked thread costs 50-80 µs on these VMs (the vCPU may have halted), more than a
    no-op call's whole work. The spin is adaptive, as in adaptive mutexes: up to twice the recent
    wait (an exponential average), never more than ``GRANNY_SPIN_US`` (500 µs), and not at all
    once calls take longer than that, so a caller of long tasks never burns its core.
    """

    def __init__(self, on_result: Callable[[Result, memoryview], None]) -> None:
        self.on_result = on_result
        self.key = os.urandom(16)
        self.path = f"@granny-lane-{os.getpid()}-{os.urandom(6).hex()}"
        self.local_id = local_id()
        self.received = 0  # results that came in over the lane (tests and `granny` diagnostics read it)
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(_sockaddr(self.path))
        self._listener.listen(64)
        self._listener.setblocking(False)
        self._wake_r, self._wake_w = os.pipe()
        self._io = threading.RLock()  # one reader of the peers at a time (the lane thread or a waiter)
        self._peers: dict[int, _Peer] = {}
        self._ep = select.epoll()  # the lane thread's
        self._ep.register(self._listener.fileno(), select.EPOLLIN)
        self._ep.register(self._wake_r, select.EPOLLIN)
        self._fg_ep = select.epoll()  # the foreground waiter's
        self._fg_lock = threading.Lock()
        self._fg_future: object = None
        self._fg_thread = 0
        self._fg_wake = os.eventfd(0, os.EFD_NONBLOCK)  # its future completed on another thread
        self._fg_ep.register(self._fg_wake, select.EPOLLIN)
        self._spin_max = _spin_max()
        self._recent: float | None = None  # exponential average of recent waits, in seconds
        self._closed = False
        # close() writes to the wake-up fds; the lane thread may see _closed and close those fds at
        # any moment after it is set, so both sides hold this lock (else close() can hit EBADF).
        self._shut = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="granny-lane", daemon=True)
        self._thread.start()

    def close(self) -> None:
        with self._shut:
            if not self._closed:
                self._closed = True
                os.eventfd_write(self._fg_wake, 1)  # a caller blocked in wait() looks again,
                os.write(self._wake_w, b"x")  # then the lane thread closes everything

    def wait(self, future: Future[Any], timeout: float | None, spin: bool = True) -> bool:
        """Block until ``future`` is done (or ``timeout``), reading the lane on this thread.

        ``spin``: the caller has (next to) nothing else in flight; with many calls in flight the
        cores are better left to the granules. False if another thread already waits this way:
        the caller then waits on the future."""
        if not self._fg_lock.acquire(blocking=False):
            return False
        try:
            self._fg_thread = threading.get_ident()
            self._fg_future = future  # set before looking at done(): see kick
            start = time.monotonic()
            deadline = None if timeout is None else start + timeout
            recent = self._recent
            fast = spin and recent is not None and recent < self._spin_max
            spin_until = start + min(self._spin_max, 2 * recent) if fast and recent is not None else 0.0
            poll = self._fg_ep.poll
            while not future.done() and not self._closed:
                events = poll(0)
                while not events and time.monotonic() < spin_until:
                    events = poll(0)  # releases the GIL each time: other threads keep going
                if not events:
                    left = -1.0 if deadline is None else deadline - time.monotonic()
                    if deadline is not None and left <= 0:
                        break
                    events = poll(left)
                with self._io:
                    for fd, _ in events:
                        if fd == self._fg_wake:
                            with contextlib.suppress(BlockingIOError):
                                os.eventfd_read(self._fg_wake)
                        elif (peer := self._peers.get(fd)) is not None:
                            # Drain it: a wake-up this thread took is one the lane thread never saw.
                            while self._readable(peer):
                                pass
            if future.done():
                took = time.monotonic() - start
                self._recent = took if recent is None else 0.75 * recent + 0.25 * took
        finally:
            self._fg_future = None
            self._fg_lock.release()
        return True

    def kick(self, future: object) -> None:
        """``future`` completed on another thread: wake the foreground waiter if it waits for it."""
        if self._fg_future is future and threading.get_ident() != self._fg_thread:
            os.eventfd_write(self._fg_wake, 1)  # (the waiter itself, reading the lane, needs no kick)

    def _run(self) -> None:
        try:
            while not self._closed:
                events = self._ep.poll()
                with self._io:
                    for fd, _ in events:
                        if fd == self._listener.fileno():
                            self._accept()
                        elif (peer := self._peers.get(fd)) is not None:
                            self._readable(peer)
        finally:
            with self._shut, self._fg_lock, self._io:  # after close() and any caller in wait() left
                for peer in list(self._peers.values()):
                    self._drop(peer)
                self._ep.close()
                self._fg_ep.close()
                os.close(self._fg_wake)
                self._listener.close()
                os.close(self._wake_r)
                os.close(self._wake_w)

    def _accept(self) -> None:
        try:
            sock, _ = self._listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        peer = _Peer(sock)
        try:
            sock.sendall(encode_frame(Challenge(nonce=peer.nonce))[0])  # a few bytes into an empty buffer
        except OSError:
            sock.close()
            return
        sock.setblocking(False)
        fd = sock.fileno()
        self._peers[fd] = peer
        # The foreground waiter's set first (see the class docstring), both exclusive.
        self._fg_ep.register(fd, select.EPOLLIN | select.EPOLLEXCLUSIVE)
        self._ep.register(fd, select.EPOLLIN | select.EPOLLEXCLUSIVE)

    def _drop(self, peer: _Peer) -> None:
        fd = peer.sock.fileno()
        if self._peers.pop(fd, None) is not None:
            for ep in (self._fg_ep, self._ep):
                with contextlib.suppress(OSError, ValueError):
                    ep.unregister(fd)
        peer.sock.close()

    def _readable(self, peer: _Peer) -> bool:
        """Read what ``peer`` has; False once it has nothing more (or was dropped)."""
        try:
            n = peer.sock.recv_into(peer.reader.get_buffer())
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            n = 0
        if n == 0:
            self._drop(peer)
            return False
        try:
            for msg, body in peer.reader.buffer_updated(n):
                self._frame(peer, msg, body)
            if peer.authed and peer.reader.limit_why:
                peer.reader.raise_limit(MAX_FRAME_BYTES)
        except ProtocolError as exc:
            log.error("closing a result lane connection: %s", exc)
            self._drop(peer)
            return False
        except Exception:  # a bug (or a result callback's) must cost one connection, never the lane
            log.exception("internal error on a result lane connection; closing it")
            self._drop(peer)
            return False
        return True

    def _frame(self, peer: _Peer, msg: Message, body: memoryview) -> None:
        if not peer.authed:
            key = self.key.hex()
            if not isinstance(msg, Hello) or msg.role is not Role.GRANULE:
                raise ProtocolError(f"the first frame on a result lane must be a granule's hello, got "
                                    f"{type(msg).__name__}")
            if not check_dialer(key, msg.mac, peer.nonce, msg.role.value.encode()):
                with contextlib.suppress(OSError):
                    peer.sock.sendall(encode_frame(Reject(reason="wrong result lane key"))[0])
                raise ProtocolError("a granule failed the result lane handshake (wrong key)")
            peer.sock.sendall(encode_frame(Welcome(mac=acceptor_proof(key, msg.nonce)))[0])
            peer.authed = True
            return
        if not isinstance(msg, Result):
            raise ProtocolError(f"unexpected {type(msg).__name__} frame on a result lane")
        self.received += 1
        self.on_result(msg, body)


class LaneDialer:
    """The granule's end: one authenticated connection per client lane, dialled on first use."""

    def __init__(self, granule_id: str) -> None:
        self.granule_id = granule_id
        self.local_id = local_id()
        self.enabled = lanes_enabled() and bool(self.local_id)
        self._conns: dict[str, BlockingConn | None] = {}  # None: that lane failed, do not retry it

    def send(self, path: str, key: bytes, local: str, msg: Result, segments: Sequence[Buffer]) -> bool:
        """Write ``msg`` to the client's lane; False if there is no usable lane (use the planner)."""
        if not self.enabled or not path or local != self.local_id:
            return False
        conn = self._conns.get(path, self)
        if conn is self:
            conn = self._dial(path, key)
        if conn is None:
            return False
        assert isinstance(conn, BlockingConn)
        try:
            conn.send(msg, segments)
            return True
        except GrannyError:
            conn.close()
            self._conns[path] = None
            return False

    def _dial(self, path: str, key: bytes) -> BlockingConn | None:
        if len(self._conns) >= MAX_LANES:  # forget the oldest: a client that is likely gone
            old = self._conns.pop(next(iter(self._conns)))
            if old is not None:
                old.close()
        conn: BlockingConn | None = None
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(2.0)
            sock.connect(_sockaddr(path))
            conn = BlockingConn(sock)
            client_handshake(conn, Role.GRANULE, key.hex(), name=self.granule_id)
            sock.settimeout(SEND_TIMEOUT)
        except (OSError, GrannyError) as exc:
            log.debug("result lane %s unusable: %s", path, exc)
            if conn is not None:
                conn.close()
            else:
                sock.close()
            conn = None
        self._conns[path] = conn
        return conn

    def close(self) -> None:
        for conn in self._conns.values():
            if conn is not None:
                conn.close()
        self._conns.clear()
