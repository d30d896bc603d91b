"""Evictions on the namespace testbed: the end of a notice really stops that host's worker process, and a
topology's ``evictions`` section evicts hosts on a schedule and brings them back (a new worker)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

import granny
from granny.testbed import Testbed
from granny.testbed.evictions import EvictionPlan
from granny.testbed.procs import alive
from granny.testbed.topology import Topology

from .conftest import wait_for
from .test_testbed_granny import holder


def row(client: granny.Client, name: str) -> granny.HostInfo:
    return next(h for h in client.hosts() if h.host_id == name)


@pytest.mark.testbed(hosts=2, slots=1, heartbeat_timeout=2.0)
def test_the_end_of_a_notice_stops_the_hosts_worker(testbed: Testbed, tmp_path: Path) -> None:
    with granny.connect(address=testbed.address, token=testbed.token) as client:
        stuck = client.options(hosts="h2:1").submit(holder(str(tmp_path / "never")))
        wait_for(lambda: row(client, "h2").used == 1, what="the call to run on h2")
        worker = testbed.pid("worker-h2")
        assert client.query("evict", "h2:1s")["evicting_in"] > 0
        with pytest.raises(granny.HostEvictedError, match=r"host h2 was evicted \(spot notice given 1s before\)"):
            stuck.result(timeout=30)
        wait_for(lambda: not alive(worker), timeout=30, what="h2's worker process to exit")
        assert "stopping: host h2 was evicted" in Path(testbed.state.proc("worker-h2").log).read_text()  # type: ignore[union-attr]
        assert row(client, "h2").evicted and client.submit(holder(str(tmp_path))).result(timeout=30) == "h1"


def test_a_topology_evicts_hosts_on_a_schedule_and_brings_them_back(testbed_factory: Callable[..., Testbed]) -> None:
    plan = EvictionPlan(every=30.0, away=2.0, hosts=1, grace=0.5, start=1.0)  # h1 at 1 s, back at 3.5 s
    tb = testbed_factory(topology=Topology(hosts=["h1", "h2"], slots=1, evictions=plan), heartbeat_timeout=2.0)
    first = tb.pid("worker-h1")
    with granny.connect(address=tb.address, token=tb.token) as client:
        wait_for(lambda: not alive(first), timeout=30, what="h1's worker stopped by its eviction")
        wait_for(lambda: tb.pid("worker-h1") != first, timeout=30, what="the evictor to restart h1's worker")
        back = wait_for(lambda: (h := row(client, "h1")).alive and h.idle_granules == 1 and h, timeout=60,
                        what="h1 back with its granule")
        assert back.incarnation == 2 and not back.evicted and back.evicting_in is None
        assert client.options(hosts="h1:1").submit(holder("/")).result(timeout=30) == "h1"
    path = Path(tb.state.state_dir, "logs", "evictor.log")
    # (its restore step may come a poll after the new worker registered: wait for its line)
    log = wait_for(lambda: "restore h1" in (text := path.read_text()) and text, timeout=30, what="the restore step")
    assert "t=1s evict h1: evicting in 0.5s" in log, log
    # Its new worker started as soon as h1 was taken back (a replacement VM booting while the host is away),
    # and registered when h1 was due back.
    assert re.search(r"t=(1\.[5-9]|[23]\.\d)s boot h1: a new worker started ahead as pid \d+; it registers at t=3.5s", log), log
    assert re.search(r"t=3.5s restore h1: notice lifted; its worker pid \d+ was started ahead", log), log


@pytest.mark.testbed(hosts=2, slots=1, heartbeat_timeout=2.0)
def test_a_worker_cut_off_at_the_deadline_is_stopped_when_it_comes_back(testbed: Testbed) -> None:
    worker = testbed.pid("worker-h2")
    log = Path(testbed.state.proc("worker-h2").log)  # type: ignore[union-attr]
    with granny.connect(address=testbed.address, token=testbed.token) as client:
        testbed.cut("h2")
        try:
            assert client.query("evict", "h2:0")["evicted"]  # the order to stop goes nowhere
            wait_for(lambda: "lost the planner" in log.read_text(), timeout=30, what="h2's worker to give up its link")
        finally:
            testbed.restore("h2")
        wait_for(lambda: not alive(worker), timeout=30, what="h2's worker to exit once it reached the planner again")
        text = log.read_text()
        assert "stopping: host h2 was evicted" in text and text.index("lost the planner") < text.index("stopping")
        assert not row(client, "h2").alive and row(client, "h2").incarnation == 1
