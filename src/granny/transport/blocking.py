"""A blocking, thread-safe-for-send frame connection over a TCP socket.

Used where a thread per connection is simplest and fastest: clients, granules and workers. Sends
take a lock so several threads may send; exactly one thread may call :meth:`recv`.
"""

from __future__ import annotations

import os
import select
import socket
import threading
from collections import deque
from collections.abc import Sequence

from ..errors import ConnectionLostError, ProtocolError
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
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._reader = FrameReader()
        self._pending: deque[tuple[Message, memoryview]] = deque()
        self._send_lock = threading.Lock()
        self.closed = False

    def send(self, msg: Message, segments: Sequence[Buffer] = ()) -> None:
        parts = encode_frame(msg, segments)
        with self._send_lock:
            try:
                if len(parts) == 1:
                    self.sock.sendall(parts[0])
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
