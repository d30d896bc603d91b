"""How fast a paused host comes back (issue 10's target: a new call completes within heartbeat
timeout + 2 s of the resume, for any pause up to 60 s). Not a test: it prints figures.

For each pause length, a local cluster (one planner, one worker) is started with the given heartbeat
timeout; the worker daemon is stopped with SIGSTOP for the pause, then resumed (SIGCONT), and a call
submitted at once. Printed: whether the host had been declared dead, the time from the resume to
that call's result, and the host's incarnation afterwards. A planner pause (SIGSTOP of the planner,
i.e. its own stall) is measured too: no host may be declared dead because of it. With ``--cuts``
(root: the namespace testbed), a host is also cut off from the network for that long, then restored.

    python benchmarks/liveness.py                         # pauses 3 s and 60 s, timeouts 1 s and 5 s
    python benchmarks/liveness.py --pauses 2,10 --timeouts 1
    sudo python benchmarks/liveness.py --pauses '' --planner-pause 0 --cuts 20,60 --timeouts 1
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

import granny
from granny.cluster import LocalCluster


def where() -> str:
    import os

    return os.environ["GRANNY_HOST_ID"]


def host(client: granny.Client) -> granny.client.HostInfo:
    (h,) = client.hosts()
    return h


def wait_warm(client: granny.Client, slots: int, limit: float = 60.0) -> None:
    deadline = time.monotonic() + limit
    while not ((h := host(client)).alive and h.idle_granules >= slots):
        if time.monotonic() > deadline:
            raise SystemExit("the cluster did not warm up")
        time.sleep(0.05)  # polling the planner


def pause_and_resume(timeout: float, pause: float, victim: str, slots: int = 2) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="granny-liveness-") as tmp:
        cluster = LocalCluster(workers=1, slots=slots, data_dir=Path(tmp) / "data", heartbeat_timeout=timeout, granule_user="same")
        pid = cluster.procs[0 if victim == "planner" else 1].pid
        try:
            client = granny.connect(cluster.address, cluster.token)
            wait_warm(client, slots)
            assert client.submit(where).result(timeout=30) == "local"
            before = host(client).incarnation
            os.kill(pid, signal.SIGSTOP)
            time.sleep(pause)  # the pause being measured
            os.kill(pid, signal.SIGCONT)
            resumed = time.perf_counter()
            fut = client.submit(where)
            ran_on = fut.result(timeout=pause + timeout + 60)
            took = time.perf_counter() - resumed
            after = host(client).incarnation
            client.close()
        finally:
            os.kill(pid, signal.SIGCONT)
            cluster.stop()
    return {"victim": victim, "timeout": timeout, "pause": pause, "declared_dead": after != before,
            "incarnation": after, "resume_to_result_s": took, "host": ran_on}


def cut_and_restore(timeout: float, cut: float) -> dict[str, object]:
    from granny.testbed import Testbed

    prefix = os.environ.get("GRANNY_TEST_NETNS_PREFIX", "gtyb")
    subnet = os.environ.get("GRANNY_TEST_SUBNET", "10.78.99.0/24")
    with tempfile.TemporaryDirectory(prefix="granny-liveness-") as tmp:
        tb = Testbed(hosts=1, slots=1, heartbeat_timeout=timeout, prefix=prefix, subnet=subnet,
                     state_dir=Path(tmp) / "testbed", ready_timeout=60.0).up()
        try:
            client = granny.connect(address=tb.address, token=tb.token)
            assert client.submit(where).result(timeout=30) == "h1"
            before = host(client).incarnation
            tb.cut("h1")
            time.sleep(cut)  # the partition being measured
            tb.restore("h1")
            healed = time.perf_counter()
            ran_on = client.submit(where).result(timeout=cut + timeout + 120)
            took = time.perf_counter() - healed
            after = host(client).incarnation
            client.close()
        finally:
            tb.down()
    return {"victim": "network", "timeout": timeout, "pause": cut, "declared_dead": after != before,
            "incarnation": after, "resume_to_result_s": took, "host": ran_on}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pauses", default="3,60", help="comma-separated pause lengths, seconds")
    ap.add_argument("--timeouts", default="1,5", help="comma-separated heartbeat timeouts, seconds")
    ap.add_argument("--planner-pause", type=float, default=3.0, help="length of the planner's own pause (0: skip)")
    ap.add_argument("--cuts", default="", help="comma-separated network cut lengths, seconds (needs root)")
    args = ap.parse_args()
    pauses = [float(x) for x in args.pauses.split(",") if x]
    timeouts = [float(x) for x in args.timeouts.split(",") if x]
    print(f"{'victim':8} {'timeout':>8} {'pause':>7} {'dead?':>6} {'incarn.':>7} {'resume->result':>15} "
          f"{'target':>8}", flush=True)
    worst_margin = float("inf")
    runs = [("worker", t, p) for t in timeouts for p in pauses]
    if args.planner_pause > 0:
        runs += [("planner", t, args.planner_pause) for t in timeouts]
    runs += [("network", t, float(c)) for t in timeouts for c in args.cuts.split(",") if c]
    for victim, timeout, pause in runs:
        r = cut_and_restore(timeout, pause) if victim == "network" else pause_and_resume(timeout, pause, victim)
        target = timeout + 2.0
        took = float(str(r["resume_to_result_s"]))
        worst_margin = min(worst_margin, target - took)
        print(f"{victim:8} {timeout:>7g}s {pause:>6g}s {'yes' if r['declared_dead'] else 'no':>6} "
              f"{r['incarnation']!s:>7} {took * 1000:>12.0f} ms {target:>7g}s", flush=True)
    print(f"worst margin to the target (timeout + 2 s): {worst_margin * 1000:.0f} ms", flush=True)
    return 0 if worst_margin > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
