"""The Python API: ``with Testbed(hosts=3, latency="5ms") as tb: ...``.

A Testbed is a handle on the state directory: ``up()`` builds the testbed, ``attach()`` picks up
one that is already running (e.g. made by ``granny testbed up``), every change is applied to the
live network at once, and ``down()`` removes everything.
"""

from __future__ import annotations

import ipaddress
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import TestbedError
from . import lifecycle, state
from .netns import Layout, in_netns
from .state import DEFAULT_STATE_DIR, State
from .topology import PLANNER, Event, LinkSpec, Topology, check_names, host_names, load_topology


@dataclass(frozen=True)
class Host:
    name: str  # also the worker's --host-id
    ns: str  # network namespace
    ip: str


def make_topology(hosts: int | list[str] | None = None, *, slots: int | None = None,
                  topology: Topology | str | Path | None = None, **link: Any) -> Topology:
    """A topology from a file or object, with the host count, slots and default link settings
    (latency, jitter, bandwidth, loss: "5ms", "100mbit", "0.1%") given here taking precedence."""
    if isinstance(topology, Topology):
        topo = Topology.from_dict(topology.to_dict())
    elif topology is not None:
        topo = load_topology(topology)
    else:
        topo = Topology(hosts=host_names(2))
    if hosts is not None:
        topo.hosts = host_names(hosts) if isinstance(hosts, int) else list(hosts)
        check_names(topo.hosts)
        topo.check_target(tuple(n for e in topo.schedule for n in e.target), "schedule")
    if slots is not None:
        topo.slots = slots
    given = {k: v for k, v in link.items() if v is not None}
    topo.defaults = LinkSpec.parse(given, "link settings").over(topo.defaults)
    return topo


def parse_subnet(subnet: str) -> str:
    """"10.77.0.0/24" -> "10.77.0" (the delay stage tells endpoints apart by the last octet)."""
    try:
        net = ipaddress.IPv4Network(subnet)
    except ValueError as exc:
        raise TestbedError(f"--subnet {subnet!r}: {exc}") from None
    if net.prefixlen != 24 or not net.is_private:
        raise TestbedError(f"--subnet must be a private /24 such as 10.77.0.0/24, got {subnet}")
    return str(net.network_address).rsplit(".", 1)[0]


class Testbed:
    """N hosts (network namespaces) with a worker each, a planner, and emulated links."""

    __test__ = False  # not a pytest test class

    def __init__(self, hosts: int | list[str] | None = None, *, slots: int | None = None,
                 topology: Topology | str | Path | None = None, latency: str | float | None = None,
                 jitter: str | float | None = None, bandwidth: str | int | None = None,
                 loss: str | float | None = None, granny: bool = True, data_dir: str | Path | None = None,
                 state_dir: str | Path = DEFAULT_STATE_DIR, prefix: str = "gty", subnet: str = "10.77.0.0/24",
                 port: int = 0, heartbeat_timeout: float | None = None, ready_timeout: float = 60.0) -> None:
        self.state_dir = str(Path(state_dir).resolve())
        topo = make_topology(hosts, slots=slots, topology=topology, latency=latency, jitter=jitter,
                             bandwidth=bandwidth, loss=loss)
        if not prefix.isalnum() or len(prefix) > 6:
            raise TestbedError(f"prefix must be 1-6 letters/digits, got {prefix!r}")
        self._state = State(prefix=prefix, net=parse_subnet(subnet), state_dir=self.state_dir, topology=topo,
                            granny=granny, data_dir=str(Path(data_dir or Path(self.state_dir) / "planner").resolve()))
        self._port, self._heartbeat_timeout, self._ready_timeout = port, heartbeat_timeout, ready_timeout
        self._wipe_data = data_dir is None  # our default data dir starts empty on every `up`

    @classmethod
    def attach(cls, state_dir: str | Path = DEFAULT_STATE_DIR) -> Testbed:
        """A handle on the testbed already running with this state directory."""
        st = state.load(state_dir)
        if st is None:
            raise TestbedError(f"no testbed is up (no state in {state_dir}); run `granny testbed up`")
        tb = cls.__new__(cls)
        tb.state_dir, tb._state = st.state_dir, st
        tb._port, tb._heartbeat_timeout, tb._ready_timeout, tb._wipe_data = 0, None, 60.0, False
        return tb

    # lifecycle ---------------------------------------------------------------------------------
    def up(self, log: lifecycle.Log = lifecycle._quiet) -> Testbed:
        if not self._state.granny:
            self._state.data_dir = ""
        lifecycle.up(self._state, port=self._port, heartbeat_timeout=self._heartbeat_timeout,
                     ready_timeout=self._ready_timeout, wipe_data=self._wipe_data, log=log)
        return self

    def down(self) -> None:
        lifecycle.teardown(self.state_dir, self._state.prefix)

    def __enter__(self) -> Testbed:
        return self.up()

    def __exit__(self, *exc: object) -> None:
        self.down()

    # what is there -----------------------------------------------------------------------------
    @property
    def state(self) -> State:
        """The current recorded state (re-read: the scheduler may have changed links)."""
        return state.load(self.state_dir) or self._state

    @property
    def layout(self) -> Layout:
        return Layout(self._state.prefix, self._state.net)

    @property
    def topology(self) -> Topology:
        return self.state.topology

    @property
    def address(self) -> str:
        return self._state.address

    @property
    def token(self) -> str:
        return self._state.token

    @property
    def planner_ip(self) -> str:
        return self.layout.ip(PLANNER, self._state.topology.hosts)

    @property
    def hosts(self) -> list[Host]:
        names = self._state.topology.hosts
        return [Host(name=h, ns=self.layout.ns(h), ip=self.layout.ip(h, names)) for h in names]

    def host(self, name: str) -> Host:
        for h in self.hosts:
            if h.name == name:
                return h
        raise TestbedError(f"no host {name!r}; hosts are {', '.join(h.name for h in self.hosts)}")

    def pid(self, name: str) -> int:
        """Pid of a testbed process: "planner", "delayd", "scheduler" or "worker-<host>"."""
        proc = self.state.proc(name)
        if proc is None:
            raise TestbedError(f"the testbed has no process {name!r}")
        return proc.pid

    # changing links ----------------------------------------------------------------------------
    def set(self, *endpoints: str, **settings: Any) -> None:
        """Change settings now: of the pair link between two endpoints, the access link of one,
        or the defaults (no endpoint).  settings: latency, jitter, bandwidth, loss, cut."""
        spec = LinkSpec.parse({k: v for k, v in settings.items() if v is not None}, "set")
        self._state = lifecycle.change(self.state_dir, Event(at=0.0, target=tuple(endpoints), spec=spec))

    def cut(self, *endpoints: str) -> None:
        """Cut a host off (one name) or partition a pair (two names): all their packets drop."""
        self.set(*endpoints, cut=True)

    def restore(self, *endpoints: str) -> None:
        self.set(*endpoints, cut=False)

    # running things in hosts -------------------------------------------------------------------
    def command(self, host: str, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.host(host).ns, *argv]

    def run(self, host: str, argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[Any]:
        return subprocess.run(self.command(host, argv), **kwargs)

    def popen(self, host: str, argv: list[str], **kwargs: Any) -> subprocess.Popen[Any]:
        return subprocess.Popen(self.command(host, argv), **kwargs)

    def socket(self, host: str, family: int = socket.AF_INET, type: int = socket.SOCK_STREAM,
               proto: int = 0) -> socket.socket:
        """A socket that lives in host's network namespace (usable from any thread)."""
        ns = self.layout.ns(host) if host != PLANNER else None
        if ns is None:
            return socket.socket(family, type, proto)
        return in_netns(ns, lambda: socket.socket(family, type, proto))
