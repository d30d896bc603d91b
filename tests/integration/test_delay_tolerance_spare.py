"""A spare granule is ready before latency-sensitive work needs it (planner/pausing.py, keep_spare), on real
processes: when a delay-tolerant call takes a host's last idle granule, the worker forks a spare at once, so
that a latency-sensitive call that pauses the delay-tolerant one starts on it without waiting for a fork."""

from __future__ import annotations

import os
from pathlib import Path

import granny
from granny.cluster import LocalCluster

from ..polling import wait_for, wait_for_pid
from .test_delay_tolerance_idle import wait_for_gate


def test_a_spare_granule_is_forked_when_a_delay_tolerant_call_takes_the_last_idle_one(tmp_path: Path) -> None:
    pid_file, gate = tmp_path / "pid", tmp_path / "gate"
    cluster = LocalCluster(workers=1, slots=1, data_dir=tmp_path / "data", granule_user="same")
    try:
        with granny.connect(cluster.address, cluster.token) as client:
            held = client.options(delay_tolerance=-1).submit(wait_for_gate, str(pid_file), str(gate))
            pid = wait_for_pid(pid_file)
            # No latency-sensitive call has come yet: the spare is there for the first one.
            wait_for(lambda: client.query("hosts")[0]["idle_granules"] == 1, timeout=60, what="a spare granule")
            # It pauses the held call (the only slot) and runs on the spare while that call still waits.
            assert client.submit(os.getpid).result(timeout=60) != pid
            assert client.query("counters")["batch"]["paused"] == 1 and not held.done()
            gate.touch()
            assert held.result(timeout=60) == pid
    finally:
        gate.touch()
        cluster.stop()
