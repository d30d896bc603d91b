"""Admission of planner connections that have not authenticated yet: a cap and a deadline.

Theory of operation: a peer that has not proven it knows the token or the secret may hold one
connection with a few KiB of buffer (see :class:`granny.wire.FrameReader`'s limits), for at most
``handshake_timeout`` seconds, and at most ``max_unauthenticated`` such TCP connections exist at
once: one more is closed as soon as it is accepted. Authenticated connections are not counted, nor
is the planner's Unix socket (mode 0600: only its own user reaches it), so a remote flood can never
lock out same-host workers and granules. The cap bounds memory, not availability: a peer that keeps
it full delays honest remote peers, which retry (see docs/security.md).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from ..tunables import GATE_LOG_EVERY as LOG_EVERY

log = logging.getLogger("granny.planner")


class Gated(Protocol):
    peer: str

    def close(self) -> None: ...


class HandshakeGate:
    """Owned by the planner's event loop; not thread-safe."""

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout: float, cap: int) -> None:
        self.loop = loop
        self.timeout = timeout
        self.cap = cap
        self.refused = 0  # connections closed because the cap was reached (diagnostics, tests)
        self.expired = 0  # connections closed because they did not authenticate in time
        self._pending: dict[Gated, asyncio.TimerHandle] = {}
        self._capped: set[Gated] = set()
        self._last_log = -LOG_EVERY

    @property
    def pending(self) -> int:
        return len(self._pending)

    def admit(self, conn: Gated, capped: bool = True) -> bool:
        """A new connection: start its deadline, or return False if the cap is reached (close it).

        ``capped=False`` (a Unix-socket peer) still gets the deadline but never counts or is refused."""
        if capped and len(self._capped) >= self.cap:
            self.refused += 1
            now = self.loop.time()
            if now - self._last_log >= LOG_EVERY:
                self._last_log = now
                log.warning("closing a new connection from %s: %d connections are already waiting to "
                            "authenticate (the cap); %d refused so far", conn.peer, self.cap, self.refused)
            return False
        self._pending[conn] = self.loop.call_later(self.timeout, self._expire, conn)
        if capped:
            self._capped.add(conn)
        return True

    def settle(self, conn: Gated) -> None:
        """The connection authenticated or closed: it no longer counts."""
        self._capped.discard(conn)
        handle = self._pending.pop(conn, None)
        if handle is not None:
            handle.cancel()

    def _expire(self, conn: Gated) -> None:
        if self._pending.pop(conn, None) is not None:
            self._capped.discard(conn)
            self.expired += 1
            log.warning("closing connection from %s: it did not authenticate within %gs", conn.peer, self.timeout)
            conn.close()
