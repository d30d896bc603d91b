"""An OpenMP-style job's team on real processes (planner/holds.py): a job submitted with ``team=k`` gets its
team's slots held from the moment thread 0 is placed, so an app that arrives before the team's lease
cannot take them (bin-pack would put it on exactly that host), and the team runs beside thread 0."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import granny
from granny.cluster import LocalCluster

from ..polling import wait_for


@pytest.fixture
def two_hosts(tmp_path: Path) -> Iterator[LocalCluster]:
    c = LocalCluster(workers=2, slots=2, data_dir=tmp_path / "data", granule_user="same")
    try:
        with granny.connect(c.address, c.token) as probe:
            wait_for(lambda: sorted(h.host_id for h in probe.hosts() if h.idle_granules == 2) == ["local1", "local2"],
                     timeout=60, what="two hosts with 2 warm granules each")
        yield c
    finally:
        c.stop()


def _record(i: int, hosts: Any) -> None:
    import os

    hosts[i] = int(os.environ["GRANNY_HOST_ID"].removeprefix("local"))


def omp_job(release: str) -> list[int]:
    """Thread 0: waits for ``release`` (the time a real job spends before its first parallel region),
    then forks a team of 2; returns the host number each thread ran on."""
    import os
    import time

    import granny
    from granny.parallel import close_teams

    while not os.path.exists(release):
        time.sleep(0.01)
    hosts = granny.shared_array((2,), "int64", fill=0)
    try:
        granny.parallel_for(2, _record, shared={"hosts": hosts}, num_threads=2)
        return [int(h) for h in hosts.array]
    finally:
        close_teams()
        hosts.unlink()


def one_thread_job(release: str) -> str:
    import os
    import time

    while not os.path.exists(release):
        time.sleep(0.01)
    return os.environ["GRANNY_HOST_ID"]


def _index() -> int:
    import os

    return int(os.environ["GRANNY_INDEX"])


def running(admin: granny.Client, app_id: str) -> bool:
    try:
        rows = admin.query("app", app_id)["granules"]
    except granny.GrannyError as e:  # its Submit is still on its way
        if "not found" not in str(e):
            raise
        return False
    return bool(rows) and all(r["state"] == "running" for r in rows)


def test_an_app_arriving_before_a_team_is_leased_does_not_take_its_slot(two_hosts: LocalCluster,
                                                                       tmp_path: Path) -> None:
    fork, end = tmp_path / "fork", tmp_path / "end"
    address, token = two_hosts.address, two_hosts.token
    with (granny.connect(address, token) as admin, granny.connect(address, token, app_id="omp-a") as a,
          granny.connect(address, token, app_id="one-b") as b):
        assert admin.query("policy")["policy"] == "bin-pack"
        job_a = a.submit_gang(omp_job, 1, (str(fork),), team=1)
        wait_for(lambda: running(admin, "omp-a"), timeout=60, what="job A's thread 0 running")
        # job B comes while A's thread 0 has not leased its team yet: bin-pack's fullest host that holds it is
        # A's, whose free slot is A's team's
        job_b = b.submit_gang(one_thread_job, 1, (str(end),))
        wait_for(lambda: running(admin, "one-b"), timeout=60, what="job B running")
        fork.touch()
        threads = job_a.result(timeout=120)[0]
        end.touch()
        b_host = job_b.result(timeout=60)[0]
    assert threads[0] == threads[1], f"job A's team split across hosts: {threads}"
    assert b_host != f"local{threads[0]}"


def _journaled_hold(data_dir: Path, app_id: str) -> dict[str, int]:
    """The hosts of ``app_id``'s held slots as its planner journaled them (planner/holds.py)."""
    db = sqlite3.connect(data_dir / "journal.sqlite")
    try:
        rows = db.execute("SELECT value FROM settings WHERE key=?", (f"hold:{app_id}",)).fetchall()
    finally:
        db.close()
    return json.loads(rows[0][0])["hosts"] if rows and rows[0][0] else {}


def test_a_team_hold_survives_a_planner_kill9(two_hosts: LocalCluster, tmp_path: Path) -> None:
    """The hold is journaled: after kill -9 and a restart, an app that arrives before the team's lease
    still cannot take the held slot, and the team's lease is placed on it (beside thread 0 when both fit
    on one host, as they do on settled granules)."""
    from .test_recovery import restart_planner

    fork, end = tmp_path / "fork", tmp_path / "end"
    address, token = two_hosts.address, two_hosts.token
    with granny.connect(address, token, app_id="omp-a") as a:
        with granny.connect(address, token) as admin:
            # a warm-up that takes every slot, so that A's thread 0 is placed on settled granules
            assert admin.submit_gang(_index, 4).result(timeout=60) == [0, 1, 2, 3]
            wait_for(lambda: [h.idle_granules for h in admin.hosts()] == [2, 2], timeout=60, what="warm granules back")
            job_a = a.submit_gang(omp_job, 1, (str(fork),), team=1)
            wait_for(lambda: running(admin, "omp-a"), timeout=60, what="job A's thread 0 running")
            wait_for(lambda: _journaled_hold(two_hosts.data_dir, "omp-a"), timeout=60, what="the hold journaled")
            held = _journaled_hold(two_hosts.data_dir, "omp-a")
            thread0 = admin.query("app", "omp-a")["granules"][0]["host_id"]
        restart_planner(two_hosts)
        with granny.connect(address, token) as admin, granny.connect(address, token, app_id="one-b") as b:
            wait_for(lambda: sorted(h.host_id for h in admin.hosts() if h.alive) == ["local1", "local2"],
                     timeout=60, what="both workers back")
            wait_for(lambda: running(admin, "omp-a"), timeout=60, what="job A's thread 0 reported running again")
            # B comes while A's thread 0 has not leased its team yet: bin-pack's fullest host that holds it
            # is thread 0's, whose free slot, when the team fits there, is the held one
            job_b = b.submit_gang(one_thread_job, 1, (str(end),))
            wait_for(lambda: running(admin, "one-b"), timeout=60, what="job B running")
            fork.touch()
            job_a.result(timeout=120)
            end.touch()
            b_host = job_b.result(timeout=60)[0]
            rows = admin.query("app", "omp-a")["granules"]
    team = [r["host_id"] for r in rows if r["req_id"] != rows[0]["req_id"]]
    assert held == {team[0]: 1}, f"the team's lease was not placed on its held slot {held}: {rows}"
    if held == {thread0: 1}:
        assert b_host != thread0, "job B took the slot held for A's team"
