"""Fixtures for multi-host tests on the namespace testbed (granny.testbed). They need root.

    @pytest.mark.testbed(hosts=3, slots=2, heartbeat_timeout=2.0, latency="1ms")
    def test_something(testbed: Testbed) -> None:
        client = granny.connect(testbed.address, testbed.token)

The marker's keyword arguments go to granny.testbed.Testbed (granny=False: network only).  Tests
use their own name prefix, subnet and state directory, so a testbed someone brought up by hand
with `granny testbed up` is left alone.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from granny.testbed import Testbed

from ..polling import wait_for

__all__ = ["PREFIX", "SUBNET", "require_root", "wait_for"]

# Overridable so that two test runs on one machine (two checkouts) do not tear down each other's testbed.
PREFIX = os.environ.get("GRANNY_TEST_NETNS_PREFIX", "gtyt")
SUBNET = os.environ.get("GRANNY_TEST_SUBNET", "10.78.0.0/24")
T = TypeVar("T")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "testbed(**kwargs): options of the `testbed` fixture (granny.testbed.Testbed)")


def require_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("the testbed needs root (network namespaces, veth, tc): run tests/dist as root")
    for tool, package in (("ip", "iproute2"), ("tc", "iproute2"), ("gcc", "gcc")):
        if shutil.which(tool) is None:
            pytest.skip(f"the testbed needs `{tool}`: apt-get install {package}")
    if not os.path.exists("/dev/net/tun"):
        pytest.skip("the testbed needs /dev/net/tun (kernel TUN support)")
    if not _can_make_namespaces():
        pytest.skip("cannot create network namespaces here (no CAP_SYS_ADMIN / CAP_NET_ADMIN?)")


@functools.cache
def _can_make_namespaces() -> bool:
    probe = f"{PREFIX}-probe"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, check=False).returncode == 0
    subprocess.run(["ip", "netns", "del", probe], capture_output=True, check=False)
    return made


@pytest.fixture
def testbed_factory(tmp_path: Path) -> Iterator[Callable[..., Testbed]]:
    """Make testbeds with the test prefix/subnet; every one made is torn down at the end."""
    made: list[Testbed] = []

    def make(**kwargs: Any) -> Testbed:
        require_root()
        options: dict[str, Any] = {"prefix": PREFIX, "subnet": SUBNET, "state_dir": tmp_path / "testbed",
                                   "ready_timeout": 60.0, **kwargs}
        tb = Testbed(**options)
        made.append(tb)
        return tb.up()

    try:
        yield make
    finally:
        for tb in made:
            tb.down()


@pytest.fixture
def testbed(request: pytest.FixtureRequest, testbed_factory: Callable[..., Testbed]) -> Testbed:
    """A running testbed (.address, .token, .hosts); options from @pytest.mark.testbed(...)."""
    marker = request.node.get_closest_marker("testbed")
    kwargs: dict[str, Any] = {"hosts": 3, "slots": 1, "heartbeat_timeout": 2.0}
    if marker is not None:
        kwargs.update(marker.kwargs)
    tb = testbed_factory(**kwargs)
    if tb.address:
        wait_warm(tb)
    return tb


def wait_warm(tb: Testbed, timeout: float = 30.0) -> None:
    """Wait until the planner sees every host alive with all its warm granules connected.

    `up` returns once every worker is registered (its READY line); the worker's pre-forked granules
    connect a moment later, and until they do the planner sees less room on that host."""
    import granny

    slots = tb.topology.slots
    with granny.connect(address=tb.address, token=tb.token) as client:
        def warm() -> bool:
            hosts = client.hosts()
            return len(hosts) == len(tb.hosts) and all(
                h.alive and getattr(h, "idle_granules", slots) >= slots for h in hosts)

        wait_for(warm, timeout=timeout, what="every host's granules connected")
