"""`granny testbed up | down | status | set | exec | ping` (also `python -m granny.testbed ...`).

`up` prints progress on stderr and ends stdout with ``export GRANNY_ADDRESS=...`` and
``export GRANNY_TOKEN=...``, so ``eval "$(granny testbed up --hosts 4)"`` works.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys

from rich.console import Console

from ..errors import GrannyError, TestbedError
from . import lifecycle, probe, state
from .testbed import Testbed
from .units import fmt_duration


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="granny testbed", description="Emulated multi-host cluster in network namespaces.")
    p.add_argument("--state-dir", default=str(state.DEFAULT_STATE_DIR), help="where the state file lives")
    common = argparse.ArgumentParser(add_help=False)  # --state-dir is accepted after the command too
    common.add_argument("--state-dir", default=argparse.SUPPRESS, help="where the state file lives")
    sub = p.add_subparsers(dest="cmd", required=True)

    up = sub.add_parser("up", parents=[common], help="create hosts, links, planner and workers")
    up.add_argument("--hosts", type=int, default=None, help="number of hosts (default 2, or the topology's)")
    up.add_argument("--slots", type=int, default=None, help="slots per worker (default 1)")
    up.add_argument("--topology", help="YAML topology file (see examples/topology.yaml)")
    for name, example in (("latency", "5ms"), ("jitter", "1ms"), ("bandwidth", "100mbit"), ("loss", "0.1%")):
        up.add_argument(f"--{name}", help=f"default for every pair, one-way, e.g. {example}")
    up.add_argument("--data-dir", help="planner data directory (default <state-dir>/planner, wiped on up)")
    up.add_argument("--prefix", default="gty", help="name prefix of namespaces and links")
    up.add_argument("--subnet", default="10.77.0.0/24", help="private /24 for the testbed")
    up.add_argument("--port", type=int, default=0, help="planner RPC port (0: any free port)")
    up.add_argument("--heartbeat-timeout", type=float, default=None, help="passed to the planner (seconds)")
    up.add_argument("--ready-timeout", type=float, default=60.0, help="seconds to wait for READY lines")
    up.add_argument("--no-granny", action="store_true", help="network only: no planner, no workers")

    down = sub.add_parser("down", parents=[common], help="remove everything the testbed made (idempotent)")
    down.add_argument("--prefix", default=None, help="name prefix (default: the state file's, else gty)")

    status = sub.add_parser("status", parents=[common], help="show hosts, links and their settings")
    status.add_argument("--json", action="store_true", help="print the raw state as JSON")

    st = sub.add_parser("set", parents=[common], help="change link settings now: of a pair (A B), a host's access link (A), "
                                    "or the defaults (no name)")
    st.add_argument("endpoints", nargs="*", help="zero, one or two endpoint names (h1, planner, ...)")
    for name in ("latency", "jitter", "bandwidth", "loss"):
        st.add_argument(f"--{name}")
    cut = st.add_mutually_exclusive_group()
    cut.add_argument("--cut", action="store_true", help="drop every packet (host cut off / pair partitioned)")
    cut.add_argument("--restore", action="store_true", help="undo --cut")

    ex = sub.add_parser("exec", parents=[common], help="run a command inside a host's namespace")
    ex.add_argument("host")
    ex.add_argument("argv", nargs=argparse.REMAINDER, help="the command (after --)")

    pg = sub.add_parser("ping", parents=[common], help="ICMP ping between two endpoints (no ping binary needed)")
    pg.add_argument("src")
    pg.add_argument("dst")
    pg.add_argument("--count", type=int, default=5)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    err = Console(stderr=True)
    if os.geteuid() != 0 and args.cmd in ("up", "down", "set", "exec", "ping"):
        err.print("granny testbed needs root (network namespaces, veth, tc): run it with sudo")
        return 1
    try:
        return _dispatch(args, err)
    except GrannyError as exc:  # TestbedError, or ConfigError from a bad setting
        err.print(f"[red]error:[/] {exc}", markup=True, highlight=False)
        return 1
    except KeyboardInterrupt:
        return 130


def _dispatch(args: argparse.Namespace, err: Console) -> int:
    state_dir: str = args.state_dir
    if args.cmd == "up":
        tb = Testbed(args.hosts, slots=args.slots, topology=args.topology, latency=args.latency,
                     jitter=args.jitter, bandwidth=args.bandwidth, loss=args.loss, granny=not args.no_granny,
                     data_dir=args.data_dir, state_dir=state_dir, prefix=args.prefix, subnet=args.subnet,
                     port=args.port, heartbeat_timeout=args.heartbeat_timeout, ready_timeout=args.ready_timeout)
        tb.up(log=lambda msg: err.print(msg, highlight=False))
        for h in tb.hosts:
            err.print(f"  {h.name}: {h.ip} in namespace {h.ns}", highlight=False)
        print(f"export GRANNY_TESTBED_DIR={shlex.quote(tb.state_dir)}")
        if tb.address:
            print(f"export GRANNY_ADDRESS={shlex.quote(tb.address)}")
            print(f"export GRANNY_TOKEN={shlex.quote(tb.token)}")
        return 0
    if args.cmd == "down":
        st = state.load(state_dir)
        prefix = args.prefix or (st.prefix if st is not None else "gty")
        removed = lifecycle.teardown(state_dir, prefix)
        err.print(f"removed {', '.join(removed)}" if removed else "nothing to remove", highlight=False)
        return 0
    st = state.load(state_dir)
    if st is None:
        err.print(f"no testbed is up (no state in {state_dir})")
        return 1
    if args.cmd == "status":
        if args.json:
            print(json.dumps(st.to_dict(), indent=1))
        else:
            from .status import render

            render(st, Console())
        return 0
    tb = Testbed.attach(state_dir)
    if args.cmd == "set":
        if len(args.endpoints) > 2:
            raise TestbedError("set takes at most two endpoint names")
        cut = True if args.cut else (False if args.restore else None)
        tb.set(*args.endpoints, latency=args.latency, jitter=args.jitter, bandwidth=args.bandwidth,
               loss=args.loss, cut=cut)
        return 0
    if args.cmd == "exec":
        argv = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
        if not argv:
            raise TestbedError("exec needs a command: granny testbed exec h1 -- ip addr")
        os.execvp("ip", tb.command(args.host, argv))
    if args.cmd == "ping":
        dst = tb.planner_ip if args.dst == "planner" else tb.host(args.dst).ip
        res = probe.ping(tb.socket, args.src, dst, count=args.count, interval=0.2)
        for rtt in res.rtts:
            print(f"rtt {fmt_duration(rtt)}")
        median = f", median rtt {fmt_duration(res.median)}" if res.rtts else ""
        print(f"{res.sent} sent, {res.received} received{median}")
        return 0 if res.received else 1
    raise AssertionError(args.cmd)
