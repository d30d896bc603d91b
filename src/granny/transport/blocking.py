"""A blocking, thread-safe-for-send frame connection over a TCP socket.

Used where a thread per connection is simplest and fastest: clients, granules and workers. Sends
take a lock so several threads may send; exactly one thread may call :meth:`recv`. The socket may be
a TLS one (``tls=True``): it has no ``sendmsg``, so its frames go out in a few ``sendall`` calls
instead, large segments still uncopied.
"""

from __future__ import annotations

import os
import select
import socket
import threading
import time
from collections import deque
from collections.abc import Sequence

from ..errors import ConnectionLostError, ProtocolError
from ..tunables import TLS_COALESCE
from ..wire import FrameReader, Message, encode_frame
from ..wire.framing import Buffer


def connect_tcp(host: str, port: int, timeout: float | None = 5.0) -> socket.socket:
    sock = socket.create_connection((host, port), timeout=timeout)
    sock.settimeout(None)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def connect_unix(path: str, timeout: float | None = 5.0) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(path)
    except OSError:
        sock.close()
        raise
    sock.settimeout(None)
    return sock


def local_id() -> str:
    """Same value for two processes iff a Unix socket between them stays inside one network host."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as fh:
            boot = fh.read().strip()
        return f"{boot}:{os.stat('/proc/self/ns/net').st_ino}:{os.stat('/proc/self/ns/mnt').st_ino}"
    except OSError:
        return ""




class BlockingConn:
    def __init__(self, sock: socket.socket, tls: bool = False) -> None:
        self.sock = sock
        self.tls = tls
        self._reader = FrameReader()
        self._pending: deque[tuple[Message, memoryview]] = deque()
        self._send_lock = threading.Lock()
        self.closed = False
        # Frames of a burst held back for one write (see send_soon), and when the last one was sent.
        self._held: list[Buffer] = []
        self._held_frames = 0
        self._held_since = 0.0
        self._last_soon = 0.0

    def send(self, msg: Message, segments: Sequence[Buffer] = ()) -> None:
        """Send one frame now (after any frames held back by send_soon, so order is kept)."""
        parts = encode_frame(msg, segments)
        with self._send_lock:
            if self._held:
                parts = [*self._held, *parts]
                self._held, self._held_frames = [], 0
            self._write(parts)

    def send_soon(self, msg: Message, segments: Sequence[Buffer], window: float, max_frames: int) -> float | None:
        """Send a frame now, or hold it back if frames are going out in a burst; False-y: sent.

        Like Nagle's algorithm for requests: a frame that follows another by less than ``window``
        seconds waits for more, so a burst of small requests leaves in a few large writes and
        the peer wakes once per write rather than once per request. A lone request goes at once.
        Returns the time (``time.monotonic``) by which :meth:`flush` must be called, or None."""
        parts = encode_frame(msg, segments)
        now = time.monotonic()
        with self._send_lock:
            burst = now - self._last_soon < window
            self._last_soon = now
            if not burst and not self._held:
                self._write(parts)
                return None
            if not self._held:
                self._held_since = now
            self._held += parts
            self._held_frames += 1
            if self._held_frames < max_frames:
                return self._held_since + window
            held, self._held, self._held_frames = self._held, [], 0
            self._write(held)
            return None

    def flush(self) -> None:
        """Write the frames send_soon held back, if any."""
        if self._held:
            with self._send_lock:
                if self._held:
                    held, self._held, self._held_frames = self._held, [], 0
                    self._write(held)

    def _write(self, parts: Sequence[Buffer]) -> None:
        try:
            if len(parts) == 1:
                self.sock.sendall(parts[0])
            elif self.tls:
                _sendall_tls(self.sock, parts)
            else:
                _sendmsg_all(self.sock, parts)
        except OSError as exc:
            self.closed = True
            raise ConnectionLostError(f"connection lost while sending: {exc}") from None

    def recv(self) -> tuple[Message, memoryview]:
        """Block until one whole frame arrives. Raises ConnectionLostError on EOF."""
        while not self._pending:
            buf = self._reader.get_buffer()
            try:
                n = self.sock.recv_into(buf)
            except OSError as exc:
                self.closed = True
                raise ConnectionLostError(f"connection lost: {exc}") from None
            if n == 0:
                self.closed = True
                raise ConnectionLostError("connection closed by peer")
            try:
                self._pending.extend(self._reader.buffer_updated(n))
            except ProtocolError:
                self.close()
                raise
        return self._pending.popleft()

    def ready(self) -> bool:
        """True if a frame can be received without blocking (one already parsed, or bytes waiting)."""
        if self._pending:
            return True
        if self.tls and self.sock.pending():  # type: ignore[attr-defined]  # decrypted bytes wait in the TLS layer
            return True
        readable, _, _ = select.select([self.sock], [], [], 0)
        return bool(readable)

    def close(self) -> None:
        self.closed = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


def _sendmsg_all(sock: socket.socket, parts: Sequence[Buffer]) -> None:
    """sendmsg until every byte is out; the kernel may take only part of a large gather list."""
    views = [memoryview(p).cast("B") for p in parts if memoryview(p).nbytes]
    while views:
        sent = sock.sendmsg(views[:512])
        while sent and views:
            head = views[0]
            if sent >= head.nbytes:
                sent -= head.nbytes
                views.pop(0)
            else:
                views[0] = head[sent:]
                sent = 0


def _sendall_tls(sock: socket.socket, parts: Sequence[Buffer]) -> None:
    """Send over TLS: small parts joined (one record, not one per part), large ones as they are."""
    small: list[Buffer] = []
    for part in parts:
        if memoryview(part).nbytes < TLS_COALESCE:
            small.append(part)
            continue
        if small:
            sock.sendall(b"".join(small))
            small = []
        sock.sendall(part)
    if small:
        sock.sendall(b"".join(small))
