"""A host declared dead comes back: a worker paused past the heartbeat timeout (SIGSTOP) is told it
was forgotten, registers again as a new incarnation, and runs new calls; its old granules, whose
work was already failed, never report a result for it."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import granny
from granny.cluster import LocalCluster

from ..polling import wait_for
from .test_functions import block_until

TIMEOUT = 2.0  # short, yet long enough that a loaded machine does not declare hosts dead by itself


def announce_then_block(gate: str) -> str:
    """Print a line (a Log frame, sent before the Done on the same connection), then wait for the gate."""
    import os
    import time

    print("started", flush=True)
    while not os.path.exists(gate):
        time.sleep(0.01)
    print("finished", flush=True)
    return os.environ["GRANNY_HOST_ID"]


@pytest.fixture
def short_cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    c = LocalCluster(workers=1, slots=2, data_dir=tmp_path / "data", heartbeat_timeout=TIMEOUT, granule_user="same")
    try:
        yield c
    finally:
        for proc in c.procs:  # a stopped worker would ignore the fixture's SIGTERM
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGCONT)
        c.stop()


@pytest.fixture
def short_client(short_cluster: LocalCluster) -> Iterator[granny.Client]:
    c = granny.connect(short_cluster.address, short_cluster.token)
    try:
        yield c
    finally:
        c.close()


def host(client: granny.Client) -> granny.client.HostInfo:
    (h,) = client.hosts()
    return h


def pause_worker_until_dead(cluster: LocalCluster, client: granny.Client) -> int:
    worker = cluster.procs[1].pid
    os.kill(worker, signal.SIGSTOP)
    wait_for(lambda: not host(client).alive, timeout=30, what="the paused host to be declared dead")
    return worker


def test_paused_worker_comes_back_and_runs_new_calls(short_cluster: LocalCluster, short_client: granny.Client,
                                                      tmp_path: Path) -> None:
    assert short_client.submit(pow, 2, 3).result(timeout=30) == 8
    before = host(short_client)
    worker = pause_worker_until_dead(short_cluster, short_client)
    os.kill(worker, signal.SIGCONT)
    # Before the fix the planner ignored the resumed worker for good and this call queued forever.
    gate = tmp_path / "gate"
    gate.touch()
    assert short_client.submit(block_until, str(gate)).result(timeout=30) == "local"
    after = wait_for(lambda: (h := host(short_client)).alive and h, what="the host alive again")
    assert after.incarnation > before.incarnation
    # And its capacity is whole again: both slots run calls at once.
    both = tmp_path / "both"
    futures = [short_client.submit(block_until, str(both)) for _ in range(2)]
    wait_for(lambda: host(short_client).used == 2, what="both slots of the host in use")
    both.touch()
    assert [f.result(timeout=30) for f in futures] == ["local", "local"]


def test_granule_of_a_dead_incarnation_cannot_report_failed_work(short_cluster: LocalCluster,
                                                                  short_client: granny.Client,
                                                                  tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    fut = short_client.submit(announce_then_block, str(gate))

    def logged(text: str) -> bool:
        return any(text in e["data"] for e in short_client.query("logs", short_client.app_id))

    wait_for(lambda: logged("started"), what="the call to start")
    worker = pause_worker_until_dead(short_cluster, short_client)
    with pytest.raises(granny.HostDiedError, match="host local"):
        fut.result(timeout=30)
    # Only the worker daemon is paused: its granule runs on, finishes, and sends its Done late.
    gate.touch()
    wait_for(lambda: logged("finished"), what="the old granule to finish")
    os.kill(worker, signal.SIGCONT)
    assert short_client.submit(pow, 3, 2).result(timeout=30) == 9  # the host is back
    (task,) = [g for g in short_client.query("app", short_client.app_id)["granules"] if g["req_id"] == fut.req_id]
    assert task["state"] == "failed"  # the late Done was not accepted
    with pytest.raises(granny.HostDiedError):
        fut.result(timeout=0)


@pytest.fixture
def slow_cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    """A heartbeat timeout long enough that a restarted worker is back before its host could die."""
    c = LocalCluster(workers=1, slots=2, data_dir=tmp_path / "data", heartbeat_timeout=60.0, granule_user="same")
    try:
        yield c
    finally:
        c.stop()


def test_worker_restarted_with_the_same_host_id_is_a_new_incarnation(slow_cluster: LocalCluster,
                                                                     tmp_path: Path) -> None:
    client = granny.connect(slow_cluster.address, slow_cluster.token)
    try:
        stuck = client.submit(block_until, str(tmp_path / "never"))
        wait_for(lambda: host(client).used == 1, what="the call to start")
        old = slow_cluster.procs[1]
        old.kill()  # its zygote and granules die with it
        old.wait()
        env = {k: v for k, v in os.environ.items() if k != "GRANNY_WATCH_FD"}
        new = subprocess.Popen(old.args, env=env, stdout=subprocess.PIPE)
        slow_cluster.procs.append(new)  # the fixture stops it
        assert new.stdout is not None and new.stdout.readline().startswith(b"READY")
        # Before the fix the new worker's granules, numbered from 1 again, inherited the dead ones'
        # records: the call stayed "running" for ever, and so did its slot.
        with pytest.raises(granny.HostDiedError, match="restarted"):
            stuck.result(timeout=30)
        gate = tmp_path / "gate"
        futures = [client.submit(block_until, str(gate)) for _ in range(2)]
        wait_for(lambda: host(client).used == 2, what="both slots in use")
        gate.touch()
        assert [f.result(timeout=30) for f in futures] == ["local", "local"]
        assert host(client).incarnation == 2
    finally:
        client.close()


def test_planner_stall_longer_than_the_timeout_declares_no_host_dead(short_cluster: LocalCluster,
                                                                    short_client: granny.Client,
                                                                    tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    running = short_client.submit(block_until, str(gate))
    wait_for(lambda: host(short_client).used == 1, what="the call to start")
    planner = short_cluster.procs[0].pid
    os.kill(planner, signal.SIGSTOP)
    try:
        time.sleep(3 * TIMEOUT)  # the planner's stall itself (the thing under test), not synchronisation
    finally:
        os.kill(planner, signal.SIGCONT)
    # The heartbeats sent meanwhile were waiting unread: the planner must not blame the host for them.
    gate.touch()
    assert running.result(timeout=30) == "local"
    assert host(short_client).incarnation == 1
