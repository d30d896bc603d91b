"""How busy the machine is with other work while a live run or a calibration runs (Linux /proc).

The namespace testbed's hosts share one machine's cores with whatever else runs there (on ours, the
other sessions' tests). The contention model (:mod:`granny.sim.contention`) takes that as
``background``: the mean number of runnable processes that are not the testbed's. A :class:`LoadProbe`
samples it in a thread every ``every`` seconds: it reads each process's state in ``/proc/<pid>/stat``
and counts those running or runnable (``R``), except this process and the testbed's (their
environment carries the testbed's mark (``GRANNY_TESTBED``: its state dir), which its planner, workers
and their granules inherit). Its own scan is one of the runnable ones while it runs, and is left out.
Processes only, not threads: a multi-threaded process counts once.
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ..config import ENV_TESTBED

PROC = Path("/proc")


@dataclass(frozen=True)
class Load:
    background: float  # mean runnable processes that are not ours
    samples: int
    loadavg: tuple[float, float]  # the 1-minute load average at the start and at the end

    def to_json(self) -> dict[str, object]:
        return {"background": round(self.background, 3), "samples": self.samples,
                "loadavg_1min": [round(x, 2) for x in self.loadavg]}


def _state(pid: str) -> str:
    try:
        raw = (PROC / pid / "stat").read_bytes()
    except OSError:
        return ""
    end = raw.rfind(b")")  # the command name may hold spaces and parentheses
    return raw[end + 2:end + 3].decode() if end > 0 else ""


class LoadProbe:
    def __init__(self, mark: str | None, every: float = 0.2) -> None:
        """``mark``: the testbed's mark (its state dir), whose processes are not background."""
        self.needle = f"{ENV_TESTBED}={mark}".encode() if mark else None
        self.every = every
        self._ours: dict[str, bool] = {}
        self._counts: list[int] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._start_avg = 0.0

    def _is_ours(self, pid: str) -> bool:
        known = self._ours.get(pid)
        if known is None:
            try:
                env = (PROC / pid / "environ").read_bytes()
            except OSError:
                env = b""
            known = self._ours[pid] = self.needle is not None and self.needle in env.split(b"\0")
        return known

    def sample(self) -> int:
        me = str(os.getpid())
        count = 0
        for entry in os.scandir(PROC):
            pid = entry.name
            if not pid.isdigit() or pid == me:
                continue
            if _state(pid) == "R" and not self._is_ours(pid):
                count += 1
        return count

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._counts.append(self.sample())
            self._stop.wait(self.every)

    def __enter__(self) -> LoadProbe:
        self._start_avg = os.getloadavg()[0]
        self._thread = threading.Thread(target=self._loop, name="load-probe", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def result(self) -> Load:
        counts = self._counts or [0]
        return Load(statistics.fmean(counts), len(self._counts), (self._start_avg, os.getloadavg()[0]))


def measure(seconds: float, mark: str | None = None) -> Load:
    """The background over the next ``seconds`` (nothing of ours running)."""
    with LoadProbe(mark) as probe:
        time.sleep(seconds)
    return probe.result()
