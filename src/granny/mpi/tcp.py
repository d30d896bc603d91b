"""Cross-host MPI links: one TCP stream per ordered pair of ranks.

Theory of operation
-------------------
The listener (port 0) exists from ``__init__`` on, so its address can be published before anyone dials.
``connect`` dials each remote peer once -- the stream this rank -> peer, written only by this rank -- and
authenticates it with granny's handshake (transport/handshake.py: a fresh nonce from each side, the
claim being this rank, the context the world's destination rank), while a thread accepts the streams
peer -> this rank, answering each dialer's handshake as it comes (a dialer waits for the acceptor's
nonce, so two ranks dialling each other must both be accepting meanwhile). A stream whose handshake
fails is closed; a dialer refused for a wrong key raises AuthError. Each ordered pair thus has its own
stream with one writer and one reader, so per-pair FIFO is TCP's own and nothing is shared.

Framing: ``<IQ`` (header_len, payload_len), header, payload. ``close`` first sends a goodbye prefix
(header_len = 0xFFFFFFFF): EOF after it is a clean finish, EOF or reset without it means the peer died and
raises ConnectionLostError naming it.

Receiving: one ``recv_into`` fills a stream's 256 KiB buffer with whatever the kernel has, and every
complete record in it is handed over as views into that buffer (no copy; one syscall for many small
records). A payload of 64 KiB or more gets its own destination -- the sink's buffer, or a fresh numpy
buffer the handler may keep -- and is read straight into it, crossing kernel -> user once.

Sending: sockets are non-blocking. ``send`` gives [prefix+header, payload] to ``sendmsg`` (no copy) and,
while the kernel buffer is full, waits in ``select.poll`` for it to drain *or for any incoming stream to
be readable*, and reads those. That is what keeps two ranks writing big records to each other, neither
polling, from deadlocking. Records completed meanwhile are queued (small ones copied out of the reusable
buffer) and the next ``poll`` delivers them first, so per-stream order holds.

A handler may call ``send``. If that send reads the stream whose buffer the handler is viewing, the stream
moves to a fresh buffer rather than compacting in place, so the handler's views stay valid. The sink must
not call ``send`` or ``poll``. Not thread-safe: one thread drives a TcpLinks.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable

import numpy as np

from ..errors import AuthError, ConnectionLostError, ProtocolError
from ..transport import handshake
from ..tunables import SOCKET_BUFFER_BYTES

PREFIX = struct.Struct("<IQ")
MAX_HEADER = 32 * 1024
LARGE = 64 * 1024  # payloads from this size on get their own buffer (or the sink's)
_BUF = 256 * 1024  # >= 2 * the largest small record (12 + 32 KiB + 64 KiB): see _Stream.make_room
_BYE = 0xFFFF_FFFF
_NOSIGNAL = getattr(socket, "MSG_NOSIGNAL", 0)  # EPIPE as an exception, never SIGPIPE, even if embedded

Handler = Callable[[int, memoryview, memoryview], None]
Sink = Callable[[int, memoryview, int], memoryview | None]


def link_context(dst: int) -> bytes:
    """What a stream's handshake is bound to besides the source rank (its claim): the destination rank."""
    return b"granny-mpi" + struct.pack("<I", dst)


def _tune(sock: socket.socket, option: int) -> None:
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if SOCKET_BUFFER_BYTES:
        with contextlib.suppress(OSError):  # not allowed here: the kernel default (autotuning) still works
            sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER_BYTES)


class _Stream:
    """Reassembly state of one incoming stream: bytes [start, end) of buf are received, not yet delivered."""

    __slots__ = ("src", "sock", "buf", "start", "end", "pinned", "large", "pos", "closed")

    def __init__(self, src: int, sock: socket.socket) -> None:
        self.src, self.sock = src, sock
        self.buf = memoryview(bytearray(_BUF))
        self.start = self.end = 0
        self.pinned = False  # a handler holds views into buf right now
        self.large: tuple[bytes, memoryview, memoryview] | None = None  # header, byte view, user's view
        self.pos = 0  # bytes of the large payload received so far
        self.closed = False

    def make_room(self) -> None:
        # Half the buffer free after `end` means the record begun at `start` fits without moving it.
        live = self.end - self.start
        if len(self.buf) - self.end >= len(self.buf) // 2 and (live or self.pinned):
            return
        if self.pinned:  # the handler's views must survive: leave the old buffer to them
            fresh = memoryview(bytearray(_BUF))
            fresh[:live] = self.buf[self.start:self.end]
            self.buf, self.pinned = fresh, False
        elif live:
            self.buf[:live] = self.buf[self.start:self.end]
        self.start, self.end = 0, live


class TcpLinks:
    """Cross-host links of one rank: an outgoing stream to each remote peer, incoming streams from them."""

    def __init__(self, rank: int, key: bytes, bind_host: str = "0.0.0.0") -> None:
        self.rank, self.key = rank, key  # settable until connect (a world learns it after publishing)
        self._listener = socket.socket(socket.AF_INET6 if ":" in bind_host else socket.AF_INET)
        _tune(self._listener, socket.SO_RCVBUF)  # before listen: accepted sockets inherit it, window scale too
        self._listener.bind((bind_host, 0))
        self._listener.listen(socket.SOMAXCONN)  # peers dial before we accept: the backlog holds them
        self._address: tuple[str, int] = self._listener.getsockname()[:2]
        self._out: dict[int, socket.socket] = {}
        self._in: dict[int, _Stream] = {}
        self._by_fd: dict[int, _Stream] = {}
        self._poller = select.poll()
        self._queue: deque[tuple[int, memoryview, memoryview]] = deque()
        self._sink: Sink | None = None
        self._delivered = 0
        self._polling = False
        self.rejected = 0  # connections closed for a bad hello (tests and diagnostics)

    @property
    def address(self) -> tuple[str, int]:
        return self._address

    def set_sink(self, callback: Sink | None) -> None:
        """``callback(src, header, payload_len)`` may return a writable buffer of exactly payload_len bytes
        to receive a payload of >= 64 KiB straight into; the handler then gets that same memoryview."""
        self._sink = callback

    def fileno_list(self) -> list[int]:
        """Incoming streams to wait on for readability; ask again after poll (a finished peer drops out)."""
        return list(self._by_fd)

    def connect(self, peers: dict[int, tuple[str, int]], timeout: float = 30.0) -> None:
        if self.rank in peers:
            raise ValueError(f"rank {self.rank} cannot link to itself")
        deadline = time.monotonic() + timeout
        failed: list[BaseException] = []
        wake_r, wake_w = os.pipe()  # a failed dial ends the acceptor at once, not at the deadline

        def accept() -> None:
            try:
                self._accept(set(peers), deadline, wake_r)
            except BaseException as exc:  # raised again on the caller's thread
                failed.append(exc)

        acceptor = threading.Thread(target=accept, name=f"mpi-accept-{self.rank}", daemon=True)
        acceptor.start()
        try:
            for dst, addr in sorted(peers.items()):
                self._out[dst] = self._dial(dst, addr, deadline)
        finally:
            if failed or len(self._out) < len(peers):
                os.write(wake_w, b"x")
            acceptor.join()
            os.close(wake_r)
            os.close(wake_w)
        if failed:
            raise failed[0]
        self._listener.close()  # every expected peer is in: later connections can only be strays

    def _dial(self, dst: int, addr: tuple[str, int], deadline: float) -> socket.socket:
        last: OSError | None = None
        while (left := deadline - time.monotonic()) > 0:
            try:
                sock = socket.create_connection(addr, timeout=left)
            except OSError as e:  # refused or unreachable for now: the peer may still be starting
                last = e
                time.sleep(min(0.05, left))  # back-off between dials, not synchronisation
                continue
            try:
                handshake.dial(sock, self.key, link_context(dst), self.rank, f"rank {dst} at {addr[0]}:{addr[1]}")
            except AuthError as e:
                sock.close()
                raise AuthError(f"rank {self.rank}: {e} (is it the same world?)") from None
            except OSError as e:
                sock.close()
                last = e
                continue
            sock.setblocking(False)
            _tune(sock, socket.SO_SNDBUF)
            return sock
        why = f"; {self.rejected} connections to this rank failed the handshake (a wrong key?)" if self.rejected else ""
        raise TimeoutError(f"rank {self.rank}: no link with ranks [{dst}] (at {addr[0]}:{addr[1]}): {last}{why}")

    def _accept(self, expected: set[int], deadline: float, wake: int) -> None:
        self._listener.setblocking(False)
        pending: dict[int, tuple[socket.socket, handshake.Acceptor, bytearray]] = {}
        waiter = select.poll()
        waiter.register(self._listener, select.POLLIN)
        waiter.register(wake, select.POLLIN)
        refused = 0
        try:
            while missing := expected - self._in.keys():
                left = deadline - time.monotonic()
                if left <= 0:
                    why = f" ({refused} connections failed the handshake: a wrong key?)" if refused else ""
                    raise TimeoutError(f"rank {self.rank}: no connection from ranks {sorted(missing)}{why}")
                for fd, _ in waiter.poll(left * 1000):
                    if fd == wake:
                        return  # this rank's own dialling failed: that error is the one to report
                    if fd == self._listener.fileno():
                        with contextlib.suppress(BlockingIOError):  # take every queued connection
                            while conn := self._listener.accept()[0]:
                                acceptor = handshake.Acceptor(self.key, link_context(self.rank))
                                try:
                                    conn.sendall(acceptor.challenge())  # a few bytes into an empty buffer
                                except OSError:
                                    conn.close()
                                    continue
                                conn.setblocking(False)
                                pending[conn.fileno()] = (conn, acceptor, bytearray())
                                waiter.register(conn, select.POLLIN)
                        continue
                    conn, acceptor, got = pending[fd]
                    try:  # exactly the answer: records that follow it belong to the stream's parser
                        data = conn.recv(handshake.ANSWER.size - len(got))
                    except BlockingIOError:
                        continue
                    except OSError:
                        data = b""
                    got += data
                    if data and len(got) < handshake.ANSWER.size:
                        continue
                    del pending[fd]
                    waiter.unregister(fd)
                    src = acceptor.check(got) if data else None  # EOF or error: refused
                    verdict = (handshake.WRONG_KEY if src is None else handshake.ACCEPTED
                               if src in expected and src not in self._in else handshake.UNEXPECTED)
                    with contextlib.suppress(OSError):
                        conn.sendall(acceptor.verdict(verdict))  # tiny, into an empty buffer
                    if verdict == handshake.ACCEPTED and src is not None:
                        self._add_stream(src, conn)
                    else:
                        refused += 1
                        self.rejected += 1
                        conn.close()
        finally:
            for conn, _, _ in pending.values():
                conn.close()

    def _add_stream(self, src: int, sock: socket.socket) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        st = _Stream(src, sock)
        self._in[src] = self._by_fd[sock.fileno()] = st
        self._poller.register(sock, select.POLLIN)

    def send(self, dst: int, header: bytes, payload: memoryview | bytes = b"") -> None:
        sock = self._out.get(dst)
        if sock is None:
            raise ValueError(f"rank {self.rank} has no link to rank {dst}")
        body = memoryview(payload)
        if body.ndim != 1 or body.format != "B":
            body = body.cast("B")  # byte offsets for partial writes; typed numpy arrays arrive here too
        if len(header) > MAX_HEADER:
            raise ValueError(f"header of {len(header)} bytes, at most {MAX_HEADER}")
        # Prefix and header are tiny: joining them costs less than a third iovec.
        bufs = [memoryview(PREFIX.pack(len(header), body.nbytes) + header)]
        if body.nbytes:
            bufs.append(body)
        self._write(dst, sock, bufs, None)

    def _write(self, dst: int, sock: socket.socket, bufs: list[memoryview], deadline: float | None) -> None:
        while True:
            try:
                n = sock.sendmsg(bufs, (), _NOSIGNAL)
            except BlockingIOError:
                n = 0
            except OSError as e:
                raise ConnectionLostError(f"rank {self.rank}: the stream to rank {dst} failed: {e}") from e
            while n:
                if n >= len(bufs[0]):
                    n -= len(bufs.pop(0))
                else:
                    bufs[0], n = bufs[0][n:], 0
            if not bufs:
                return
            self._wait_writable(sock.fileno(), deadline)  # a partial write means the kernel buffer is full

    def _wait_writable(self, fd: int, deadline: float | None) -> None:
        self._poller.register(fd, select.POLLOUT)
        try:
            while True:
                ms = None if deadline is None else max(0.0, deadline - time.monotonic()) * 1000
                events = self._poller.poll(ms)
                for efd, _ in events:
                    if efd != fd and (st := self._by_fd.get(efd)) is not None:
                        self._pump(st, None)  # drain peers: they may be blocked sending to us
                if any(efd == fd for efd, _ in events):
                    return  # POLLERR/POLLHUP too: sendmsg then raises the real error
                if deadline is not None and time.monotonic() >= deadline:
                    raise TimeoutError(f"rank {self.rank}: stream stayed full")
        finally:
            self._poller.unregister(fd)

    def poll(self, handler: Handler) -> int:
        if self._polling:
            raise RuntimeError("TcpLinks.poll is not re-entrant (a handler may send, not poll)")
        self._polling, start = True, self._delivered
        try:
            self._drain(handler)
            for fd, _ in self._poller.poll(0):
                if (st := self._by_fd.get(fd)) is not None:
                    self._pump(st, handler)
                    self._drain(handler)
        finally:
            self._polling = False
        return self._delivered - start

    def _drain(self, handler: Handler) -> None:
        while self._queue:
            src, header, payload = self._queue.popleft()
            self._delivered += 1
            handler(src, header, payload)

    def _pump(self, st: _Stream, handler: Handler | None) -> None:
        """Read what the kernel has for one stream; deliver (or, without a handler, queue) what completes."""
        while not st.closed:
            if st.large is not None:
                header, dest, user = st.large
                want = len(dest) - st.pos
                n = self._recv(st, dest[st.pos:])
                if n < 0:
                    return
                st.pos += n
                if st.pos == len(dest):
                    st.large = None
                    self._deliver(st, memoryview(header), user, handler, own=True)
                elif n < want:
                    return  # a short read: the socket is drained, skip the extra EAGAIN syscall
                continue
            st.make_room()
            want = len(st.buf) - st.end
            n = self._recv(st, st.buf[st.end:])
            if n < 0:
                return
            st.end += n
            self._parse(st, handler)
            if n < want and st.large is None:
                return

    def _recv(self, st: _Stream, into: memoryview) -> int:
        try:
            n = st.sock.recv_into(into)
        except BlockingIOError:
            return -1
        except OSError as e:
            raise ConnectionLostError(f"rank {self.rank}: the stream from rank {st.src} failed: {e}") from e
        if n == 0:
            raise ConnectionLostError(
                f"rank {self.rank}: rank {st.src} closed its stream without a goodbye (process died?)")
        return n

    def _parse(self, st: _Stream, handler: Handler | None) -> None:
        while st.large is None and not st.closed and st.end - st.start >= PREFIX.size:
            hlen, plen = PREFIX.unpack_from(st.buf, st.start)
            if hlen == _BYE:
                self._drop(st)
                return
            if hlen > MAX_HEADER:
                raise ProtocolError(f"rank {self.rank}: header of {hlen} bytes from rank {st.src}")
            h0 = st.start + PREFIX.size
            p0 = h0 + hlen
            if plen >= LARGE:
                if st.end < p0:
                    return
                self._begin_large(st, h0, p0, plen, handler)
                continue  # it may have been complete in the buffer, with more records behind it
            if st.end < p0 + plen:
                return
            st.start = p0 + plen  # advanced first: a nested send may read this stream during the handler
            self._deliver(st, st.buf[h0:p0], st.buf[p0:p0 + plen], handler, own=False)

    def _begin_large(self, st: _Stream, h0: int, p0: int, plen: int, handler: Handler | None) -> None:
        header = st.buf[h0:p0]
        user = self._sink(st.src, header, plen) if self._sink is not None else None
        if user is None:
            user = dest = np.empty(plen, np.uint8).data  # no memset: every byte is received into
        else:
            dest = user.cast("B") if user.ndim != 1 or user.format != "B" else user
            if dest.readonly or dest.nbytes != plen:
                raise ValueError(f"sink gave {dest.nbytes} bytes (readonly={dest.readonly}), need {plen}")
        k = min(st.end - p0, plen)
        dest[:k] = st.buf[p0:p0 + k]
        st.start, st.pos = p0 + k, k
        if k < plen:
            st.large = (bytes(header), dest, user)
        else:
            self._deliver(st, memoryview(bytes(header)), user, handler, own=True)

    def _deliver(self, st: _Stream, header: memoryview, payload: memoryview, handler: Handler | None,
                 own: bool) -> None:
        if handler is not None and not self._queue:
            self._delivered += 1
            st.pinned = not own
            try:
                handler(st.src, header, payload)
            finally:
                st.pinned = False
        elif own:  # header and payload already have their own memory
            self._queue.append((st.src, header, payload))
        else:  # views into the reusable buffer: copy before it is overwritten
            self._queue.append((st.src, memoryview(bytes(header)), memoryview(bytes(payload))))

    def _drop(self, st: _Stream) -> None:
        st.closed = True
        self._poller.unregister(st.sock)
        del self._in[st.src], self._by_fd[st.sock.fileno()]
        st.sock.close()

    def close(self, timeout: float = 5.0) -> None:
        """Say goodbye on every outgoing stream (so peers see a clean finish), then close everything."""
        deadline = time.monotonic() + timeout
        for dst, sock in self._out.items():
            try:
                self._write(dst, sock, [memoryview(PREFIX.pack(_BYE, 0))], deadline)
            except (OSError, ConnectionLostError, ProtocolError):
                pass  # that peer is gone or stuck: closing is all that is left
            sock.close()
        for st in list(self._in.values()):
            self._drop(st)
        self._out.clear()
        self._queue.clear()
        if self._listener.fileno() >= 0:
            self._listener.close()
