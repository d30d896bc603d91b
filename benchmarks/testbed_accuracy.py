"""How faithful is the testbed's link emulation?  Configured vs measured RTT, bandwidth and loss,
the delay stage's throughput ceiling, and the time of `up` (4 hosts) and `down`.  Needs root.

    sudo .venv/bin/python benchmarks/testbed_accuracy.py [--quick] [--out FILE]

Traffic only ever goes between the testbed's own addresses (10.79.0.0/24 here), and every probe is
bounded in packets, bytes and seconds.  Targets: RTT within 10% (or 0.2 ms), bandwidth within 10%.
RTT is ICMP echo (median), bandwidth is the goodput of one TCP stream timed at the receiver, loss is
one-way UDP.  Rates count Ethernet frames, so the ideal TCP goodput is 1448/1514 = 95.6% of the
configured rate; the table gives the error against the configured rate, as the target says.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

from granny.testbed import Testbed, probe

PREFIX, SUBNET = "gtyb", "10.79.0.0/24"
GOODPUT = 1448 / 1514
Row = tuple[str, str, str, str, str]


def make(state_dir: str, **kw: object) -> Testbed:
    return Testbed(prefix=PREFIX, subnet=SUBNET, state_dir=state_dir, **kw)  # type: ignore[arg-type]


def err(measured: float, configured: float) -> float:
    return (measured - configured) / configured


def rtt_rows(tb: Testbed, quick: bool) -> list[Row]:
    rows: list[Row] = []
    ip = tb.host("h2").ip
    for one_way, count in ((0.0, 100), (0.0005, 200), (0.005, 100), (0.05, 30)):
        tb.set(latency=one_way, jitter=0)
        res = probe.ping(tb.socket, "h1", ip, count=count // (4 if quick else 1), interval=0.005)
        want = 2 * one_way
        ok = abs(res.median - want) <= max(0.1 * want, 0.0002)
        label = f"RTT, latency {one_way * 1e3:g} ms" + (" (path floor)" if not one_way else "")
        rows.append((label, f"{want * 1e3:.3f} ms", f"{res.median * 1e3:.3f} ms (p10-p90 "
                     f"{_pct(res.rtts, 0.1) * 1e3:.3f}-{_pct(res.rtts, 0.9) * 1e3:.3f})",
                     f"{(res.median - want) * 1e3:+.3f} ms" + (f" ({err(res.median, want):+.1%})" if want else ""),
                     "ok" if ok else "MISS"))
    tb.set(latency=0.005, jitter=0.001)
    res = probe.ping(tb.socket, "h1", ip, count=50 if quick else 200, interval=0.005)
    rows.append(("RTT, latency 5 ms, jitter 1 ms", "10.000 ms, sd 0.82 ms",
                 f"{res.median * 1e3:.3f} ms, sd {statistics.pstdev(res.rtts) * 1e3:.2f} ms",
                 f"{(res.median - 0.01) * 1e3:+.3f} ms", "ok" if abs(res.median - 0.01) <= 0.001 else "MISS"))
    tb.set(jitter=0)
    return rows


def _pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[int(q * (len(s) - 1))] if s else float("nan")


def bandwidth_rows(tb: Testbed, quick: bool) -> list[Row]:
    rows: list[Row] = []
    ip = tb.host("h2").ip
    seconds = 1.5 if quick else 4.0
    for rate in (10e6, 100e6, 1e9):
        tb.set(latency=0.0005, bandwidth=int(rate))
        got = statistics.median(probe.throughput(tb.socket, "h1", "h2", ip, int(rate * seconds / 8), timeout=60)
                                for _ in range(1 if quick else 3))
        ok = abs(err(got, rate)) <= 0.10
        rows.append((f"bandwidth {rate / 1e6:g} Mbit/s, RTT 1 ms", f"{rate / 1e6:g} Mbit/s "
                     f"(ideal goodput {rate * GOODPUT / 1e6:.4g})", f"{got / 1e6:.4g} Mbit/s",
                     f"{err(got, rate):+.1%}", "ok" if ok else "MISS"))
    return rows


def ceiling_rows(tb: Testbed, quick: bool) -> list[Row]:
    """Unshaped TCP throughput through the delay stage: with segmentation offload (64 KiB
    super-packets pass whole), with loss set (the stage decides loss per MSS segment and re-merges
    the survivors), and per packet (offload off in the hosts: every 1500-byte packet is handled one
    by one by the sender, the stage and the receiver, as UDP traffic would be)."""
    rows: list[Row] = []
    ip = tb.host("h2").ip
    nbytes = (500 if quick else 1500) << 20
    cases: list[tuple[str, dict[str, object], int]] = [
        ("TCP with offload, no delay", {"latency": 0}, 65536),
        ("TCP with offload, 0.5 ms delay", {"latency": 0.0005}, 65536),
        ("TCP with offload, 0.5 ms delay, loss 0.01%", {"latency": 0.0005, "loss": 1e-4}, 65536),
        ("per packet (offload off), 0.5 ms delay", {"latency": 0.0005}, 1500),
    ]
    for label, settings, gso in cases:
        tb.set(**{"bandwidth": "unlimited", "loss": 0, **settings})
        for h in ("h1", "h2"):
            tb.run(h, ["ip", "link", "set", "eth0", "gso_max_size", str(gso)], check=True)
        got = statistics.median(probe.throughput(tb.socket, "h1", "h2", ip, nbytes // (5 if gso < 65536 else 1),
                                                 timeout=60) for _ in range(1 if quick else 3))
        rows.append((f"delay stage ceiling, {label}", "-", f"{got / 1e9:.2f} Gbit/s", "-", "-"))
    tb.set(loss=0)
    return rows


def loss_rows(tb: Testbed, quick: bool) -> list[Row]:
    tb.set(latency=0.0005, bandwidth="unlimited", loss=0.01)
    n = 5000 if quick else 20000
    lost = probe.udp_loss(tb.socket, "h1", "h2", tb.host("h2").ip, count=n, rate_pps=10000)
    ping = probe.ping(tb.socket, "h1", tb.host("h2").ip, count=n // 10, interval=0.001, timeout=0.2)
    sd = (0.01 * 0.99 / n) ** 0.5
    tb.set(loss=0)
    return [("loss 1% (one-way UDP)", "1.00%", f"{lost:.2%} (+-{2 * sd:.2%} at 2 sd)", f"{lost - 0.01:+.2%}",
             "ok" if abs(lost - 0.01) <= max(3 * sd, 0.001) else "MISS"),
            ("loss 1% each way (ICMP round trip)", "1.99%", f"{ping.loss:.2%}", f"{ping.loss - 0.0199:+.2%}", "-")]


def timing_rows(state_dir: str, reps: int) -> list[Row]:
    ups, downs, net_ups = [], [], []
    for _ in range(reps):
        tb = make(state_dir, hosts=4, slots=1)
        t = time.perf_counter()
        tb.up()
        ups.append(time.perf_counter() - t)
        t = time.perf_counter()
        tb.down()
        downs.append(time.perf_counter() - t)
        tb = make(state_dir, hosts=4, granny=False)
        t = time.perf_counter()
        tb.up()
        net_ups.append(time.perf_counter() - t)
        tb.down()
    return [("`up`, 4 hosts with planner + workers registered", "< 5 s", _times(ups), "-",
             "ok" if statistics.median(ups) < 5 else "MISS"),
            ("`up`, 4 hosts, network only", "-", _times(net_ups), "-", "-"),
            ("`down`, 4 hosts with planner + workers", "< 2 s", _times(downs), "-",
             "ok" if statistics.median(downs) < 2 else "MISS")]


def _times(xs: list[float]) -> str:
    return f"{statistics.median(xs):.2f} s (min {min(xs):.2f}, max {max(xs):.2f}, n={len(xs)})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer samples (about 30 s)")
    parser.add_argument("--out", type=Path, default=None, help="also write the markdown table here")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("testbed_accuracy needs root (network namespaces)", file=sys.stderr)
        return 1
    state_dir = tempfile.mkdtemp(prefix="granny-testbed-bench-")
    rows: list[Row] = []
    rows += timing_rows(state_dir, 1 if args.quick else 5)
    tb = make(state_dir, hosts=2, granny=False)
    tb.up()
    try:
        for section in (rtt_rows, bandwidth_rows, loss_rows, ceiling_rows):
            rows += section(tb, args.quick)
            print(f"... {section.__name__} done", file=sys.stderr)
    finally:
        tb.down()
    head = ("what", "configured", "measured", "error", "target")
    lines = [f"Testbed accuracy on {platform.node()} ({os.cpu_count()} CPUs, Linux {platform.release()}), "
             f"{time.strftime('%Y-%m-%d %H:%M')}{' (quick)' if args.quick else ''}", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
