"""The testbed's network: namespaces, latency, bandwidth, loss, cuts, schedules, clean teardown.

Timing asserts are one-sided or loose on purpose (machines are noisy); benchmarks/testbed_accuracy.py
measures accuracy.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from granny.testbed import Testbed, probe
from granny.testbed.lifecycle import teardown
from granny.testbed.netns import Layout, build, namespaces
from granny.testbed.procs import MARK, alive, marked, spawn

from .conftest import PREFIX, SUBNET, require_root, wait_for

Factory = Callable[..., Testbed]


def net_only(factory: Factory, **kwargs: object) -> Testbed:
    return factory(granny=False, **{"hosts": 3, **kwargs})


def rtt(tb: Testbed, src: str, dst: str, count: int = 5) -> probe.PingResult:
    return probe.ping(tb.socket, src, tb.host(dst).ip, count=count, interval=0.02, timeout=2.0)


def nothing_left(tb: Testbed) -> list[str]:
    left = [f"namespace {ns}" for ns in namespaces(PREFIX)]
    if Path(f"/sys/class/net/{tb.layout.root_link}").exists():
        left.append(f"link {tb.layout.root_link}")
    left += [f"process {pid}" for pid in marked(tb.state_dir)]
    if Path(tb.state_dir, "state.json").exists():
        left.append("state file")
    return left


def test_up_makes_namespaces_and_down_removes_everything(testbed_factory: Factory) -> None:
    tb = net_only(testbed_factory)
    assert set(namespaces(PREFIX)) == {f"{PREFIX}-r", f"{PREFIX}-h1", f"{PREFIX}-h2", f"{PREFIX}-h3"}
    net = SUBNET.rsplit(".", 1)[0]
    assert [h.ip for h in tb.hosts] == [f"{net}.11", f"{net}.12", f"{net}.13"]
    delayd = tb.pid("delayd")
    assert alive(delayd)
    assert rtt(tb, "h1", "h2").received == 5
    assert rtt(tb, "h3", "h1").received == 5
    tb.down()
    assert nothing_left(tb) == []
    assert not alive(delayd)
    tb.down()  # idempotent
    assert nothing_left(tb) == []


def test_planner_endpoint_reachable_from_hosts(testbed_factory: Factory) -> None:
    tb = net_only(testbed_factory, hosts=2, latency="2ms")
    res = probe.ping(tb.socket, "h2", tb.planner_ip, count=3, interval=0.02)
    assert res.received == 3 and res.minimum >= 0.004 - 1e-4


def test_ping_rtt_is_at_least_twice_the_latency(testbed_factory: Factory) -> None:
    tb = net_only(testbed_factory, latency="5ms", jitter="1ms")
    res = rtt(tb, "h1", "h3", count=10)
    assert res.received == 10
    assert res.minimum >= 2 * (0.005 - 0.001) - 1e-4
    assert res.median < 0.5  # not wildly off either


def test_pair_override_only_affects_that_pair(testbed_factory: Factory) -> None:
    tb = net_only(testbed_factory, latency="1ms")
    tb.set("h1", "h2", latency="25ms")
    assert rtt(tb, "h1", "h2", count=3).minimum >= 0.05 - 1e-4
    assert rtt(tb, "h2", "h1", count=3).minimum >= 0.05 - 1e-4
    assert rtt(tb, "h1", "h3", count=3).median < 0.05


def test_bandwidth_shaping_cuts_throughput(testbed_factory: Factory) -> None:
    tb = net_only(testbed_factory, hosts=2)
    ip = tb.host("h2").ip
    unshaped = probe.throughput(tb.socket, "h1", "h2", ip, 100 << 20, timeout=60)
    tb.set(bandwidth="20mbit")
    shaped = probe.throughput(tb.socket, "h1", "h2", ip, 4 << 20, timeout=60)
    assert shaped < unshaped / 2
    assert shaped < 20e6 * 1.15
    assert shaped > 20e6 * 0.5


def test_access_bandwidth_caps_a_host(testbed_factory: Factory) -> None:
    tb = net_only(testbed_factory, hosts=2)
    tb.set("h1", bandwidth="20mbit")
    ip = tb.host("h2").ip
    assert probe.throughput(tb.socket, "h1", "h2", ip, 4 << 20, timeout=60) < 20e6 * 1.15  # h1's uplink
    assert probe.throughput(tb.socket, "h2", "h1", tb.host("h1").ip, 4 << 20, timeout=60) < 20e6 * 1.15


def test_loss_drops_about_the_configured_fraction(testbed_factory: Factory) -> None:
    tb = net_only(testbed_factory, hosts=2, loss="20%")
    lost = probe.udp_loss(tb.socket, "h1", "h2", tb.host("h2").ip, count=1000, rate_pps=4000)
    assert 0.1 < lost < 0.3


def test_cut_off_host_is_unreachable_until_restored(testbed_factory: Factory) -> None:
    tb = net_only(testbed_factory)
    tb.cut("h3")
    assert probe.ping(tb.socket, "h1", tb.host("h3").ip, count=2, timeout=0.3).received == 0
    assert probe.ping(tb.socket, "h3", tb.planner_ip, count=2, timeout=0.3).received == 0
    assert rtt(tb, "h1", "h2", count=2).received == 2
    tb.restore("h3")
    assert rtt(tb, "h1", "h3", count=2).received == 2


def test_partition_between_two_hosts(testbed_factory: Factory) -> None:
    tb = net_only(testbed_factory)
    tb.cut("h1", "h2")
    assert probe.ping(tb.socket, "h1", tb.host("h2").ip, count=2, timeout=0.3).received == 0
    assert rtt(tb, "h1", "h3", count=2).received == 2
    assert rtt(tb, "h2", "h3", count=2).received == 2


def test_schedule_changes_links_while_running(testbed_factory: Factory, tmp_path: Path) -> None:
    topo = tmp_path / "topology.yaml"
    topo.write_text(
        "hosts: 3\n"
        "defaults: {latency: 1ms}\n"
        "schedule:\n"
        "  - {at: 1s, link: [h1, h2], latency: 30ms}\n"
        "  - {at: 2s, host: h3, cut: true}\n"
    )
    tb = net_only(testbed_factory, topology=topo)
    assert tb.pid("scheduler")
    wait_for(lambda: rtt(tb, "h1", "h2", count=1).minimum >= 0.06 - 1e-4, timeout=15, what="h1-h2 at 30ms")
    wait_for(lambda: rtt(tb, "h1", "h3", count=1).received == 0, timeout=15, what="h3 cut off")
    wait_for(lambda: tb.state.schedule_done == 2, timeout=5, what="schedule recorded as done")
    assert rtt(tb, "h2", "h1", count=1).minimum >= 0.06 - 1e-4  # earlier change still in force


def test_down_cleans_up_after_a_crashed_up(tmp_path: Path) -> None:
    require_root()
    state_dir = str(tmp_path / "crashed")
    layout = Layout(PREFIX, SUBNET.rsplit(".", 1)[0])
    build(layout, ["h1", "h2"])  # namespaces, but no state file: as if `up` died half way
    stray = spawn("stray", [sys.executable, "-c", "import time; time.sleep(600)"], tmp_path / "stray.log",
                  state_dir, ns=layout.ns("h1"))
    orphan = spawn("orphan", [sys.executable, "-c", "import time; time.sleep(600)"], tmp_path / "orphan.log",
                   state_dir)
    assert len(namespaces(PREFIX)) == 3
    # Until the child has exec'd, /proc/PID/environ is still its parent's, without the marker.
    wait_for(lambda: orphan.pid in marked(state_dir), what="the orphan to carry its testbed marker")
    teardown(state_dir, PREFIX)
    assert namespaces(PREFIX) == []
    assert not Path(f"/sys/class/net/{layout.root_link}").exists()
    assert not alive(stray.pid) and not alive(orphan.pid)
    assert teardown(state_dir, PREFIX) == []


def test_cli_up_status_down(tmp_path: Path) -> None:
    require_root()
    state_dir = str(tmp_path / "cli")
    base = [sys.executable, "-m", "granny.testbed", "--state-dir", state_dir]
    env = {k: v for k, v in os.environ.items() if k != MARK}
    try:
        up = subprocess.run([*base, "up", "--hosts", "2", "--no-granny", "--latency", "1ms", "--prefix", PREFIX,
                             "--subnet", SUBNET], capture_output=True, text=True, timeout=60, env=env)
        assert up.returncode == 0, up.stderr
        assert up.stdout.splitlines()[-1] == f"export GRANNY_TESTBED_DIR={state_dir}"
        status = subprocess.run([*base, "status"], capture_output=True, text=True, timeout=30, env=env)
        assert status.returncode == 0 and "h1 - h2" in status.stdout, status.stderr
        ping = subprocess.run([*base, "ping", "h1", "h2", "--count", "2"], capture_output=True, text=True,
                              timeout=30, env=env)
        assert ping.returncode == 0 and "2 received" in ping.stdout
    finally:
        down = subprocess.run([*base, "down"], capture_output=True, text=True, timeout=30, env=env)
    assert down.returncode == 0, down.stderr
    assert namespaces(PREFIX) == []


@pytest.mark.parametrize("bad", ["--latency=fast", "--bandwidth=lots", "--loss=200%"])
def test_cli_rejects_bad_settings(tmp_path: Path, bad: str) -> None:
    require_root()
    out = subprocess.run([sys.executable, "-m", "granny.testbed", "--state-dir", str(tmp_path), "up", "--hosts",
                          "1", "--no-granny", "--prefix", PREFIX, bad], capture_output=True, text=True, timeout=30)
    assert out.returncode == 1
    assert "error:" in out.stderr and "Traceback" not in out.stderr
    assert namespaces(PREFIX) == []
