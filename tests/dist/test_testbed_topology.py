"""The testbed's data model: units, topology files, precedence, and what tc and the delay stage get.
Pure functions: these need no root."""

from __future__ import annotations

from pathlib import Path

import pytest

from granny.errors import ConfigError
from granny.testbed import LinkSpec, TestbedError, load_topology, make_topology
from granny.testbed.netns import Layout
from granny.testbed.shaping import delay_table, router_commands, uplink_commands
from granny.testbed.topology import Event, Topology
from granny.testbed.units import parse_duration, parse_loss, parse_rate

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "topology.yaml"


def test_units() -> None:
    assert parse_duration("5ms") == pytest.approx(0.005)
    assert parse_duration("250us") == pytest.approx(250e-6)
    assert parse_duration("1.5s") == 1.5 and parse_duration(2) == 2.0
    assert parse_rate("100mbit") == 100_000_000 and parse_rate("1gbit") == 10**9
    assert parse_rate("10mbps") == 80_000_000  # tc: bps is bytes per second
    assert parse_rate("unlimited") == 0
    assert parse_loss("0.1%") == pytest.approx(0.001) and parse_loss(0.2) == 0.2
    for bad in (lambda: parse_duration("fast"), lambda: parse_rate("lots"), lambda: parse_loss("200%"),
                lambda: parse_duration("-1ms")):
        with pytest.raises(ConfigError):
            bad()


def test_example_topology_loads() -> None:
    topo = load_topology(EXAMPLE)
    assert topo.hosts == ["h1", "h2", "h3", "h4"] and topo.slots == 2
    assert topo.path("h1", "h2").latency == pytest.approx(100e-6)  # exact pair beats defaults
    assert topo.path("h2", "h1").latency == pytest.approx(100e-6)
    assert topo.path("h1", "h3").latency == pytest.approx(0.010)  # "h3 *" wildcard
    assert topo.path("h3", "h4").latency == pytest.approx(0.012)  # plus h4's 2 ms access link
    assert topo.path("h3", "h4").loss == pytest.approx(0.001)
    assert topo.pair("h1", "h4").bandwidth == 10**9 and topo.access_of("h4").bandwidth == 100_000_000
    assert [e.at for e in topo.schedule] == [30, 60, 90, 120]
    assert topo.schedule[1] == Event(at=60.0, target=("h3",), spec=LinkSpec(cut=True))


def test_flags_override_the_file_and_state_round_trips() -> None:
    topo = make_topology(3, topology=EXAMPLE, latency="7ms", loss="1%")
    assert topo.hosts == ["h1", "h2", "h3"]
    assert topo.path("h1", "h3").latency == pytest.approx(0.010)  # the file's pair entry still wins
    assert topo.path("h2", "planner").latency == pytest.approx(0.007)
    assert Topology.from_dict(topo.to_dict()) == topo


def test_changes_cut_and_restore() -> None:
    topo = make_topology(2, latency="1ms")
    topo.apply(Event(0, ("h2",), LinkSpec(cut=True)))
    assert topo.path("h1", "h2").cut and topo.path("planner", "h2").cut and not topo.path("h1", "planner").cut
    topo.apply(Event(0, ("h2",), LinkSpec(cut=False)))
    assert not topo.path("h1", "h2").cut
    topo.apply(Event(0, (), LinkSpec(latency=0.02)))
    assert topo.path("h1", "h2").latency == pytest.approx(0.02)


@pytest.mark.parametrize("text, message", [
    ("hosts: [planner]", "must be 1-8"),
    ("links: [{between: [h1, h9], latency: 1ms}]", "unknown endpoint 'h9'"),
    ("schedule: [{link: [h1, h2], latency: 1ms}]", "missing 'at'"),
    ("schedule: [{at: 1s, host: h1}]", "nothing to change"),
    ("defaults: {latency: 1ms, colour: red}", "unknown setting"),
    ("routers: 2", "unknown section"),
])
def test_bad_topologies_are_explained(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(text)
    with pytest.raises(TestbedError, match=message):
        load_topology(path)


def test_delay_table_and_tc_commands() -> None:
    layout = Layout("gty", "10.77.0")
    topo = make_topology(2, latency="5ms", jitter="1ms", loss="0.5%")
    table = delay_table(layout, topo, gen=7).splitlines()
    assert table[0] == "gen 7"
    assert "11 12 5000000 1000000 5000000 0" in table and "1 11 5000000 1000000 5000000 0" in table
    assert router_commands(layout, None, topo) == []  # no bandwidth anywhere: no qdiscs
    shaped = make_topology(2, bandwidth="100mbit")
    cmds = router_commands(layout, None, shaped)
    assert "qdisc add dev h1 root handle 1: htb default ffff" in cmds
    assert any("classid 1:c htb rate 100000000bit ceil 100000000bit" in c for c in cmds)
    assert any("match ip src 10.77.0.12/32 flowid 1:c" in c for c in cmds)
    faster = make_topology(2, bandwidth="200mbit")
    change = router_commands(layout, shaped, faster)
    assert change and all(c.startswith(("class change", "qdisc replace")) for c in change)
    assert router_commands(layout, faster, faster) == []
    assert uplink_commands("eth0", None, 10**7)[0] == "qdisc add dev eth0 root handle 1: htb default 1"
    assert uplink_commands("eth0", 10**7, None) == ["qdisc del dev eth0 root"]
