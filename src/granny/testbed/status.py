"""`granny testbed status`: the hosts, processes, links and schedule of the running testbed."""

from __future__ import annotations

import itertools
import os
import signal
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from .netns import Layout, namespaces
from .procs import alive
from .state import State
from .topology import PLANNER, Topology
from .units import fmt_duration, fmt_loss, fmt_rate

MAX_PAIR_ROWS = 60


def delay_counters(st: State, wait: float = 0.1) -> str:
    """Ask the delay stage for its counters (SIGUSR1) and return its answer line."""
    proc = st.proc("delayd")
    if proc is None or not alive(proc.pid):
        return "delay stage not running"
    log = Path(proc.log)
    before = log.stat().st_size if log.exists() else 0
    try:
        os.kill(proc.pid, signal.SIGUSR1)
    except ProcessLookupError:
        return "delay stage not running"
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if log.exists() and log.stat().st_size > before:
            with open(log, "rb") as f:
                f.seek(before)
                text = f.read().decode(errors="replace")
            for line in text.splitlines():
                if "in=" in line:
                    return line.removeprefix("delayd: ")
        time.sleep(0.005)
    return "(no answer)"


def pair_bandwidth(topo: Topology, a: str, b: str) -> int | None:
    rates = [r for r in (topo.pair(a, b).bandwidth, topo.access_of(a).bandwidth, topo.access_of(b).bandwidth)
             if r is not None]
    return min(rates) if rates else None


def render(st: State, console: Console) -> None:
    topo, layout = st.topology, Layout(st.prefix, st.net)
    console.print(f"[bold]granny testbed[/] prefix={st.prefix} net={st.net}.0/24 state={st.state_dir}")
    if st.granny:
        console.print(f"planner {st.address}  data-dir {st.data_dir}")
    up_for = time.time() - st.started_at if st.started_at else 0.0
    console.print(f"up for {up_for:.0f}s; namespaces present: {', '.join(namespaces(st.prefix)) or 'none'}")

    procs = Table(title="processes")
    for col in ("name", "pid", "namespace", "alive", "log"):
        procs.add_column(col)
    for p in st.procs:
        procs.add_row(p.name, str(p.pid), p.ns or "(root)", "yes" if alive(p.pid) else "[red]NO[/]", p.log)
    console.print(procs)

    hosts = Table(title=f"endpoints ({len(topo.hosts)} hosts, {topo.slots} slots each)")
    for col in ("name", "namespace", "address", "access latency", "access bandwidth", "access loss", "cut"):
        hosts.add_column(col)
    for ep in topo.endpoints:
        acc = topo.access_of(ep)
        hosts.add_row(ep, "(root)" if ep == PLANNER else layout.ns(ep), layout.ip(ep, topo.hosts),
                      fmt_duration(acc.latency or 0.0), fmt_rate(acc.bandwidth), fmt_loss(acc.loss or 0.0),
                      "[red]CUT[/]" if acc.cut else "")
    console.print(hosts)

    links = Table(title="paths (one-way, both directions alike; access links included)")
    for col in ("between", "latency", "jitter", "bandwidth", "loss", "state"):
        links.add_column(col)
    rows = []
    for a, b in itertools.combinations(topo.endpoints, 2):
        r = topo.path(a, b)
        rows.append((f"{a} - {b}", fmt_duration(r.latency), fmt_duration(r.jitter),
                     fmt_rate(pair_bandwidth(topo, a, b)), fmt_loss(r.loss), "[red]CUT[/]" if r.cut else "up"))
    for row in rows[:MAX_PAIR_ROWS]:
        links.add_row(*row)
    if len(rows) > MAX_PAIR_ROWS:
        links.add_row(f"... {len(rows) - MAX_PAIR_ROWS} more", "", "", "", "", "")
    console.print(links)

    if topo.schedule:
        sched = Table(title="schedule")
        for col in ("at", "target", "change", "applied"):
            sched.add_column(col)
        for i, ev in enumerate(topo.schedule):
            target = " - ".join(ev.target) if ev.target else "(defaults)"
            change = ", ".join(f"{k}={v}" for k, v in ev.spec.describe().items()
                               if getattr(ev.spec, k) is not None and k != "cut")
            if ev.spec.cut is not None:
                change = ", ".join(x for x in (change, "cut" if ev.spec.cut else "restore") if x)
            sched.add_row(f"{ev.at:g}s", target, change, "yes" if i < st.schedule_done else "pending")
        console.print(sched)
    console.print(f"delay stage: {delay_counters(st)}")
