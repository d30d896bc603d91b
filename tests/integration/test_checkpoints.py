"""Checkpoints at migration points, and recovery from a host that dies without notice: the world restarts
from its latest checkpoint on the hosts that remain, and its output equals that of an undisturbed run."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import granny
from granny.cluster import LocalCluster
from granny.errors import ConfigError

from ..polling import wait_for

HOSTS = ("local1", "local2")

KERNEL = '''
import os, sys, time
import numpy as np
from mpi4py import MPI
import granny

GO = sys.argv[1]

def kernel(start, state):
    world = MPI.COMM_WORLD
    for i in range(start, 10):
        if i == 6:  # the test may stop a host here; it lets the run go on once it has seen what it wanted
            while not world.bcast(os.path.exists(GO), root=0):
                time.sleep(0.01)
        out = np.empty_like(state)
        world.Allreduce(state, out)
        state = out / world.Get_size() + i * (world.Get_rank() + 1)
        granny.migration_point(kernel, i + 1, state)
    total = world.reduce(float(state.sum()), root=0)
    if world.Get_rank() == 0:
        print(f"total {total:.6e}")

kernel(0, np.arange(100_000, dtype=np.float64))
'''


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (a host's worker and its granules)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    c = LocalCluster(workers=2, slots=4, data_dir=tmp_path / "data", granule_user="same", heartbeat_timeout=1.5)
    try:
        yield c
    finally:
        for proc in c.procs:
            for pid in descendants(proc.pid):
                try:
                    os.kill(pid, signal.SIGCONT)
                except ProcessLookupError:
                    pass
        c.stop()


def run(client: Any, script: Path, go: Path, app_id: str, news: list[str], **options: Any) -> list[Any]:
    out: list[str] = []
    results = client.options(**options).run_script(
        str(script), 4, [str(go)], mpi=True, app_id=app_id,
        on_log=lambda m: (news if m.stream == "granny" else out).append(m.data))
    return [results, "".join(out)]


def test_a_world_restarts_from_its_checkpoint_when_a_host_dies(cluster: LocalCluster, tmp_path: Path) -> None:
    script, go = tmp_path / "kernel.py", tmp_path / "go"
    script.write_text(KERNEL)
    with granny.connect(cluster.address, cluster.token) as client:
        wait_for(lambda: sorted(h.host_id for h in client.hosts() if h.idle_granules == 4) == list(HOSTS),
                 timeout=60, what="two warm hosts")
        go.write_text("go")
        calm_news: list[str] = []
        calm, calm_out = run(client, script, go, "calm", calm_news, hosts="local1:2,local2:2", migrate=False)
        assert [r.status.value for r in calm] == ["ok"] * 4 and calm_out.startswith("total")
        go.unlink()
        news: list[str] = []
        outcome: list[Any] = []
        runner = threading.Thread(target=lambda: outcome.extend(run(
            client, script, go, "hit", news, hosts="local1:2,local2:2", migrate=False, checkpoint=2)))
        runner.start()
        try:
            wait_for(lambda: client.query("counters")["migration"].get("checkpoints", 0) >= 3, timeout=60,
                     what="three checkpoints (after steps 2, 4 and 6)")
            for pid in descendants(cluster.procs[2].pid):  # host local2 stops dead: worker and granules
                os.kill(pid, signal.SIGSTOP)
            wait_for(lambda: any(n.startswith("recovered") for n in news), timeout=60,
                     what="the world restarted from its checkpoint")
            assert any("host local2 stopped sending heartbeats" in n and "checkpoint 3" in n for n in news), news
        finally:
            go.write_text("go")
            runner.join(timeout=60)
        results, out = outcome
        assert [r.status.value for r in results] == ["ok"] * 4, [r.message for r in results]
        assert out == calm_out  # the same result as the undisturbed run
        assert client.query("counters")["migration"]["recovered"] == 1
        granules = client.query("app", "hit")["granules"]
        assert {g["host_id"] for g in granules} == {"local1"}  # restarted on the host that remained


def test_a_recovery_that_waits_for_room_survives_a_planner_kill9(cluster: LocalCluster, tmp_path: Path) -> None:
    from .test_recovery import restart_planner

    script, go, gate = tmp_path / "kernel.py", tmp_path / "go", tmp_path / "gate"
    script.write_text(KERNEL)
    with granny.connect(cluster.address, cluster.token) as client:
        wait_for(lambda: sorted(h.host_id for h in client.hosts() if h.idle_granules == 4) == list(HOSTS),
                 timeout=60, what="two warm hosts")
        go.write_text("go")
        calm_news: list[str] = []
        _, calm_out = run(client, script, go, "calm2", calm_news, hosts="local1:2,local2:2", migrate=False)
        go.unlink()
        holders = [client.options(hosts="local1:1").submit(hold, str(gate)) for _ in range(2)]  # local1 is full
        news: list[str] = []
        outcome: list[Any] = []
        runner = threading.Thread(target=lambda: outcome.extend(run(
            client, script, go, "hit2", news, hosts="local1:2,local2:2", migrate=False, checkpoint=2)))
        runner.start()
        try:
            wait_for(lambda: client.query("counters")["migration"].get("checkpoints", 0) >= 3, timeout=60,
                     what="three checkpoints (after steps 2, 4 and 6)")
            for pid in descendants(cluster.procs[2].pid):  # host local2 stops dead: worker and granules
                os.kill(pid, signal.SIGSTOP)
            # Its ranks on local1 stop too; with local1's other slots held, the world waits for room.
            wait_for(lambda: any("restarting all 4 ranks from checkpoint 3" in n for n in news), timeout=60,
                     what="the world waiting to restart from its checkpoint")
            restart_planner(cluster)  # kill -9 while the world waits
            go.write_text("go")
            gate.write_text("open")  # room on local1: the new planner restarts the world from checkpoint 3
            wait_for(lambda: any(n.startswith("recovered") for n in news), timeout=60,
                     what="the world restarted from its checkpoint by the new planner")
        finally:
            go.write_text("go")
            gate.write_text("open")
            runner.join(timeout=60)
        results, out = outcome
        assert [r.status.value for r in results] == ["ok"] * 4, [r.message for r in results]
        assert out == calm_out  # the same result as the undisturbed run: nothing ran again from the start
        assert [f.result(timeout=60) for f in holders] == ["local1", "local1"]


def test_a_world_without_a_checkpoint_fails_naming_the_host(cluster: LocalCluster, tmp_path: Path) -> None:
    script, go = tmp_path / "kernel.py", tmp_path / "go"
    script.write_text(KERNEL)
    with granny.connect(cluster.address, cluster.token) as client:
        wait_for(lambda: sorted(h.host_id for h in client.hosts() if h.idle_granules == 4) == list(HOSTS),
                 timeout=60, what="two warm hosts")
        news: list[str] = []
        outcome: list[Any] = []
        runner = threading.Thread(target=lambda: outcome.extend(run(
            client, script, go, "plain", news, hosts="local1:2,local2:2", migrate=False)))
        runner.start()
        try:
            wait_for(lambda: client.query("counters")["migration"].get("asks", 0) >= 1, timeout=60,
                     what="the world running")
            for pid in descendants(cluster.procs[2].pid):
                os.kill(pid, signal.SIGSTOP)
            runner.join(timeout=60)
        finally:
            go.write_text("go")
        results, _ = outcome
        failed = [r for r in results if r.status.value != "ok"]
        assert failed and any("local2" in r.message for r in failed), [r.message for r in results]


@pytest.mark.parametrize("bad", ["0s", "-1", "x", "3m", 2.5, True])
def test_a_bad_checkpoint_option_fails_in_the_client(bad: Any) -> None:
    from granny.placing import parse_checkpoint

    with pytest.raises(ConfigError, match="checkpoint"):
        parse_checkpoint(bad)
    assert parse_checkpoint("10s") == "10s" and parse_checkpoint(3) == "3" and parse_checkpoint(None) == ""


def hold(gate: str) -> str:
    import os
    import time

    while not os.path.exists(gate):
        time.sleep(0.01)
    return os.environ["GRANNY_HOST_ID"]


def test_an_idempotent_call_runs_again_elsewhere_when_its_host_dies(cluster: LocalCluster, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    with granny.connect(cluster.address, cluster.token) as client:
        wait_for(lambda: sorted(h.host_id for h in client.hosts() if h.idle_granules == 4) == list(HOSTS),
                 timeout=60, what="two warm hosts")
        again = client.options(hosts="local2:1", retries=1).submit(hold, str(gate))
        once = client.options(hosts="local2:1").submit(hold, str(gate))
        wait_for(lambda: any(h.host_id == "local2" and h.used == 2 for h in client.hosts()), timeout=60,
                 what="both calls running on local2")
        for pid in descendants(cluster.procs[2].pid):
            os.kill(pid, signal.SIGSTOP)
        wait_for(lambda: not next(h for h in client.hosts() if h.host_id == "local2").alive, timeout=60,
                 what="local2 declared dead")
        gate.write_text("open")
        assert again.result(timeout=60) == "local1" and again.attempts == 2
        with pytest.raises(granny.HostDiedError, match="local2"):
            once.result(timeout=60)
        assert once.attempts == 1
    with pytest.raises(ConfigError, match="retries"):
        granny.Client.options(client, retries=-1)
