"""Capture of what a granule writes to file descriptors 1 and 2 (C extensions, ``os.write``, libc).

Python-level ``print`` is shipped by the granule's LogWriter; this catches everything below it.
Each descriptor is a pipe drained by one thread: while a task runs the bytes become Log frames of
that task (through the granule's outbox, which keeps them until the planner has them, see
:mod:`granny.worker.outbox`), otherwise they go to the worker's own stderr. At the end of a task the pipes are drained
under the same lock before the result is sent, so a task's output never arrives after its result.
"""

from __future__ import annotations

import ctypes
import os
import select
import threading
from collections.abc import Callable

Sink = Callable[[str, str], None]


class FdCapture:
    def __init__(self) -> None:
        self._fallback = os.dup(2)
        self._streams: dict[int, str] = {}
        for fd, stream in ((1, "stdout"), (2, "stderr")):
            r, w = os.pipe()
            os.dup2(w, fd)
            os.close(w)
            os.set_blocking(r, False)
            self._streams[r] = stream
        self._lock = threading.Lock()
        self._sink: Sink | None = None
        try:
            self._fflush: Callable[[None], int] | None = ctypes.CDLL(None).fflush
        except (OSError, AttributeError):
            self._fflush = None
        threading.Thread(target=self._pump, name="granny-fd-capture", daemon=True).start()

    def begin(self, sink: Sink) -> None:
        with self._lock:
            self._sink = sink

    def end(self) -> None:
        """Flush libc's buffers and ship whatever the task left in the pipes, then detach."""
        if self._fflush is not None:
            self._fflush(None)
        with self._lock:
            try:
                ready, _, _ = select.select(list(self._streams), [], [], 0)
                self._drain(ready)
            finally:
                self._sink = None

    def _pump(self) -> None:
        while True:
            ready, _, _ = select.select(list(self._streams), [], [])
            with self._lock:
                self._drain(ready)

    def _drain(self, fds: list[int]) -> None:
        for r in fds:
            while True:
                try:
                    data = os.read(r, 65536)
                except BlockingIOError:
                    break
                if not data:
                    break
                try:
                    if self._sink is None:
                        raise LookupError("no task")
                    self._sink(self._streams[r], data.decode(errors="replace"))
                except Exception:  # never let the pump die: a full pipe would block the granule
                    os.write(self._fallback, data)
