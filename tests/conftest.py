"""Shared fixtures: real planner and worker processes on 127.0.0.1, each started and stopped once."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import granny
from granny.cluster import LocalCluster
from granny.planner.capacity import HostViews

# Every in-process planner state checks its kept host views against a scratch build (see capacity.py).
HostViews.check = True


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    """A planner plus one worker with 2 slots, HTTP API on, short heartbeat timeout."""
    # Granules keep the test's (root) user: functions write into pytest's root-only tmp dirs.
    # tests/integration/test_granule_user.py covers the default, an unprivileged granule user.
    c = LocalCluster(workers=1, slots=2, data_dir=tmp_path / "data", heartbeat_timeout=2.0, granule_user="same")
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture
def client(cluster: LocalCluster) -> Iterator[granny.Client]:
    c = granny.connect(cluster.address, cluster.token)
    try:
        yield c
    finally:
        c.close()
