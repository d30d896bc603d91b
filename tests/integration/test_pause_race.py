"""A pause (SIGSTOP, planner/pausing.py) that lands after a call handed its result to the client's lane but
before its Done does not hold back the call's end at the planner (worker/finishing.py)."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import pytest

import granny
from granny.cluster import LocalCluster
from granny.config import ENV_TEST_HOLD_DONE

from ..polling import wait_for, wait_for_pid
from .test_delay_tolerance import slow
from .test_functions import block_until


def test_a_pause_landing_between_the_hand_over_and_the_done_does_not_hold_back_the_calls_end(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hold, gate = tmp_path / "hold", tmp_path / "gate"
    hold.touch()
    # Every granule holds each call after its hand-over, before its Done, until a pause has stopped and
    # continued it (or this file goes): the window in which the pause must land, every time.
    monkeypatch.setenv(ENV_TEST_HOLD_DONE, str(hold))
    cluster = LocalCluster(workers=1, slots=1, data_dir=tmp_path / "data", granule_user="same")
    try:
        with granny.connect(cluster.address, cluster.token) as client:
            wait_for(lambda: [h.idle_granules for h in client.hosts()] == [1], timeout=60, what="a warm granule")
            first = client.options(delay_tolerance=600).submit(slow, 0.05)
            assert first.result(timeout=60) == 0.05  # over its lane: its granule now holds before its Done
            # Latency-sensitive, and the only slot is taken: the planner pauses the held granule (it can be
            # neither frozen nor restarted), and keeps the slot until the gate, so nothing resumes it early.
            blocker = client.submit(block_until, str(gate))
            counts = wait_for(lambda: (c := client.query("counters")["batch"]).get("met", 0) == 1 and c, timeout=30,
                              what="the planner seeing the first call end (before the fix: at its latest resume, "
                                   "about 10 minutes away)")
            assert counts["paused"] == 1, counts  # the pause was ordered (and landed: the hold ended by a SIGCONT)

            def journaled() -> bool:  # its result row and its function's runtime estimate
                with contextlib.closing(sqlite3.connect(f"file:{tmp_path / 'data' / 'journal.sqlite'}?mode=ro",
                                                        uri=True)) as db:
                    rows = db.execute("SELECT count(*) FROM results WHERE req_id=?", (first.req_id,)).fetchone()[0]
                    return rows == 1 and db.execute("SELECT count(*) FROM settings WHERE key LIKE 'runtime:%'"
                                                    ).fetchone()[0] == 1

            wait_for(journaled, timeout=30, what="the first call's end in the journal")
            hold.unlink()
            gate.touch()
            assert blocker.result(timeout=60) == "local"
    finally:
        hold.unlink(missing_ok=True)
        gate.touch()
        cluster.stop()


def test_a_call_paused_when_the_planner_is_killed_goes_on_in_the_same_process(tmp_path: Path) -> None:
    from .test_delay_tolerance import spin_until
    from .test_recovery import restart_planner

    pidfile, flag, gate = tmp_path / "pid", tmp_path / "flag", tmp_path / "gate"
    cluster = LocalCluster(workers=1, slots=1, data_dir=tmp_path / "data", granule_user="same")
    try:
        with granny.connect(cluster.address, cluster.token) as client:
            wait_for(lambda: [h.idle_granules for h in client.hosts()] == [1], timeout=60, what="a warm granule")
            background = client.options(delay_tolerance=600).submit(spin_until, str(pidfile), str(flag))
            pid = wait_for_pid(pidfile, what="the background call running")
            blocker = client.submit(block_until, str(gate))  # latency-sensitive: the background call is paused
            wait_for(lambda: _state(pid) == "T", timeout=60, what="the background call's process stopped")
            flag.touch()  # it cannot see this while it is stopped
            # The new planner knows nothing of the pause: the worker continues the granule when it loses the
            # old one, so that the call ends where it ran (before: it stayed stopped, and ran again elsewhere).
            restart_planner(cluster, True, "--restart-grace", "1")
            assert background.result(timeout=60) == pid
            gate.touch()
            assert blocker.result(timeout=60) == "local"
            assert _state(pid) != "T"
    finally:
        flag.touch()
        gate.touch()
        cluster.stop()


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/status") as fh:
        return next(line.split()[1] for line in fh if line.startswith("State:"))
