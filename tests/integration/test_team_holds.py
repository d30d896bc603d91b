"""An OpenMP-style job's team on real processes (planner/holds.py): a job submitted with ``team=k`` gets its
team's slots held from the moment thread 0 is placed, so an app that arrives before the team's lease
cannot take them (bin-pack would put it on exactly that host), and the team runs beside thread 0."""

from __future__ import annotations

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


def running(admin: granny.Client, app_id: str) -> bool:
    rows = admin.query("app", app_id)["granules"]
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
