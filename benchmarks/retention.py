"""Bounded planner state: planner RSS and journal size over a long run of calls (issue 10, defect 7).

Usage::

    python benchmarks/retention.py [--calls 200000] [--every 20000] [--batch 2000] [--retain 0.2s]
                                   [--out benchmarks/results/retention.json]

Starts a real cluster (planner + 1 worker, 2 slots) with ``GRANNY_RETAIN`` set, runs ``--calls``
no-op calls through the Python client in batches of ``--batch`` (submit the batch, wait for all of
it), and every ``--every`` calls samples the planner's RSS (psutil) and the journal's size on disk
(``journal.sqlite`` + ``-wal``). It prints the samples and the ratio RSS(last) / RSS(first sample);
the target is <= 1.2 from 20,000 to 200,000 calls with retention on. Run it again with a long
``--retain`` (e.g. ``1d``) to see the growth without pruning.

Not a test: nothing fails; the figures go to stdout and ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil


def noop() -> None:
    return None


def journal_bytes(data_dir: Path) -> int:
    total = 0
    for name in ("journal.sqlite", "journal.sqlite-wal"):
        try:
            total += (data_dir / name).stat().st_size
        except FileNotFoundError:
            pass
    return total


def run(calls: int, every: int, batch: int, retain: str) -> dict[str, Any]:
    os.environ["GRANNY_RETAIN"] = retain  # the cluster's processes inherit it
    import granny
    from granny.cluster import LocalCluster

    data_dir = Path(tempfile.mkdtemp(prefix="granny-retention-")) / "data"
    cluster = LocalCluster(workers=1, slots=2, data_dir=data_dir, granule_user="same")
    planner = psutil.Process(cluster.procs[0].pid)
    samples: list[dict[str, float]] = []
    started = time.perf_counter()
    try:
        client = granny.connect(cluster.address, cluster.token)
        done = 0
        while done < calls:
            n = min(batch, calls - done)
            futures = [client.submit(noop) for _ in range(n)]
            for f in futures:
                f.result(300)
            done += n
            if done % every == 0 or done == calls:
                sample = {"calls": done, "rss_mib": planner.memory_info().rss / 2**20,
                          "journal_mib": journal_bytes(data_dir) / 2**20,
                          "elapsed_s": time.perf_counter() - started}
                samples.append(sample)
                print(f"{done:>8} calls  planner RSS {sample['rss_mib']:7.1f} MiB  journal "
                      f"{sample['journal_mib']:7.2f} MiB  {sample['elapsed_s']:6.0f}s", flush=True)
        client.close()
    finally:
        cluster.stop()
    first, last = samples[0], samples[-1]
    return {"retain": retain, "calls": calls, "batch": batch, "samples": samples,
            "rss_ratio": last["rss_mib"] / first["rss_mib"],
            "journal_ratio": last["journal_mib"] / max(first["journal_mib"], 1e-9),
            "calls_per_s": calls / last["elapsed_s"],
            "_meta": {"python": sys.version.split()[0], "machine": platform.machine(), "cpus": os.cpu_count(),
                      "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=200_000)
    ap.add_argument("--every", type=int, default=20_000)
    ap.add_argument("--batch", type=int, default=2_000)
    ap.add_argument("--retain", default="0.2s")
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    result = run(args.calls, args.every, args.batch, args.retain)
    first, last = result["samples"][0], result["samples"][-1]
    print(f"retain {args.retain}: planner RSS {first['rss_mib']:.1f} MiB after {first['calls']} calls -> "
          f"{last['rss_mib']:.1f} MiB after {last['calls']} calls: ratio {result['rss_ratio']:.3f} "
          f"(target <= 1.2); journal {first['journal_mib']:.2f} -> {last['journal_mib']:.2f} MiB; "
          f"{result['calls_per_s']:.0f} calls/s")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
