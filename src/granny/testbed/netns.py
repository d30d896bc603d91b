"""Namespaces, veth links, addresses and routes of a testbed, and how to tear them all down.

Theory of operation
-------------------
Every endpoint (each host, plus the root namespace where the planner runs) is joined by one veth
pair to a router namespace ``<prefix>-r``.  The router names its side of each link after the
endpoint (``h1``, ``planner``).  Addresses are ``<net>.1`` (root/planner), ``<net>.10+i`` (host i)
and ``<net>.254`` (router).  No ARP is ever needed: MAC addresses are fixed and every neighbour
entry is permanent; each endpoint routes the whole /24 via the router ("onlink").

In the router, policy routing sends every packet that arrives from an endpoint link into the TUN
device ``dly`` (table 100); the delay stage (delayd.c) writes it back later and the main table then
forwards it to the destination link, whose egress qdisc does the bandwidth shaping (shaping.py).

Everything except the root's ``<prefix>0`` veth lives inside our namespaces, and that veth dies
with its router-side peer: deleting the namespaces is a complete clean-up.  Discovery is by the
name prefix, so a crashed ``up`` is cleaned the same way.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from ..errors import TestbedError
from .topology import PLANNER

T = TypeVar("T")
CLONE_NEWNET = 0x40000000
NETNS_DIR = Path("/run/netns")
TUN = "dly"
DELAY_TABLE = 100


@dataclass(frozen=True)
class Layout:
    """Names and addresses, all derived from a prefix and a /24."""

    prefix: str = "gty"
    net: str = "10.77.0"  # the first three octets of the /24

    @property
    def router_ns(self) -> str:
        return f"{self.prefix}-r"

    @property
    def root_link(self) -> str:
        return f"{self.prefix}0"

    @property
    def router_ip(self) -> str:
        return f"{self.net}.254"

    def ns(self, host: str) -> str:
        return f"{self.prefix}-{host}"

    def octet(self, endpoint: str, hosts: list[str]) -> int:
        return 1 if endpoint == PLANNER else 11 + hosts.index(endpoint)

    def ip(self, endpoint: str, hosts: list[str]) -> str:
        return f"{self.net}.{self.octet(endpoint, hosts)}"

    @staticmethod
    def mac(octet: int, router_side: bool) -> str:
        return f"02:77:00:00:{1 if router_side else 0:02x}:{octet:02x}"


def run_ip(args: list[str], batch: list[str], force: bool = False) -> None:
    """Run many ip(8) commands in one process ("ip [-n NS] -batch -")."""
    if not batch:
        return
    cmd = ["ip", *args, *(["-force"] if force else []), "-batch", "-"]
    proc = subprocess.run(cmd, input="\n".join(batch) + "\n", text=True, capture_output=True, check=False)
    if proc.returncode != 0 and not force:
        raise TestbedError(f"{' '.join(cmd)} failed: {proc.stderr.strip()}")


def build(layout: Layout, hosts: list[str]) -> None:
    """Create the namespaces, links, addresses, routes and the TUN device (not its reader)."""
    r, net = layout.router_ns, layout.net
    root = [f"netns add {r}"] + [f"netns add {layout.ns(h)}" for h in hosts]
    ends = [(h, layout.ns(h), "eth0") for h in hosts]
    for name, ns, inner in ends:
        o = layout.octet(name, hosts)
        root.append(f"link add {name} netns {r} address {layout.mac(o, True)} type veth "
                    f"peer {inner} netns {ns} address {layout.mac(o, False)}")
    root += [
        f"link add {layout.root_link} address {layout.mac(1, False)} type veth "
        f"peer {PLANNER} netns {r} address {layout.mac(1, True)}",
        *_endpoint_cmds(layout, layout.root_link, 1),
    ]
    run_ip([], root)
    router = ["link set lo up", f"addr add {layout.router_ip}/32 dev lo", f"tuntap add dev {TUN} mode tun",
              f"link set {TUN} up", f"route add default dev {TUN} table {DELAY_TABLE}"]
    for name in [PLANNER, *hosts]:
        o = layout.octet(name, hosts)
        router += [f"link set {name} up", f"route add {net}.{o}/32 dev {name}",
                   f"neigh replace {net}.{o} lladdr {layout.mac(o, False)} dev {name} nud permanent",
                   f"rule add iif {name} lookup {DELAY_TABLE} pref 100"]
    run_ip(["-n", r], router)
    for h in hosts:
        run_ip(["-n", layout.ns(h)], ["link set lo up", *_endpoint_cmds(layout, "eth0", layout.octet(h, hosts))])
    settings = {"net/ipv6/conf/all/disable_ipv6": "1", "net/ipv6/conf/default/disable_ipv6": "1"}
    for h in hosts:
        write_sysctls(layout.ns(h), settings)
    write_sysctls(r, {**settings, "net/ipv4/ip_forward": "1", "net/ipv4/conf/all/rp_filter": "0",
                      "net/ipv4/conf/default/rp_filter": "0", f"net/ipv4/conf/{TUN}/rp_filter": "0",
                      "net/ipv4/conf/all/send_redirects": "0"})


def _endpoint_cmds(layout: Layout, dev: str, octet: int) -> list[str]:
    net = layout.net
    return [
        f"addr add {net}.{octet}/24 dev {dev} noprefixroute",
        f"link set {dev} up",
        f"route replace {net}.0/24 via {layout.router_ip} dev {dev} onlink src {net}.{octet}",
        f"neigh replace {layout.router_ip} lladdr {layout.mac(octet, True)} dev {dev} nud permanent",
    ]


def namespaces(prefix: str) -> list[str]:
    """Our namespaces (by name prefix), router last."""
    try:
        names = sorted(p.name for p in NETNS_DIR.iterdir() if p.name.startswith(f"{prefix}-"))
    except FileNotFoundError:
        return []
    return sorted(names, key=lambda n: n == f"{prefix}-r")


def pids_in(names: list[str]) -> list[int]:
    """Every process whose network namespace is one of the named ones."""
    inodes = set()
    for ns in names:
        try:
            inodes.add((NETNS_DIR / ns).stat().st_ino)
        except OSError:
            continue
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}/ns/net").st_ino in inodes:
                    found.append(int(entry))
            except OSError:
                continue
    return found


def destroy(layout: Layout) -> list[str]:
    """Delete every namespace with our prefix and the root link; returns what was removed."""
    gone = namespaces(layout.prefix)
    run_ip([], [f"netns del {ns}" for ns in gone], force=True)
    if Path(f"/sys/class/net/{layout.root_link}").exists():
        run_ip([], [f"link del {layout.root_link}"], force=True)
        gone.append(layout.root_link)
    return gone


def in_netns(ns: str, fn: Callable[[], T]) -> T:
    """Run fn in a short-lived thread that has joined network namespace ns.

    A network namespace is per thread, so sockets made by fn belong to ns and stay usable from any
    thread afterwards, and /proc/sys/net opened by fn shows ns."""
    box: dict[str, T] = {}
    err: list[BaseException] = []

    def body() -> None:
        try:
            fd = os.open(NETNS_DIR / ns, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            err.append(TestbedError(f"network namespace {ns} does not exist (is the testbed up?)"))
            return
        try:
            if _libc().setns(fd, CLONE_NEWNET) != 0:
                err.append(OSError(ctypes.get_errno(), f"setns({ns})"))
                return
            box["v"] = fn()
        except BaseException as exc:  # handed to the caller's thread
            err.append(exc)
        finally:
            os.close(fd)

    t = threading.Thread(target=body, name=f"netns-{ns}", daemon=True)
    t.start()
    t.join()
    if err:
        raise err[0]
    return box["v"]


_LIBC: list[ctypes.CDLL] = []


def _libc() -> ctypes.CDLL:
    if not _LIBC:
        _LIBC.append(ctypes.CDLL(None, use_errno=True))
    return _LIBC[0]


def write_sysctls(ns: str, settings: dict[str, str]) -> None:
    def body() -> None:
        for key, value in settings.items():
            Path("/proc/sys", key).write_text(value)

    in_netns(ns, body)
