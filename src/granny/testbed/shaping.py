"""Turn a Topology into tc htb trees (bandwidth) and the delay stage's pair table (the rest).

Bandwidth, theory of operation
------------------------------
Traffic to endpoint X leaves the router through the link named X.  If anything limits traffic to X,
that link gets an htb tree::

    1:    htb, default 1:ffff
    1:fffe rate = X's access bandwidth (or UNLIMITED)       -- X's downlink
    1:<o> one leaf per source endpoint (o = its last octet), ceil = pair bandwidth, matched by
          "u32 match ip src"; leaf rate = ceil/children so that the leaves' guaranteed rates never
          add up past 1:fffe (htb lets a leaf send at its own rate without asking its parent)
    1:ffff anything else (nothing, in practice)

Each leaf has a bfifo of 100 ms at its rate (128 KiB to 16 MiB): a router buffer, not an infinite
queue.  An endpoint's uplink (its access bandwidth, outgoing) is a one-class htb on its own side
of the link (eth0 in a host, the <prefix>0 veth in the root namespace).  Later changes use
"class change" so flows keep their queued packets.  Rates count Ethernet frames, so TCP goodput is
about 1448/1514 = 95.6% of the configured rate, as on a real link.
"""

from __future__ import annotations

import subprocess

from ..errors import TestbedError
from .netns import Layout
from .topology import PLANNER, Topology

UNLIMITED = 10 * 10**9  # bit/s; above what the delay stage can carry on this machine
PARENT_CLASS = 0xFFFE  # leaves are numbered by octet (1..254)
DEFAULT_CLASS = 0xFFFF
MAX_LIMIT = 16 << 20  # bytes of queue per leaf at most


def delay_table(layout: Layout, topo: Topology, gen: int = 0) -> str:
    """The delay stage's config: one line per directed pair of endpoints."""
    lines = [f"gen {gen}", "# src dst latency_ns jitter_ns loss_ppb cut", "0 0 0 0 0 0"]
    ends = topo.endpoints
    for src in ends:
        for dst in ends:
            if src == dst:
                continue
            r = topo.path(src, dst)
            lines.append(
                f"{layout.octet(src, topo.hosts)} {layout.octet(dst, topo.hosts)} "
                f"{round(r.latency * 1e9)} {round(r.jitter * 1e9)} {round(r.loss * 1e9)} {int(r.cut)}"
            )
    return "\n".join(lines) + "\n"


def _bytes(bps: int) -> int:
    return max(bps // 8, 1)


def _burst(bps: int) -> int:
    return max(_bytes(bps) // 1000, 16000)  # 1 ms worth, at least 16 kB


def _limit(bps: int) -> int:
    return min(max(_bytes(bps) // 10, 131072), MAX_LIMIT)  # 100 ms worth


def _htb(bps: int) -> str:
    return f"rate {bps}bit burst {_burst(bps)} cburst {_burst(bps)}"


def _downlink(layout: Layout, topo: Topology, dst: str) -> tuple[int, dict[int, int]] | None:
    """(parent rate, {leaf minor: ceiling}) for the router's link to dst, or None if unshaped."""
    parent = topo.access_of(dst).bandwidth
    pairs = {src: topo.pair(src, dst).bandwidth for src in topo.endpoints if src != dst}
    if parent is None and all(v is None for v in pairs.values()):
        return None
    top = parent or UNLIMITED
    leaves = {layout.octet(src, topo.hosts): min(v or UNLIMITED, top) for src, v in pairs.items()}
    leaves[DEFAULT_CLASS] = top
    return top, leaves


def router_commands(layout: Layout, old: Topology | None, new: Topology) -> list[str]:
    """tc batch lines (for the router namespace) moving the shaping from old to new."""
    cmds: list[str] = []
    for dst in new.endpoints:
        was = _downlink(layout, old, dst) if old is not None else None
        now = _downlink(layout, new, dst)
        if now is None:
            if was is not None:
                cmds.append(f"qdisc del dev {dst} root")
            continue
        top, leaves = now
        verb = "change" if was is not None else "add"
        if was is None:
            cmds.append(f"qdisc add dev {dst} root handle 1: htb default {DEFAULT_CLASS:x}")
        elif was[0] == top and was[1] == leaves:
            continue
        cmds.append(f"class {verb} dev {dst} parent 1: classid 1:{PARENT_CLASS:x} htb {_htb(top)} quantum 60000")
        share = max(top // len(leaves), 8000)
        for minor, ceil in leaves.items():
            if was is not None and was[0] == top and was[1].get(minor) == ceil:
                continue  # unchanged leaf: leave its queue alone
            rate = min(ceil, share)
            cmds.append(f"class {verb} dev {dst} parent 1:{PARENT_CLASS:x} classid 1:{minor:x} htb rate {rate}bit "
                        f"ceil {ceil}bit burst {_burst(rate)} cburst {_burst(ceil)} quantum 60000")
            cmds.append(f"qdisc replace dev {dst} parent 1:{minor:x} bfifo limit {_limit(ceil)}")
        if was is None:
            for src in new.endpoints:
                if src != dst:
                    cmds.append(f"filter add dev {dst} parent 1: protocol ip prio 1 u32 match ip src "
                                f"{layout.ip(src, new.hosts)}/32 flowid 1:{layout.octet(src, new.hosts):x}")
    return cmds


def uplink_commands(dev: str, old: int | None, new: int | None) -> list[str]:
    """tc batch lines shaping what an endpoint sends (its access bandwidth) on its own device."""
    if new is None:
        return [f"qdisc del dev {dev} root"] if old is not None else []
    if old == new:
        return []
    verb = "change" if old is not None else "add"
    cmds = [f"qdisc add dev {dev} root handle 1: htb default 1"] if old is None else []
    return [*cmds, f"class {verb} dev {dev} parent 1: classid 1:1 htb {_htb(new)} quantum 60000",
            f"qdisc replace dev {dev} parent 1:1 bfifo limit {_limit(new)}"]


def run_tc(ns: str | None, batch: list[str]) -> None:
    if not batch:
        return
    cmd = ["tc", *(["-n", ns] if ns else []), "-batch", "-"]
    proc = subprocess.run(cmd, input="\n".join(batch) + "\n", text=True, capture_output=True, check=False)
    if proc.returncode != 0:
        raise TestbedError(f"{' '.join(cmd)} failed: {proc.stderr.strip()}\nbatch:\n" + "\n".join(batch[:20]))


def apply_shaping(layout: Layout, old: Topology | None, new: Topology) -> None:
    """Bring every qdisc of the testbed from old's settings to new's (old None: fresh links)."""
    run_tc(layout.router_ns, router_commands(layout, old, new))
    for ep in new.endpoints:
        before = old.access_of(ep).bandwidth if old is not None else None
        after = new.access_of(ep).bandwidth
        if ep == PLANNER:
            run_tc(None, uplink_commands(layout.root_link, before, after))
        else:
            run_tc(layout.ns(ep), uplink_commands("eth0", before, after))
