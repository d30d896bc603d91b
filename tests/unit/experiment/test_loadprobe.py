"""The load probe (experiment/loadprobe.py) counts other work's runnable processes and leaves the
testbed's (marked) processes and itself out."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from granny.config import ENV_TESTBED
from granny.experiment.loadprobe import LoadProbe, _state

from ...polling import wait_for

SPIN = "while True: pass"


@pytest.fixture
def spinners() -> Iterator[tuple[subprocess.Popen[bytes], subprocess.Popen[bytes]]]:
    """A CPU-bound process of the testbed (marked) and one of other work."""
    marked = subprocess.Popen([sys.executable, "-c", SPIN], env={**os.environ, ENV_TESTBED: "/tmp/tb-probe-test"})
    other = subprocess.Popen([sys.executable, "-c", SPIN], env={k: v for k, v in os.environ.items() if k != ENV_TESTBED})
    try:
        yield marked, other
    finally:
        for p in (marked, other):
            p.kill()
            p.wait()


def test_a_testbed_process_is_not_background_and_other_work_is(
        spinners: tuple[subprocess.Popen[bytes], subprocess.Popen[bytes]]) -> None:
    marked, other = spinners
    probe = LoadProbe("/tmp/tb-probe-test")
    wait_for(lambda: _state(str(other.pid)) == "R", what="the spinner to run")  # (a busy loop is always runnable)
    assert probe._is_ours(str(marked.pid)) and not probe._is_ours(str(other.pid))
    assert not LoadProbe(None)._is_ours(str(marked.pid))  # no mark: everything is background
    assert not probe._is_ours(str(os.getpid()))  # (the probe's own process is left out by its pid)


def test_the_probe_samples_until_stopped_and_reports_a_mean(
        spinners: tuple[subprocess.Popen[bytes], subprocess.Popen[bytes]]) -> None:
    with LoadProbe("/tmp/tb-probe-test", every=0.01) as probe:
        wait_for(lambda: len(probe._counts) >= 5, what="five samples")
    load = probe.result()
    assert load.samples >= 5 and load.background >= 1  # the other spinner is runnable in every sample
    assert load.to_json()["samples"] == load.samples
    assert _state("0") == ""  # no such process: no state
