"""The worker pauses a granule itself, through a pidfd (worker/pausing.py): the signal reaches that process,
and after it was reaped, none (no process that reused its pid)."""

from __future__ import annotations

import subprocess
import sys

from granny.worker.pausing import Pidfds

from ...polling import wait_for


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as fh:
        return fh.read().rsplit(")", 1)[1].split()[0]


def test_stop_and_cont_reach_the_granule_and_a_reaped_one_is_not_signalled() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    fds = Pidfds()
    try:
        fds.spawned("g1", proc.pid)
        assert fds.signal("g1", "STOP")
        wait_for(lambda: _state(proc.pid) == "T", timeout=30, what="the process stopped")
        assert fds.signal("g1", "CONT")
        wait_for(lambda: _state(proc.pid) != "T", timeout=30, what="the process continued")
        proc.kill()
        proc.wait()  # reaped: its pid may be reused from now on
        assert fds.signal("g1", "STOP")  # handled (it is gone) without reaching any other process
        fds.exited("g1")
        assert not fds.signal("g1", "STOP")  # unknown now: the zygote's path
        assert not fds.signal("never-spawned", "CONT")
    finally:
        proc.kill()
        proc.wait()
        fds.close()
