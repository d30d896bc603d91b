"""A submission the client still waits on: what it resends after a reconnect, and what its results fill in."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .futures import GrannyFuture
    from .wire import Log, Result, Submit
    from .wire.framing import Buffer


class Pending:
    """One submission of a client (plain class: dataclasses cost CLI start-up time)."""

    __slots__ = ("done", "future", "on_log", "parts", "results", "segments", "submit", "values")

    def __init__(self, submit: Submit, segments: list[Buffer], future: GrannyFuture | None = None,
                 on_log: Callable[[Log], None] | None = None) -> None:
        # segments: the Submit's body, a pickle frame (serde.framed), kept to resend after a reconnect
        self.submit, self.segments, self.future, self.on_log = submit, segments, future, on_log
        self.results: dict[int, Result] = {}
        self.values: dict[int, Any] = {}
        self.parts: dict[tuple[int, str], int] = {}  # output printed so far: (index, run) -> last part
        # Only run_script blocks on this; a call's caller waits on its future instead.
        self.done = threading.Event() if future is None else None
