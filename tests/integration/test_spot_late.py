"""The spot policy's ``spot-late`` option on real processes: a world on a host under notice keeps using it while
the other host has room, and moves off at its last migration point before the deadline, losing nothing."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import granny
from granny.cluster import LocalCluster

from ..polling import wait_for
from .test_migration import REPEAT

HOSTS = ("local1", "local2")


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


def used(client: granny.Client, host_id: str) -> int:
    (h,) = [h for h in client.hosts() if h.host_id == host_id]
    return h.used


def stays(client: granny.Client) -> int:
    return int(client.query("counters").get("migration", {}).get("stays", 0))


def test_under_spot_late_a_world_stays_on_the_host_under_notice_then_moves_at_its_last_point(
        cluster: LocalCluster, tmp_path: Path) -> None:
    script, flag = tmp_path / "repeat.py", tmp_path / "stop"
    script.write_text(REPEAT)
    lines: list[str] = []
    news: list[str] = []
    outcome: list[Any] = []
    with granny.connect(cluster.address, cluster.token) as client:
        client.query("set-policy", "spot-late")

        def run() -> None:
            outcome.extend(client.options(hosts="local2:2").run_script(
                str(script), 2, [str(flag)], mpi=True,
                on_log=lambda m: (news if m.stream == "granny" else lines).append(m.data)))

        runner = threading.Thread(target=run)
        runner.start()
        try:
            wait_for(lambda: used(client, "local2") == 2, what="the world to run on local2")
            wait_for(lambda: stays(client) > 0, timeout=60, what="the world's first migration point")
            before = stays(client)
            # A long notice: local1 has room for the world, but under spot-late it stays (asked at every point).
            assert client.query("evict", "local2:5m")["host_id"] == "local2"
            wait_for(lambda: stays(client) >= before + 20, timeout=60, what="the world to stay at 20 more points")
            assert used(client, "local2") == 2 and used(client, "local1") == 0 and news == []
            # A short one: its last point before the deadline comes within a second or two, and it moves then.
            assert client.query("evict", "local2:4")["host_id"] == "local2"
            wait_for(lambda: news, timeout=60, what="the world to move off at its last point")
            assert news[0].startswith("ranks 0-1 moved local2 -> local1"), news
        finally:
            flag.write_text("stop")
            runner.join(timeout=60)
        assert [r.status.value for r in outcome] == ["ok", "ok"], [r.message for r in outcome]
        assert lines == ["total 1 hosts ['local1']\n"]  # it finished where it moved, untouched by the eviction
        client.query("set-policy", "bin-pack")
