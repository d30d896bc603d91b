"""A request's placement options on real processes: ``options(hosts=..., tenant=..., migrate=...)`` and
``granny run --hosts/--tenant/--no-migrate`` reach the planner's policy; the migration query answers."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import granny
from granny.cluster import LocalCluster
from granny.errors import ConfigError, GrannyError

from ..polling import wait_for

HOSTS = ("local1", "local2")


@pytest.fixture(scope="module")
def two_hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    c = LocalCluster(workers=2, slots=2, data_dir=tmp_path_factory.mktemp("placement") / "data", granule_user="same")
    try:
        with granny.connect(c.address, c.token) as probe:
            wait_for(lambda: sorted(h.host_id for h in probe.hosts() if h.idle_granules == 2) == list(HOSTS),
                     timeout=60, what="two hosts with 2 warm granules each")
        yield c
    finally:
        c.stop()


def where() -> str:
    import os

    return os.environ["GRANNY_HOST_ID"]


def rank_host(comm: Any) -> tuple[int, str]:
    import os

    return comm.Get_rank(), os.environ["GRANNY_HOST_ID"]


def test_a_pinned_call_runs_on_the_host_it_names(two_hosts: LocalCluster) -> None:
    with granny.connect(two_hosts.address, two_hosts.token) as client:
        for host in (*HOSTS, *reversed(HOSTS), *HOSTS):
            future = client.options(hosts=f"{host}:1", tenant="t1").submit(where)
            assert future.result(timeout=60) == host
        ranks = client.options(hosts=[("local2", 1), ("local1", 1)], migrate=False).run_mpi(rank_host, 2, timeout=60)
        assert ranks == [(0, "local2"), (1, "local1")]  # granules 0.. on the first host named


def test_a_bad_pin_fails_in_the_client_before_anything_is_sent(two_hosts: LocalCluster) -> None:
    with granny.connect(two_hosts.address, two_hosts.token) as client:
        for bad in ("local1", "local1:x", "local1:0", ":2", [("local1", "two")]):
            with pytest.raises(ConfigError):
                client.options(hosts=bad)  # type: ignore[arg-type]
        with pytest.raises(ConfigError, match="places 2 granule"):
            client.options(hosts="local1:1,local2:1").submit(where)
        assert client.app_id not in [a["app_id"] for a in client.apps()]  # nothing reached the planner
        unknown = client.options(hosts="elsewhere:1").submit(where)
        with pytest.raises(GrannyError, match="elsewhere"):
            unknown.result(timeout=60)


def test_the_migration_query_answers_for_a_running_app(two_hosts: LocalCluster, tmp_path: Path) -> None:
    release = tmp_path / "release"

    def hold(path: str) -> str:
        import os
        import time

        while not os.path.exists(path):
            time.sleep(0.01)
        return os.environ["GRANNY_HOST_ID"]

    with granny.connect(two_hosts.address, two_hosts.token) as client:
        future = client.options(hosts="local1:1").submit(hold, str(release))
        try:
            wait_for(lambda: client.query("app", client.app_id)["tasks"]["running"] == 1, what="the call to start")
            answer = client.query("migration", client.app_id)
            assert answer["decision"] == "stay", answer  # one granule: nothing to gain anywhere
            with pytest.raises(GrannyError, match="not found"):
                client.query("migration", "no-such-app")
            status = cli(two_hosts, "status", client.app_id)
            assert status.returncode == 0 and "migration: stays" in status.stderr + status.stdout, status
        finally:
            release.touch()
        assert future.result(timeout=60) == "local1"


def cli(cluster: LocalCluster, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRANNY_")}
    env.update(GRANNY_ADDRESS=cluster.address, GRANNY_TOKEN=cluster.token)
    return subprocess.run([sys.executable, "-m", "granny", *argv], env=env, capture_output=True, text=True, timeout=120)


def test_granny_run_hosts_pins_the_ranks_and_a_bad_value_exits_2(two_hosts: LocalCluster, tmp_path: Path) -> None:
    script = tmp_path / "where.py"
    script.write_text("import os\nprint(os.environ['GRANNY_HOST_ID'])\n")
    ran = cli(two_hosts, "run", "-n", "2", "--hosts", "local2:2", "--tenant", "t9", "--no-migrate", str(script))
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.split() == ["local2", "local2"]
    for bad, why in (("local2:two", "--hosts"), ("local2", "HOST:COUNT"), ("local2:1", "places 1 granule")):
        out = cli(two_hosts, "run", "-n", "2", "--hosts", bad, str(script))
        assert out.returncode == 2, (bad, out.stdout, out.stderr)
        assert why in out.stderr, (bad, out.stderr)
    sub = cli(two_hosts, "submit", "-n", "2", "--hosts", "local1:3", str(script))
    assert sub.returncode == 2 and "places 3 granule" in sub.stderr, sub.stderr
