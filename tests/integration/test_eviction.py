"""Eviction notices on real processes: two worker hosts; a notice keeps new work off a host, a world with
migration points moves off it (spot policy), what is still there at the deadline fails naming the eviction,
the host's worker exits with code 0, and a worker that registers again brings the host back."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

import granny
from granny.cluster import LocalCluster, UpProcess
from granny.planner.openapi import HostView

from ..polling import wait_for
from .test_migration import REPEAT

HOSTS = ("local1", "local2")


def block_until(path: str) -> str:
    import os
    import time

    while not os.path.exists(path):
        time.sleep(0.01)
    return os.environ["GRANNY_HOST_ID"]


def where() -> str:
    import os

    return os.environ["GRANNY_HOST_ID"]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    c = LocalCluster(workers=2, slots=3, data_dir=tmp_path / "data", granule_user="same")
    try:
        with granny.connect(c.address, c.token) as probe:
            wait_for(lambda: sorted(h.host_id for h in probe.hosts() if h.idle_granules == 3) == list(HOSTS),
                     timeout=60, what="two hosts with 3 warm granules each")
        yield c
    finally:
        c.stop()


def granny_cli(cluster: LocalCluster, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, GRANNY_ADDRESS=cluster.address, GRANNY_TOKEN=cluster.token)
    return subprocess.run([sys.executable, "-m", "granny", *args], env=env, capture_output=True, text=True, timeout=60)


def row(client: granny.Client, host_id: str) -> granny.HostInfo:
    (h,) = [h for h in client.hosts() if h.host_id == host_id]
    return h


def test_an_evicted_host_takes_no_work_its_world_moves_off_and_the_rest_fails_at_the_deadline(
        cluster: LocalCluster, tmp_path: Path) -> None:
    script, flag, gate = tmp_path / "repeat.py", tmp_path / "stop", tmp_path / "gate"
    script.write_text(REPEAT)
    lines: list[str] = []
    news: list[str] = []
    outcome: list[Any] = []
    with granny.connect(cluster.address, cluster.token) as client:
        client.query("set-policy", "spot")

        def run() -> None:
            outcome.extend(client.options(hosts="local2:2").run_script(
                str(script), 2, [str(flag)], mpi=True,
                on_log=lambda m: (news if m.stream == "granny" else lines).append(m.data)))

        runner = threading.Thread(target=run)
        runner.start()
        try:
            stuck = client.options(hosts="local2:1").submit(block_until, str(gate))  # no migration points
            wait_for(lambda: row(client, "local2").used == 3, what="the world and the call to run on local2")

            # A long notice first: the world has all the time it needs to move off.
            done = granny_cli(cluster, "hosts", "evict", "local2", "--in", "5m")
            assert done.returncode == 0 and "host local2: evicting in 300s" in done.stdout, done.stdout + done.stderr
            listing = granny_cli(cluster, "hosts")  # a listing goes to stdout
            assert re.search(r"local2 .* in (300|29[0-9])s", listing.stdout), listing.stdout  # seconds pass under load
            assert 290 < (row(client, "local2").evicting_in or 0) <= 300
            wait_for(lambda: news, timeout=60, what="the world to move off the host under notice")
            assert news[0].startswith("ranks 0-1 moved local2 -> local1"), news
            assert [client.submit(where).result(timeout=60) for _ in range(3)] == ["local1"] * 3  # new work avoids it

            # A second notice replaces the first: the host is taken back in a moment.
            assert client.query("evict", "local2:0.5")["host_id"] == "local2"
            with pytest.raises(granny.HostEvictedError, match=r"host local2 was evicted \(spot notice given 0.5s before\)"):
                stuck.result(timeout=60)
            worker = cluster.procs[2]
            assert wait_for(lambda: worker.poll() is not None, timeout=30, what="the evicted worker to exit")
            assert worker.returncode == 0
            gone = row(client, "local2")
            assert not gone.alive and gone.evicted and gone.evicting_in is None
        finally:
            flag.write_text("stop")
            runner.join(timeout=60)
        assert [r.status.value for r in outcome] == ["ok", "ok"], [r.message for r in outcome]
        assert lines == ["total 1 hosts ['local1']\n"]  # it finished where it moved, untouched by the eviction

        # The host comes back when a worker registers for it again (a new spot VM of the same name).
        env = {k: v for k, v in os.environ.items() if k != "GRANNY_WATCH_FD"}
        new = subprocess.Popen(worker.args, env=env, stdout=subprocess.PIPE)
        cluster.procs.append(new)  # the fixture stops it
        assert new.stdout is not None and new.stdout.readline().startswith(b"READY")
        wait_for(lambda: row(client, "local2").idle_granules == 3, timeout=60, what="local2 back with 3 granules")
        back = granny_cli(cluster, "hosts", "restore", "local2")
        assert back.returncode == 0 and "host local2: restored; it takes new work" in back.stdout, back.stdout
        again = row(client, "local2")
        assert again.alive and not again.evicted and again.incarnation == 2
        assert client.options(hosts="local2:1").submit(where).result(timeout=60) == "local2"
        client.query("set-policy", "bin-pack")


def test_http_evict_and_restore(cluster: LocalCluster) -> None:
    headers = {"Authorization": f"Bearer {cluster.token}"}
    with httpx.Client(base_url=f"http://{cluster.http_address}", headers=headers, timeout=30) as api, \
            granny.connect(cluster.address, cluster.token) as client:
        noticed = api.post("/v1/hosts/local1/evict", json={"grace": 120})
        assert noticed.status_code == 200 and 110 < noticed.json()["evicting_in"] <= 120, noticed.text
        msgspec.convert(noticed.json(), HostView)  # what the OpenAPI document says (the fuzz test cannot evict)
        assert [client.submit(where).result(timeout=60) for _ in range(2)] == ["local2"] * 2
        listed = {h["host_id"]: h for h in api.get("/v1/hosts").json()}
        assert listed["local1"]["evicting_in"] > 0 and listed["local2"]["evicting_in"] is None
        restored = api.post("/v1/hosts/local1/restore")
        assert restored.status_code == 200 and restored.json()["evicting_in"] is None
        msgspec.convert(restored.json(), HostView)
        assert client.options(hosts="local1:1").submit(where).result(timeout=60) == "local1"
        assert api.post("/v1/hosts/nope/evict").status_code == 404
        assert api.post("/v1/hosts/local1/evict", json={"grace": -1}).status_code == 422
        default = api.post("/v1/hosts/local1/evict")  # no body: the planner's default grace (60 s)
        assert default.status_code == 200 and 50 < default.json()["evicting_in"] <= 60
        bad = granny_cli(cluster, "hosts", "evict", "local1", "--in", "soon")
        assert bad.returncode == 2 and "not a duration" in bad.stdout + bad.stderr
        assert granny_cli(cluster, "hosts", "restore").returncode == 2  # which host?
        api.post("/v1/hosts/local1/restore")


def test_granny_up_runs_on_without_an_evicted_worker_and_starts_it_again_on_restore(tmp_path: Path) -> None:
    up = UpProcess(tmp_path / "data", slots=1, workers=2)
    try:
        env = dict(os.environ, **up.env)

        def cli(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([sys.executable, "-m", "granny", *args], env=env, capture_output=True, text=True,
                                  timeout=60)

        with granny.connect(up.address, up.token) as client:
            wait_for(lambda: all(h.idle_granules == 1 for h in client.hosts()) and len(client.hosts()) == 2,
                     timeout=60, what="two warm hosts")
            done = cli("hosts", "evict", "local2", "--in", "0")
            assert done.returncode == 0 and "host local2: evicted; its worker was told to stop" in done.stdout, done
            wait_for(lambda: any("stopping: host local2 was evicted" in line for line in up.lines), timeout=30,
                     what="the evicted worker's last words")
            assert up.alive() and row(client, "local2").evicted
            assert client.submit(where).result(timeout=60) == "local1"  # the cluster runs on
            back = cli("hosts", "restore", "local2")
            assert back.returncode == 0 and "capacity comes back when its worker registers again" in back.stdout
            wait_for(lambda: (h := row(client, "local2")).alive and h.idle_granules == 1, timeout=60,
                     what="local2's worker started again by granny up")
            assert any("worker local2 started again" in line for line in up.lines), up.lines[-10:]
            assert row(client, "local2").incarnation == 2
            assert client.options(hosts="local2:1").submit(where).result(timeout=60) == "local2"
    finally:
        assert up.stop() == 0


def test_an_eviction_notice_survives_a_planner_kill9(cluster: LocalCluster) -> None:
    from .test_recovery import restart_planner

    with granny.connect(cluster.address, cluster.token) as client:
        assert 290 < (client.query("evict", "local2:5m")["evicting_in"] or 0) <= 300
    restart_planner(cluster)  # kill -9: the notice is in its journal
    with granny.connect(cluster.address, cluster.token) as client:
        wait_for(lambda: any(h.host_id == "local2" and h.alive and h.evicting_in for h in client.hosts()), timeout=60,
                 what="local2 registered again, still under its notice")
        assert 200 < (row(client, "local2").evicting_in or 0) <= 300  # the same deadline, not a new grace
        assert {client.submit(where).result(timeout=60) for _ in range(4)} == {"local1"}  # no new work there
        client.query("restore", "local2")
    restart_planner(cluster)  # the lifted notice is gone from the journal too
    with granny.connect(cluster.address, cluster.token) as client:
        wait_for(lambda: sorted(h.host_id for h in client.hosts() if h.alive) == list(HOSTS), timeout=60,
                 what="both hosts back")
        assert row(client, "local2").evicting_in is None
        assert client.options(hosts="local2:1").submit(where).result(timeout=60) == "local2"
