"""Dirty-page diff + merge of a shared region vs a memcpy of the whole region (issue 3's target).

Usage::

    python benchmarks/memory_bench.py [--mib 64] [--dirty 0.10] [--dtype float64] [--reps 15]

One process, pure numpy, no cluster: a region of ``--mib`` MiB, a snapshot of it, and a worker's version
in which ``--dirty`` of the pages changed, in three patterns:

* ``scattered-full``:   dirty pages spread at random, every element of a dirty page rewritten
* ``clustered-full``:   the dirty pages form one contiguous block, every element rewritten
* ``scattered-sparse``: dirty pages spread at random, 8 elements of each rewritten

For each pattern and each diff encoding (PAGES, RUNS, and AUTO, the default) it times, as medians over ``--reps`` runs:
the dirty-page scan, ``encode``, ``to_bytes`` + ``from_bytes`` (what the wire adds), and ``merge``
into the main copy (op ``overwrite`` and op ``sum``). *Join* = scan + encode + serialise + parse +
merge (overwrite), the whole work of one worker's join. The reference is ``np.copyto`` of the whole
region into a preallocated array, timed in the same run; the target is join ≤ 3× memcpy. The table also
gives the serialised diff size against the region size (bytes shipped ∝ dirty pages, not region size).

Results: a markdown table on stdout and in ``benchmarks/results/memory.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

from granny.memory import Diff, Encoding, MergeOp, dirty_pages, encode, merge_diff  # noqa: E402
from granny.memory.pages import PAGE_SIZE  # noqa: E402

MIB = 1 << 20


def timed(fn: Callable[[], object], reps: int) -> float:
    fn()  # warm: first-touch page faults and caches are not what we measure
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return statistics.median(out)


def make_version(snap: np.ndarray[Any, Any], pattern: str, frac: float, rng: np.random.Generator
                 ) -> np.ndarray[Any, Any]:
    cur = snap.copy()
    npages = snap.nbytes // PAGE_SIZE
    k = max(1, int(npages * frac))
    per_page = PAGE_SIZE // snap.itemsize
    if pattern.startswith("clustered"):
        first = int(rng.integers(0, npages - k + 1))
        pages = np.arange(first, first + k)
    else:
        pages = np.sort(rng.choice(npages, k, replace=False))
    blocks = cur.reshape(npages, per_page)
    if pattern.endswith("full"):
        blocks[pages] += 1
    else:
        cols = rng.integers(0, per_page, size=(k, 8))
        blocks[pages[:, None], cols] += 1
    return cur


def run(mib: int, frac: float, dtype: str, reps: int) -> tuple[str, dict[str, Any]]:
    rng = np.random.default_rng(1)
    n = mib * MIB // np.dtype(dtype).itemsize
    snap = (rng.random(n) * 100).astype(dtype)
    dst = np.empty_like(snap)
    memcpy = timed(lambda: np.copyto(dst, snap), reps)
    rows: list[list[str]] = []
    raw: dict[str, Any] = {"memcpy_s": memcpy}
    for pattern in ("scattered-full", "clustered-full", "scattered-sparse"):
        cur = make_version(snap, pattern, frac, rng)
        scan = timed(lambda cur=cur: dirty_pages(cur, snap), reps)
        pages = dirty_pages(cur, snap)
        for enc in (Encoding.PAGES, Encoding.RUNS, Encoding.AUTO):
            d = encode(cur, snap, encoding=enc, pages=pages)
            wire = d.to_bytes()
            main = snap.copy()
            t_enc = timed(lambda cur=cur, enc=enc, pages=pages: encode(cur, snap, encoding=enc, pages=pages), reps)
            t_ser = timed(lambda d=d: Diff.from_bytes(d.to_bytes()), reps)
            t_over = timed(lambda main=main, wire=wire: merge_diff(main, Diff.from_bytes(wire), MergeOp.OVERWRITE,
                                                              snap), reps)
            assert np.array_equal(main, cur), "overwrite merge must reproduce the worker's version"
            t_sum = timed(lambda main=main, d=d: merge_diff(main, d, MergeOp.SUM, snap), reps)
            join = scan + t_enc + t_ser + t_over
            key = f"{pattern}/{enc.name}"
            raw[key] = {"scan_s": scan, "encode_s": t_enc, "serde_s": t_ser, "merge_overwrite_s": t_over,
                        "merge_sum_s": t_sum, "join_s": join, "wire_bytes": len(wire),
                        "dirty_pages": int(pages.size)}
            rows.append([pattern, enc.name if enc is not Encoding.AUTO else f"AUTO→{d.encoding.name}", f"{pages.size}", f"{scan * 1e3:.2f}", f"{t_enc * 1e3:.2f}",
                         f"{t_ser * 1e3:.2f}", f"{t_over * 1e3:.2f}", f"{t_sum * 1e3:.2f}",
                         f"{join * 1e3:.2f}", f"{join / memcpy:.2f}×",
                         f"{len(wire) / MIB:.2f} MiB ({len(wire) / snap.nbytes:.1%})"])
    header = ["pattern", "encoding", "dirty pages", "scan ms", "encode ms", "serde ms", "merge overwrite ms",
              "merge sum ms", "join ms", "join ÷ memcpy", "diff bytes (of region)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    meta = (f"{mib} MiB {dtype} region, {frac:.0%} of pages dirty, median of {reps} runs; "
            f"memcpy (np.copyto of the whole region) **{memcpy * 1e3:.2f} ms** in the same run. "
            f"Target: join ≤ 3× memcpy. {platform.processor() or platform.machine()}, "
            f"numpy {np.__version__}, {dt.date.today().isoformat()}.")
    return meta + "\n\n" + "\n".join(lines) + "\n", raw


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mib", type=int, default=64)
    ap.add_argument("--dirty", type=float, default=0.10)
    ap.add_argument("--dtype", default="float64")
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--no-write", action="store_true", help="print only; leave results/memory.md alone")
    args = ap.parse_args()
    sections = []
    for dtype in dict.fromkeys([args.dtype, "uint8"]):
        table, _ = run(args.mib, args.dirty, dtype, args.reps)
        sections.append(f"### {dtype}\n\n{table}")
    body = ("# Memory: dirty-page diff + merge vs memcpy\n\n"
            "Generated by `python benchmarks/memory_bench.py`. *join* = scan + encode + serialise + parse "
            "+ merge (overwrite) of one worker's diff. *serde* = `to_bytes` + `from_bytes`.\n\n"
            + "\n".join(sections))
    print(body)
    if not args.no_write:
        out = HERE / "results" / "memory.md"
        out.parent.mkdir(exist_ok=True)
        out.write_text(body)


if __name__ == "__main__":
    main()
