"""granny across testbed hosts: placement over several hosts, bin-packing, a host cut off from the
network declared dead, and nothing left behind afterwards."""

from __future__ import annotations

import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import granny
from granny.testbed import Testbed
from granny.testbed.netns import namespaces, pids_in
from granny.testbed.procs import alive, marked

from .conftest import PREFIX, SUBNET, require_root, wait_for


def holder(release: str) -> Callable[[], str]:
    """A task (pickled by value) that occupies its slot until `release` exists, then names its host."""

    def hold() -> str:
        import os
        import time

        deadline = time.monotonic() + 120
        while not os.path.exists(release) and time.monotonic() < deadline:
            time.sleep(0.01)  # polling with a deadline
        return os.environ["GRANNY_HOST_ID"]

    return hold


@pytest.fixture
def client(testbed: Testbed) -> Iterator[granny.Client]:
    c = granny.connect(address=testbed.address, token=testbed.token)
    try:
        yield c
    finally:
        c.close()


def busy_hosts(client: granny.Client, n: int) -> dict[str, int]:
    """Wait until n slots are in use; returns host -> slots used."""
    def used() -> dict[str, int] | None:
        hosts = {h.host_id: h.used for h in client.hosts() if h.used}
        return hosts if sum(hosts.values()) >= n else None

    return wait_for(used, timeout=30, what=f"{n} slots in use")


@pytest.mark.testbed(hosts=3, slots=1)
def test_workers_register_from_every_host(testbed: Testbed, client: granny.Client) -> None:
    hosts = wait_for(lambda: [h for h in client.hosts() if h.alive] if len(client.hosts()) == 3 else None,
                     what="3 live hosts")
    assert sorted(h.host_id for h in hosts) == ["h1", "h2", "h3"]
    assert all(h.slots == 1 for h in hosts)
    assert [h.name for h in testbed.hosts] == ["h1", "h2", "h3"]


@pytest.mark.testbed(hosts=3, slots=1, latency="1ms")
def test_functions_are_placed_across_three_hosts(client: granny.Client, tmp_path: Path) -> None:
    release = tmp_path / "release"
    futures = [client.submit(holder(str(release))) for _ in range(3)]
    assert busy_hosts(client, 3) == {"h1": 1, "h2": 1, "h3": 1}
    release.touch()
    assert sorted(f.result(timeout=60) for f in futures) == ["h1", "h2", "h3"]


@pytest.mark.testbed(hosts=3, slots=2)
def test_bin_pack_uses_the_fewest_hosts(client: granny.Client, tmp_path: Path) -> None:
    release = tmp_path / "release"
    first = [client.submit(holder(str(release))) for _ in range(2)]
    assert list(busy_hosts(client, 2).values()) == [2]  # both on one host
    more = [client.submit(holder(str(release))) for _ in range(2)]
    assert sorted(busy_hosts(client, 4).values()) == [2, 2]  # 4 tasks fill two hosts, not three
    release.touch()
    hosts = [f.result(timeout=60) for f in first + more]
    assert len(set(hosts)) == 2


@pytest.mark.testbed(hosts=3, slots=1, heartbeat_timeout=2.0)
def test_cut_off_host_is_declared_dead_and_its_granule_fails(testbed: Testbed, client: granny.Client,
                                                             tmp_path: Path) -> None:
    release = tmp_path / "never"
    fut = client.submit(holder(str(release)))
    (victim,) = busy_hosts(client, 1)
    started = time.monotonic()
    testbed.cut(victim)
    with pytest.raises(granny.HostDiedError, match=f"host {victim}\\b"):
        fut.result(timeout=30)
    assert time.monotonic() - started < 2.0 + 10.0  # within the heartbeat timeout, plus slack
    status = {h.host_id: h.alive for h in client.hosts()}
    assert status[victim] is False
    assert sum(status.values()) == 2
    # the survivors still run work
    others = [client.submit(holder(str(tmp_path / "go"))) for _ in range(2)]
    (tmp_path / "go").touch()
    assert victim not in {f.result(timeout=60) for f in others}


@pytest.mark.testbed(hosts=2, slots=1)
def test_down_leaves_no_processes_or_namespaces(testbed: Testbed, client: granny.Client) -> None:
    assert client.submit(pow, 2, 8).result(timeout=60) == 256
    pids = [p.pid for p in testbed.state.procs] + pids_in(namespaces(PREFIX))
    assert len(pids) >= 4  # planner, delay stage, two workers (and their granules)
    client.close()
    testbed.down()
    assert namespaces(PREFIX) == []
    assert marked(testbed.state_dir) == []
    assert [p for p in pids if alive(p)] == []
    assert not Path(testbed.state_dir, "state.json").exists()


def test_cli_up_ends_with_exports_that_connect(tmp_path: Path) -> None:
    require_root()
    base = [sys.executable, "-m", "granny.testbed", "--state-dir", str(tmp_path / "cli")]
    try:
        up = subprocess.run([*base, "up", "--hosts", "2", "--prefix", PREFIX, "--subnet", SUBNET],
                            capture_output=True, text=True, timeout=120)
        assert up.returncode == 0, up.stderr
        last = up.stdout.splitlines()[-2:]
        assert last[0].startswith("export GRANNY_ADDRESS=") and last[1].startswith("export GRANNY_TOKEN=")
        env = dict(shlex.split(line.removeprefix("export "))[0].split("=", 1) for line in last)
        with granny.connect(address=env["GRANNY_ADDRESS"], token=env["GRANNY_TOKEN"]) as client:
            assert client.submit(pow, 3, 3).result(timeout=60) == 27
            assert sorted(h.host_id for h in client.hosts()) == ["h1", "h2"]
    finally:
        down = subprocess.run([*base, "down"], capture_output=True, text=True, timeout=60)
    assert down.returncode == 0, down.stderr
    assert namespaces(PREFIX) == []
