"""Waiting in tests: poll a predicate with a deadline, never sleep to synchronise."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def wait_for(predicate: Callable[[], T], timeout: float = 20.0, what: str = "condition",
             interval: float = 0.02) -> T:
    """Return the first truthy value of ``predicate()``; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)  # polling with a deadline


def wait_for_pid(path: Path, timeout: float = 60.0, what: str = "the call started") -> int:
    """The process id a call wrote to ``path`` once it started (it writes the whole number at once)."""
    return int(wait_for(lambda: path.exists() and path.read_text(), timeout=timeout, what=what))
