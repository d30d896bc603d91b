"""Delay-tolerant calls at the kernel's idle priority (``--batch-nice idle``, worker/niceness.py), on real
processes: the granule's thread that runs a delay-tolerant call is in SCHED_IDLE while it runs, and the same
granule runs the next latency-sensitive call in SCHED_OTHER again, also when it is not root."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import cloudpickle
import pytest

import granny
from granny.cluster import LocalCluster

from ..polling import wait_for, wait_for_pid

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # a granule running as nobody need not import it


def wait_for_gate(pid_file: str, gate: str) -> int:
    import os
    import time

    with open(pid_file + ".tmp", "w") as fh:
        fh.write(str(os.getpid()))
    os.rename(pid_file + ".tmp", pid_file)
    while not os.path.exists(gate):  # the test looks at this process from outside meanwhile
        time.sleep(0.01)
    return os.getpid()


def my_policy() -> tuple[int, int, int]:
    import os

    return os.getpid(), os.sched_getscheduler(0), os.nice(0)  # (the calling thread's)


def test_a_delay_tolerant_call_runs_at_sched_idle_and_the_granule_goes_back(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRANNY_BATCH_NICE", "idle")  # the planner LocalCluster starts inherits it
    pid_file, gate = tmp_path / "pid", tmp_path / "gate"
    cluster = LocalCluster(workers=1, slots=1, data_dir=tmp_path / "data", granule_user="same")
    try:
        with granny.connect(cluster.address, cluster.token) as client:
            running = client.options(delay_tolerance=-1).submit(wait_for_gate, str(pid_file), str(gate))
            pid = wait_for_pid(pid_file)
            # From outside, as the kernel sees it: the granule's main thread (tid = pid) runs the call.
            assert os.sched_getscheduler(pid) == os.SCHED_IDLE
            gate.touch()
            assert running.result(timeout=60) == pid
            # (its result may come over the lane before the planner has the slot back: wait for that)
            wait_for(lambda: client.query("counters")["batch"].get("met") == 1, timeout=30, what="the call counted")
            pid_after, policy, nice = client.submit(my_policy).result(timeout=60)
            assert (pid_after, policy, nice) == (pid, os.SCHED_OTHER, 0)  # the same granule, normal class again
            assert os.sched_getscheduler(pid) == os.SCHED_OTHER
    finally:
        gate.touch()
        cluster.stop()


def test_an_idle_call_still_running_at_its_raise_time_is_moved_to_the_normal_class_from_outside(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Under outside load an idle-class call could starve past its deadline: at its raise time (planner/idle.py;
    here, with no runtime estimate yet, its deadline less the margin) the worker moves it back."""
    monkeypatch.setenv("GRANNY_BATCH_NICE", "idle")
    pid_file, gate = tmp_path / "pid", tmp_path / "gate"
    cluster = LocalCluster(workers=1, slots=1, data_dir=tmp_path / "data", granule_user="same")
    try:
        with granny.connect(cluster.address, cluster.token) as client:
            running = client.options(delay_tolerance=2).submit(wait_for_gate, str(pid_file), str(gate))
            pid = wait_for_pid(pid_file)
            assert os.sched_getscheduler(pid) == os.SCHED_IDLE
            wait_for(lambda: os.sched_getscheduler(pid) == os.SCHED_OTHER, timeout=30, what="the call raised")
            assert client.query("counters")["batch"]["raised"] == 1
            gate.touch()  # (it ends after its deadline, held here: not what this test is about)
            assert running.result(timeout=60) == pid
    finally:
        gate.touch()
        cluster.stop()


@pytest.mark.skipif(os.geteuid() != 0, reason="granules run as another user only under a root worker")
def test_an_unprivileged_granule_goes_back_from_sched_idle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Leaving SCHED_IDLE needs RLIMIT_NICE to allow nice 0 (the zygote sets it before the granule drops
    root): the same granule, running as nobody, runs the latency-sensitive call at normal priority. Where
    root may not raise that limit (no CAP_SYS_RESOURCE, as in some containers) the granule does not enter
    the idle class at all (worker/niceness.py): it would have to retire after every delay-tolerant call."""
    from .test_granule_user import SRC, _readable_python

    monkeypatch.setenv("GRANNY_BATCH_NICE", "idle")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(SRC), *filter(None, [os.environ.get("PYTHONPATH")])]))
    cluster = LocalCluster(workers=1, slots=1, data_dir=tmp_path / "data", granule_user="auto",
                           python=_readable_python())
    try:
        with granny.connect(cluster.address, cluster.token) as client:
            pid, policy, _ = client.options(delay_tolerance=-1).submit(my_policy).result(timeout=60)
            assert policy == (os.SCHED_IDLE if _may_raise_nice_limit() else os.SCHED_OTHER)
            assert os.stat(f"/proc/{pid}").st_uid != 0  # not root: no CAP_SYS_NICE
            wait_for(lambda: client.query("counters")["batch"].get("met") == 1, timeout=30, what="the call counted")
            pid_after, policy_after, nice = client.submit(my_policy).result(timeout=60)
            assert (pid_after, policy_after, nice) == (pid, os.SCHED_OTHER, 0)  # the same granule: it did not retire
    finally:
        cluster.stop()


def _may_raise_nice_limit() -> bool:
    """Whether this (root) process may set RLIMIT_NICE to 20, as the zygote does for its granules."""
    import resource

    pid = os.fork()
    if pid == 0:
        try:
            resource.setrlimit(resource.RLIMIT_NICE, (20, 20))
        except (OSError, ValueError):
            os._exit(1)
        os._exit(0)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
