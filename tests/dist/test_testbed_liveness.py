"""A host that pauses past the heartbeat timeout comes back, on the namespace testbed: its worker is
stopped (SIGSTOP) until the planner declares the host dead, then resumed; the host registers again
as a new incarnation and runs new calls, and its old granule's late result is not accepted."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

import granny
from granny.testbed import Testbed

from .conftest import wait_for
from .test_testbed_granny import busy_hosts, holder


@pytest.fixture
def client(testbed: Testbed) -> Iterator[granny.Client]:
    c = granny.connect(address=testbed.address, token=testbed.token)
    try:
        yield c
    finally:
        c.close()


def host_info(client: granny.Client, name: str) -> granny.client.HostInfo:
    return next(h for h in client.hosts() if h.host_id == name)


@pytest.mark.testbed(hosts=2, slots=1, heartbeat_timeout=2.0)
def test_paused_host_comes_back_and_runs_new_calls(testbed: Testbed, client: granny.Client, tmp_path: Path) -> None:
    old_gate = tmp_path / "old"
    old = client.submit(holder(str(old_gate)))
    (victim,) = busy_hosts(client, 1)
    worker = testbed.pid(f"worker-{victim}")
    os.kill(worker, signal.SIGSTOP)
    try:
        with pytest.raises(granny.HostDiedError, match=f"host {victim}\\b"):
            old.result(timeout=30)
        assert host_info(client, victim).alive is False
        # Only the worker daemon is stopped: its granule finishes the failed call and reports it late.
        old_gate.touch()
    finally:
        os.kill(worker, signal.SIGCONT)

    def back() -> bool:
        h = host_info(client, victim)
        return h.alive and h.idle_granules >= 1 and h.incarnation >= 2

    wait_for(back, timeout=30, what=f"{victim} registered again with a warm granule")
    # Two calls on two one-slot hosts: one of them must run on the host that came back.
    gate = tmp_path / "new"
    futures = [client.submit(holder(str(gate))) for _ in range(2)]
    assert sorted(busy_hosts(client, 2)) == ["h1", "h2"]
    gate.touch()
    assert sorted(f.result(timeout=60) for f in futures) == ["h1", "h2"]
    (task,) = [g for g in client.query("app", client.app_id)["granules"] if g["req_id"] == old.req_id]
    assert task["state"] == "failed"  # the old incarnation's late Done was ignored
    with pytest.raises(granny.HostDiedError):
        old.result(timeout=0)


@pytest.mark.testbed(hosts=2, slots=1, heartbeat_timeout=2.0)
def test_host_cut_off_past_the_timeout_comes_back_when_the_network_heals(testbed: Testbed, client: granny.Client,
                                                                          tmp_path: Path) -> None:
    first = host_info(client, "h1").incarnation
    testbed.cut("h1")
    try:
        wait_for(lambda: not host_info(client, "h1").alive, timeout=30, what="h1 declared dead")
    finally:
        testbed.restore("h1")

    def back() -> bool:
        h = host_info(client, "h1")
        return h.alive and h.idle_granules >= 1 and h.incarnation > first

    wait_for(back, timeout=30, what="h1 registered again after the partition healed")
    gate = tmp_path / "go"
    futures = [client.submit(holder(str(gate))) for _ in range(2)]
    assert sorted(busy_hosts(client, 2)) == ["h1", "h2"]
    gate.touch()
    assert sorted(f.result(timeout=60) for f in futures) == ["h1", "h2"]
