"""The one reconnect loop: dial until it works, backing off, within a deadline.

Clients, worker daemons and granules all lose the planner the same way (it restarts, or the network
drops) and come back the same way, so they share this loop and differ only in their arguments: how
long they may try, whether a refused key is worth another try (a granule's credential is right by
construction; a planner that restarted may not see its task yet), and how far apart the tries get.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from ..errors import AuthError, ConnectionLostError, GrannyError
from ..tunables import FIRST_DELAY

T = TypeVar("T")


def redial(dial: Callable[[], T], deadline: float | None, what: str, retry_auth: bool = False,
           max_delay: float = 0.5) -> T:
    """``dial()``'s result once it succeeds.

    AuthError is raised at once (or, with ``retry_auth``, once past the deadline); any other OSError or
    GrannyError is retried until ``deadline`` (``time.monotonic()``; None: for ever), then raised as a
    ConnectionLostError that says ``cannot reach {what}``."""
    delay = FIRST_DELAY
    while True:
        try:
            return dial()
        except AuthError:
            if not retry_auth or (deadline is not None and time.monotonic() > deadline):
                raise
        except (OSError, GrannyError) as exc:
            if deadline is not None and time.monotonic() > deadline:
                raise ConnectionLostError(f"cannot reach {what}: {exc}") from None
        time.sleep(delay)  # back-off between attempts, not synchronisation
        delay = min(delay * 2, max_delay)
