"""The testbed's eviction plan (pure): which host is evicted when, and when it comes back."""

from __future__ import annotations

from pathlib import Path

import pytest

from granny.errors import TestbedError
from granny.testbed.evictions import EvictionPlan, Step, steps
from granny.testbed.topology import Topology, load_topology


def test_a_quarter_of_the_hosts_every_minute_for_a_minute_round_robin() -> None:
    plan = EvictionPlan(every=60.0, away=60.0, fraction=0.25, grace=10.0)
    hosts = ["h1", "h2", "h3", "h4"]
    got = [(s.at, s.host, s.action) for s in steps(plan, hosts, 200.0)]
    assert got == [(60.0, "h1", "evict"), (120.0, "h2", "evict"), (130.0, "h1", "restore"),
                   (180.0, "h3", "evict"), (190.0, "h2", "restore")]


def test_a_host_that_is_still_away_is_skipped_and_the_plan_is_stable_as_time_goes_on() -> None:
    plan = EvictionPlan(every=10.0, away=25.0, hosts=1, start=0.0)
    got = steps(plan, ["a", "b"], 40.0)
    evictions = [(s.at, s.host) for s in got if s.action == "evict"]
    assert evictions == [(0.0, "a"), (10.0, "b"), (30.0, "a"), (40.0, "b")]  # at 20 both are away
    assert Step(25.0, "a", "restore") in got and Step(35.0, "b", "restore") in got
    for until in (5.0, 12.0, 26.0, 33.0):  # the runner applies the new tail of a longer plan each poll
        assert steps(plan, ["a", "b"], until) == [s for s in got if s.at <= until]


def test_the_evictions_section_of_a_topology_file(tmp_path: Path) -> None:
    path = tmp_path / "topo.yaml"
    path.write_text("hosts: 4\nevictions:\n  every: 60s\n  fraction: 0.25\n  for: 1m\n  grace: 0\n")
    topo = load_topology(path)
    assert topo.evictions == EvictionPlan(every=60.0, away=60.0, fraction=0.25, grace=0.0)
    assert Topology.from_dict(topo.to_dict()).evictions == topo.evictions  # through the state file
    for bad in ("every: 60s\n  for: 1m", "every: 60s\n  for: 1m\n  fraction: 2", "every: 1m\n  hosts: 1\n  for: x",
                "every: 1m\n  hosts: 1\n  fraction: 0.5\n  for: 1m", "every: 1m\n  hosts: 1\n  for: 1m\n  when: now"):
        path.write_text(f"hosts: 2\nevictions:\n  {bad}\n")
        with pytest.raises(TestbedError, match="evictions"):
            load_topology(path)
