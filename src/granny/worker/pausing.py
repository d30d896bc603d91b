"""Pausing a granule (SIGSTOP/SIGCONT, planner/pausing.py) from the worker itself, not through the zygote.

Why: a pause is on the latency-sensitive path. The planner pauses a delay-tolerant call so that a
latency-sensitive call gets its core, and until the stop lands both spin side by side. Through the zygote
a stop wakes two processes in turn (worker, then zygote) on cores that busy calls hold; measured under
load (benchmarks/dfaas_bench.py, load 7-9 on 2 cores) each hop took 0.3 ms at the median, 4.5 ms at p90
and 17-23 ms at p99. The worker signals the granule directly, one hop fewer.

How: the zygote reports each fork's pid (``{"spawned": GID, "pid": PID}``); the worker opens a pidfd for
it at once. A pidfd names that process and no other: once the zygote has reaped it, a signal through
it fails (ProcessLookupError) rather than reach a process that reused the pid, as ``kill(pid)`` could.
Where a pidfd cannot be had or used (no pidfd_open, a granule of another user the worker may not
signal), the zygote, the granules' parent, signals as before.

``NORMAL`` (planner/idle.py) is not a signal: it moves every thread of a granule running a delay-tolerant
call in the kernel's idle class back to the normal class, from outside (the starved call itself might not
get a core to do it). The pidfd, checked just before, makes sure the pid is still that granule's.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading

from . import niceness

SIGNALS = {"STOP": signal.SIGSTOP, "CONT": signal.SIGCONT}


class Pidfds:
    def __init__(self) -> None:
        self._fds: dict[str, int] = {}
        self._pids: dict[str, int] = {}
        self._lock = threading.Lock()

    def spawned(self, gid: str, pid: int) -> None:
        try:
            fd = os.pidfd_open(pid)
        except (AttributeError, OSError):  # no pidfds here, or the granule is gone already
            return
        with self._lock:
            old = self._fds.pop(gid, None)
            self._fds[gid], self._pids[gid] = fd, pid
        if old is not None:
            os.close(old)

    def exited(self, gid: str) -> None:
        with self._lock:
            fd = self._fds.pop(gid, None)
            self._pids.pop(gid, None)
        if fd is not None:
            os.close(fd)

    def signal(self, gid: str, name: str) -> bool:
        """Send STOP or CONT to granule ``gid``; False if the zygote must (no pidfd, or not allowed)."""
        with self._lock:
            fd = self._fds.get(gid)
            if fd is None:
                return False
            try:
                signal.pidfd_send_signal(fd, SIGNALS[name])
            except ProcessLookupError:
                return True  # it exited: its exit event is on its way
            except OSError:
                return False
            return True

    def normal(self, gid: str) -> bool:
        """Move granule ``gid``'s threads in the idle class to the normal class; False if it could not be done."""
        with self._lock:
            fd, pid = self._fds.get(gid), self._pids.get(gid)
            if fd is None or pid is None:
                return False
            try:
                signal.pidfd_send_signal(fd, 0)  # still that granule (signal 0 only checks)
            except OSError:
                return False
            return niceness.to_normal(pid)

    def close(self) -> None:
        with self._lock:
            fds, self._fds = list(self._fds.values()), {}
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)
