"""One peer connection of the planner: framing, the pre-authentication limits and write batching.

Theory of operation: a :class:`Conn` is an asyncio BufferedProtocol. Until its peer authenticates it
reads with a tiny frame limit and a small buffer, and the :class:`~granny.planner.gate.HandshakeGate`
holds it to a deadline; the owner's handshake sets ``role``, after which the limit is raised. Frames
queued while the owner handles one read leave in one write (see :meth:`Conn.send`). The owner (the
planner server) is seen only through :class:`Owner`, so this module does not import the server.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Sequence
from typing import Protocol

from ..config import MAX_PREAUTH_FRAME_BYTES, PREAUTH_BUFFER_BYTES, Config
from ..errors import ProtocolError
from ..wire import Challenge, FrameReader, Message, Role, encode_frame
from ..wire.framing import Buffer
from .admission import Scope
from .gate import HandshakeGate

log = logging.getLogger("granny.planner")


class Owner(Protocol):
    """What a connection needs of the planner that owns it."""

    config: Config
    loop: asyncio.AbstractEventLoop
    gate: HandshakeGate
    batching: bool  # handling one read's frames: sends wait for its end (see Conn.send)
    dirty: list[Conn]

    def on_frame(self, conn: Conn, msg: Message, body: memoryview) -> None: ...

    def on_lost(self, conn: Conn) -> None: ...

    def flush_dirty(self) -> None: ...


class Conn(asyncio.BufferedProtocol):
    """One peer connection. ``role`` is None until the handshake succeeds."""

    def __init__(self, server: Owner) -> None:
        self.server = server
        # Tiny frames and a small buffer until the peer authenticates (see gate.py; raise_limit after)
        self.reader = FrameReader(MAX_PREAUTH_FRAME_BYTES, PREAUTH_BUFFER_BYTES, "before authentication")
        self.admitted = False
        self.role: Role | None = None
        self.name = ""
        self.host_id = ""
        self.app_id = ""
        self.nonce = os.urandom(16)
        self.closed = False
        self.transport: asyncio.Transport | None = None
        self.peer = ""
        self._out: list[Buffer] = []
        self.deferred: list[tuple[Message, memoryview]] | None = None
        self.scope: Scope | None = None  # set when a granule's credential authenticated it (admission.py)
        self.lane: tuple[str, bytes, str] | None = None  # a client's result lane: path, key, local id

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not an asyncio.Transport subclass
        sock = transport.get_extra_info("socket")
        tcp = sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6)
        if tcp:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.peer = str(transport.get_extra_info("peername") or "the local socket")
        if not self.server.gate.admit(self, capped=tcp):
            self.closed = True
            transport.close()
            return
        self.send(Challenge(nonce=self.nonce))

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.reader.get_buffer(sizehint)

    def buffer_updated(self, nbytes: int) -> None:
        server = self.server
        # Only a client's requests are flushed as soon as its read is handled (see send): for the
        # frames of granules and workers, call_soon's later, larger writes serve throughput better.
        outer = not server.batching and self.role is Role.CLIENT
        if outer:
            server.batching = True
        try:
            for msg, body in self.reader.buffer_updated(nbytes):
                server.on_frame(self, msg, body)
            if self.role is not None and not self.admitted:
                self.admitted = True
                server.gate.settle(self)  # authenticated: no deadline, full-size frames from now on
                self.reader.raise_limit(server.config.max_frame_bytes)
        except ProtocolError as exc:
            log.error("closing connection from %s (%s): %s", self.peer, self.role or "unauthenticated", exc)
            self.close()
        except Exception:  # a bug must cost one connection, never the planner
            log.exception("internal error handling a frame from %s; closing it", self.peer)
            self.close()
        finally:
            if outer:
                server.batching = False
                server.flush_dirty()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.server.gate.settle(self)
        self.server.on_lost(self)

    def send(self, msg: Message, segments: Sequence[Buffer] = ()) -> None:
        """Queue a frame; frames queued while handling one batch of input leave in one write.

        While the planner handles a client's read, the write happens as soon as that read's frames
        are handled, not one loop iteration later: a call's dispatch is tens of microseconds sooner."""
        if not self.closed and self.transport is not None:
            if not self._out:
                if self.server.batching:
                    self.server.dirty.append(self)
                else:
                    self.server.loop.call_soon(self._flush)
            self._out.extend(encode_frame(msg, segments))

    def flush(self) -> None:
        self._flush()

    def _flush(self) -> None:
        out, self._out = self._out, []
        if out and not self.closed and self.transport is not None:
            self.transport.writelines(out)

    def close(self) -> None:
        if not self.closed and self.transport is not None:
            self._flush()  # a Reject must still reach the peer
            self.closed = True
            self.transport.close()
