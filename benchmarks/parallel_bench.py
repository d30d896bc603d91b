"""Parallel regions (issue 3): granny's fork-join teams vs multiprocessing.Pool, and vs themselves on 1 thread.

Usage (normally through ``scripts/bench parallel``)::

    python benchmarks/parallel_bench.py [--reps N] [--budget 2.0] [--regions 1000] [--grid 4096]
                                        [--iters 20] [--mib 64] [--update-readme]

Every system runs in its own fresh child process, REPS times (env ``REPS``, default 3), interleaved
round-robin with a rotating order (see ``_harness``):

granny   an embedded cluster (planner + 1 worker of 2 slots, ``GRANNY_SLOTS=2``). A team of 2 threads is
         the calling process (thread 0) plus one leased granule (thread 1). Measures
         1. ``empty_region_s``   fork+join of an empty ``team.run`` region, 2 threads (median of many)
         2. ``small_regions_s``  REGIONS consecutive ``parallel_for(4, body)`` regions, each ``body``
                                 doing ``a[i] += 1`` on a shared int64 array (total time)
         3. ``stencil_1_s`` / ``stencil_2_s``  ITERS sweeps of a 2-D 5-point Jacobi stencil over a
                                 GRID x GRID float64 shared grid (two grids, swapped each sweep), rows
                                 split with ``chunked=True``, with ``num_threads=1`` then 2, in the same
                                 launch; the two results are checked bit for bit against each other
pool     ``multiprocessing.Pool(2)`` (fork) whose workers inherit a ``multiprocessing.RawArray``:
         ``empty_map_s`` = ``pool.map(noop, range(2))``; ``small_maps_s`` = REGIONS consecutive
         ``pool.map(touch, range(4), chunksize=1)``, ``touch`` doing ``a[i] += 1`` on the shared array
memory  ``benchmarks/memory_bench.py``'s measurement, unchanged (``memory_bench.run``): dirty-page
         scan + encode + serialise + parse + merge of a MIB MiB float64 region with 10 % of its pages
         dirty, and a memcpy of the whole region, both in the same launch

The driver reports the median of the launch medians and the target ratios (each formed from figures of
the same launches), and writes ``benchmarks/results/parallel.md`` and ``parallel.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _harness as H

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

NW = 2  # threads per team / Pool workers
WIDTH = 4  # indices per small region / map
ROW_BLOCK = 64  # rows per inner step of the stencil kernel: its temporaries stay in cache


# ------------------------------------------------------------------------------------------ kernels
def noop_region(team: Any) -> None:
    return None


def touch(i: int, a: Any) -> None:
    a[i] += 1


def jacobi_rows(r: range, u: Any, v: Any) -> None:
    """v[rows, 1:-1] = mean of the 4 neighbours in u, for the rows in ``r`` (interior rows only)."""
    import numpy as np

    for s in range(r.start, r.stop, ROW_BLOCK):
        e = min(s + ROW_BLOCK, r.stop)
        out = v[s:e, 1:-1]
        np.add(u[s - 1:e - 1, 1:-1], u[s + 1:e + 1, 1:-1], out=out)
        out += u[s:e, :-2]
        out += u[s:e, 2:]
        out *= 0.25


def matmul_rows(r: range, a: Any, b: Any, c: Any) -> None:
    """c[rows] = a[rows] @ b: a blocked matrix multiply (compute-bound, unlike the stencil)."""
    import numpy as np

    np.matmul(a[r.start:r.stop], b, out=c[r.start:r.stop])


# ------------------------------------------------------------------------------------------ children
def child_granny(res: H.ChildResult, args: argparse.Namespace) -> None:
    import numpy as np

    os.environ.pop("GRANNY_ADDRESS", None)
    os.environ.pop("GRANNY_TOKEN", None)
    os.environ["GRANNY_SLOTS"] = str(NW)
    data_dir = tempfile.mkdtemp(prefix="granny-bench-")
    os.environ["GRANNY_DATA_DIR"] = data_dir
    t0 = H.now()
    import granny
    from granny.parallel import close_teams, parallel, parallel_for

    res.put("import_s", H.single(H.now() - t0))
    res.meta(granny=granny.__version__, numpy=np.__version__)
    client = granny.connect()
    granny.client._shared = client
    try:
        t0 = H.now()
        with parallel(num_threads=NW) as team:  # leases the team's granule
            team.run(noop_region)
            res.put("team_start_s", H.single(H.now() - t0))
            res.put("empty_region_s", H.timed(lambda: team.run(noop_region), iters=20000, warm=200,
                                              budget_s=args.budget, min_iters=200))

        a = granny.shared_array((WIDTH,), "int64")
        shared = {"a": a}
        for _ in range(20):  # warm: the body is cached by the member after its first region
            parallel_for(WIDTH, touch, shared=shared, num_threads=NW)
        a.array[:] = 0
        totals = []
        for _ in range(args.small_rounds):
            t0 = H.now()
            for _ in range(args.regions):
                parallel_for(WIDTH, touch, shared=shared, num_threads=NW)
            totals.append(H.now() - t0)
        assert a.array.tolist() == [args.regions * args.small_rounds] * WIDTH, a.array
        res.put("small_regions_s", H.stats(totals))

        n = args.grid
        rng = np.random.default_rng(0)
        init = rng.random((n, n))
        results = {}
        for threads in (1, NW):
            u = granny.shared_array((n, n), "float64")
            v = granny.shared_array((n, n), "float64")
            u.array[...] = init
            v.array[...] = init  # the boundary rows/columns stay fixed in both grids
            grids = ({"u": u, "v": v}, {"u": v, "v": u})
            parallel_for(range(1, n - 1), jacobi_rows, shared=grids[0], chunked=True, num_threads=threads)  # warm
            u.array[...] = init
            v.array[...] = init
            t0 = H.now()
            for it in range(args.iters):
                parallel_for(range(1, n - 1), jacobi_rows, shared=grids[it % 2], chunked=True, num_threads=threads)
            res.put(f"stencil_{threads}_s", H.single(H.now() - t0))
            results[threads] = (v if args.iters % 2 else u).array.copy()
            u.unlink()
            v.unlink()
            del u, v, grids
        assert np.array_equal(results[1], results[NW]), "the 2-thread stencil differs from the 1-thread one"
        m = args.matmul
        ma, mb = granny.shared_array((m, m), "float64"), granny.shared_array((m, m), "float64")
        ma.array[...] = rng.random((m, m))
        mb.array[...] = rng.random((m, m))
        products = {}
        for threads in (1, NW):
            mc = granny.shared_array((m, m), "float64")
            shared_m = {"a": ma, "b": mb, "c": mc}
            parallel_for(m, matmul_rows, shared=shared_m, chunked=True, num_threads=threads)  # warm
            times = []
            for _ in range(3):
                t0 = H.now()
                parallel_for(m, matmul_rows, shared=shared_m, chunked=True, num_threads=threads)
                times.append(H.now() - t0)
            res.put(f"matmul_{threads}_s", H.stats(times))
            products[threads] = mc.array.copy()
            mc.unlink()
        assert np.allclose(products[1], products[NW]), "the 2-thread matmul differs from the 1-thread one"
        ma.unlink()
        mb.unlink()
        a.unlink()
    finally:
        close_teams()  # before the client: the team's lease is released through it
        granny.client._shared = None
        client.close()
        shutil.rmtree(data_dir, ignore_errors=True)


_POOL_ARR: Any = None


def _pool_init(raw: Any) -> None:
    import numpy as np

    global _POOL_ARR
    _POOL_ARR = np.frombuffer(raw, dtype=np.int64)


def pool_noop(i: int) -> None:
    return None


def pool_touch(i: int) -> None:
    _POOL_ARR[i] += 1


def child_pool(res: H.ChildResult, args: argparse.Namespace) -> None:
    import multiprocessing as mp

    import numpy as np

    ctx = mp.get_context("fork")
    raw = ctx.RawArray("q", WIDTH)  # shared memory the forked workers write into
    arr = np.frombuffer(raw, dtype=np.int64)
    res.meta(start_method="fork", numpy=np.__version__)
    with ctx.Pool(NW, initializer=_pool_init, initargs=(raw,)) as pool:
        res.put("empty_map_s", H.timed(lambda: pool.map(pool_noop, range(NW)), iters=20000, warm=200,
                                       budget_s=args.budget, min_iters=200))
        for _ in range(20):
            pool.map(pool_touch, range(WIDTH), chunksize=1)
        arr[:] = 0
        totals = []
        for _ in range(args.small_rounds):
            t0 = H.now()
            for _ in range(args.regions):
                pool.map(pool_touch, range(WIDTH), chunksize=1)
            totals.append(H.now() - t0)
        assert arr.tolist() == [args.regions * args.small_rounds] * WIDTH, arr
        res.put("small_maps_s", H.stats(totals))


def child_memory(res: H.ChildResult, args: argparse.Namespace) -> None:
    import memory_bench

    _, raw = memory_bench.run(args.mib, 0.10, "float64", args.memory_reps)
    res.put("memcpy_s", H.single(raw["memcpy_s"]))
    for pattern in ("scattered-full", "clustered-full", "scattered-sparse"):
        entry = raw[f"{pattern}/AUTO"]
        res.put(f"join_{pattern}_s", H.single(entry["join_s"]))
        res.put(f"wire_{pattern}_bytes", H.single(entry["wire_bytes"]))


CHILDREN = {"granny": child_granny, "pool": child_pool, "memory": child_memory}
ORDER = ["granny", "pool", "memory"]


def child(system: str, out: str, args: argparse.Namespace) -> int:
    res = H.ChildResult(out, system)
    CHILDREN[system](res, args)
    return 0


# ------------------------------------------------------------------------------------------ driver
def agg(launches: list[H.Launch], system: str, key: str) -> dict[str, Any] | None:
    return H.aggregate(launches, system, key)


def cell(a: dict[str, Any] | None, f: Any = H.fmt_time) -> str:
    if not a:
        return "–"
    return f"{f(a['median'])} ({H.fmt_range(f, a['min'], a['max'])})" if a["n"] > 1 else f(a["median"])


def ratio_of(a: dict[str, Any] | None, b: dict[str, Any] | None) -> tuple[float | None, list[float]]:
    if not a or not b or not b["median"]:
        return None, []
    return a["median"] / b["median"], H.paired_ratios(a, b)


def report(launches: list[H.Launch], cfg: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    g = {k: agg(launches, "granny", k) for k in ("empty_region_s", "small_regions_s", "stencil_1_s",
                                                   "stencil_2_s", "matmul_1_s", "matmul_2_s", "team_start_s",
                                                   "import_s")}
    p = {k: agg(launches, "pool", k) for k in ("empty_map_s", "small_maps_s")}
    m = {k: agg(launches, "memory", k) for k in ("memcpy_s", "join_scattered-full_s", "join_clustered-full_s",
                                                 "join_scattered-sparse_s", "wire_scattered-full_bytes")}
    regions = f"{cfg['regions']:,}"
    rows: list[list[str]] = []
    targets: list[dict[str, Any]] = []

    def verdict(val: float | None, op: str, bound: float) -> str:
        if val is None:
            return "n/a (no data)"
        ok = val <= bound if op == "<=" else val >= bound
        return "✅ pass" if ok else "❌ FAIL"

    def add(label: str, a: dict[str, Any] | None, b: dict[str, Any] | None, b_label: str, target: str,
            op: str, bound: float, value: float | None, paired: list[float], shown: str) -> None:
        v = "–" if target.startswith("(") else verdict(value, op, bound)
        rng = H.fmt_range(H.fmt_ratio, min(paired), max(paired)) if paired else "–"
        rows.append([label, cell(a), f"{b_label}: {cell(b)}" if b_label else "–", shown, rng, target, v])
        targets.append({"target": target, "metric": label, "value": value, "paired": paired, "op": op,
                        "bound": bound, "verdict": v})

    e = g["empty_region_s"]
    add("empty region, 2 threads: fork+join", e, p["empty_map_s"], "Pool `map(noop, range(2))`",
        "≤ 1 ms", "<=", 1e-3, e["median"] if e else None, [], H.fmt_time(e["median"]) if e else "–")
    r, pr = ratio_of(g["small_regions_s"], p["small_maps_s"])
    add(f"{regions} consecutive small regions (total)", g["small_regions_s"], p["small_maps_s"],
        f"Pool, {regions} small `map`s", "≤ 2× Pool", "<=", 2.0, r, pr, H.fmt_ratio(r))
    m1, m2 = g["matmul_1_s"], g["matmul_2_s"]
    mp, mpp = ratio_of(m1, m2)  # speed-up = t(1 thread) / t(2 threads)
    add(f"blocked matmul {cfg['matmul']}² float64 (single-threaded BLAS), 2 threads (speed-up over 1)", m2, m1,
        "1 thread", "speed-up ≥ 1.7×", ">=", 1.7, mp, mpp, H.fmt_ratio(mp))
    s1, s2 = g["stencil_1_s"], g["stencil_2_s"]
    sp, spp = ratio_of(s1, s2)
    add(f"Jacobi stencil {cfg['grid']}² float64, {cfg['iters']} sweeps, 2 threads (memory-bound; speed-up over 1)",
        s2, s1, "1 thread", "(no target)", ">=", 0.0, sp, spp, H.fmt_ratio(sp))
    jr, jpr = ratio_of(m["join_scattered-full_s"], m["memcpy_s"])
    add(f"diff+merge (join) of {cfg['mib']} MiB, 10 % pages dirty, scattered", m["join_scattered-full_s"],
        m["memcpy_s"], "memcpy", "≤ 3× memcpy", "<=", 3.0, jr, jpr, H.fmt_ratio(jr))

    header = ["metric (median of launch medians, min–max)", "granny", "reference (same launches)",
              "ratio", "per-launch ratios", "target", "verdict"]
    main_md = H.md_table(header, rows, align="lrrrrll")

    xrows = [
        ["team start-up: `with parallel(2)` + first region (lease a granule)", cell(g["team_start_s"])],
        ["import granny", cell(g["import_s"])],
    ]
    for pat in ("clustered-full", "scattered-sparse"):
        a = m[f"join_{pat}_s"]
        rr, _ = ratio_of(a, m["memcpy_s"])
        xrows.append([f"diff+merge, 10 % dirty, {pat} (÷ memcpy {H.fmt_ratio(rr)})", cell(a)])
    wire = m["wire_scattered-full_bytes"]
    if wire:
        xrows.append(["diff bytes shipped, scattered-full (of the region)",
                      f"{wire['median'] / 2**20:.2f} MiB ({wire['median'] / (cfg['mib'] * 2**20):.1%})"])
    extras_md = H.md_table(["other figures", "value"], xrows)

    notes = []
    for ln in launches:
        if ln.error:
            notes.append(f"- {ln.system} launch {ln.rep}: {ln.error}")
        if ln.stragglers:
            notes.append(f"- {ln.system} launch {ln.rep}: had to end {len(ln.stragglers)} leftover process(es): "
                         f"{'; '.join(ln.stragglers)[:300]}")

    mi = cfg["machine"]
    body = f"""Generated by `scripts/bench parallel` (`benchmarks/parallel_bench.py`) on {cfg["date"]}: {cfg["reps"]} launches
per system (granny, Pool, memory), each in a fresh process, interleaved round-robin. granny runs an embedded
cluster of 1 worker with 2 slots; a team of 2 threads is the calling process (thread 0) plus one leased
granule. Each cell is the median of the launch medians (min–max over launches). Each ratio is formed from
figures of the same launches: small regions vs Pool(2) doing {regions} small `map`s into a shared
`RawArray`; the stencil on 2 threads vs 1 thread in the same granny launch; the diff+merge vs a memcpy of
the whole region in the same memory launch (`memory_bench.run`, AUTO encoding).
Machine: {mi["cpus"]} CPUs ({mi["cpu_model"]}), {mi["mem_gib"]} GiB, Python {mi["python"]}; load average
{cfg["load_start"]} at start, {cfg["load_end"]} at end; granny rev {cfg["git"]}.

{main_md}

### Other figures

{extras_md}
"""
    if notes:
        body += "\n### Notes\n\n" + "\n".join(notes) + "\n"
    md = "# Parallel regions: fork-join teams vs multiprocessing.Pool\n\n" + body
    js = {
        "benchmark": "parallel",
        "config": cfg,
        "targets": targets,
        "aggregate": {"granny": g, "pool": p, "memory": m},
        "launches": [{"system": ln.system, "rep": ln.rep, "rc": ln.rc, "wall_s": ln.wall_s, "error": ln.error,
                      "stragglers": ln.stragglers, "data": ln.data} for ln in launches],
    }
    return md, js


def driver(args: argparse.Namespace) -> int:
    # One BLAS thread per process (children, the embedded cluster and its granules inherit this): the
    # speed-up must come from the team, not from BLAS threading inside one process.
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = [s for s in systems if s not in CHILDREN]
    if unknown:
        sys.exit(f"unknown system(s): {unknown}; known: {ORDER}")
    cfg: dict[str, Any] = {
        "reps": args.reps, "budget_s": args.budget, "regions": args.regions, "small_rounds": args.small_rounds,
        "grid": args.grid, "iters": args.iters, "mib": args.mib, "matmul": args.matmul, "memory_reps": args.memory_reps,
        "systems": systems, "date": dt.datetime.now().strftime("%Y-%m-%d %H:%M"), "machine": H.machine_info(),
        "load_start": H.loadavg(), "git": H.git_rev(REPO),
    }
    workdir = Path(tempfile.mkdtemp(prefix="parallel-bench-"))
    print(f"[parallel] {len(systems)} systems x {args.reps} launches; raw results and logs in {workdir}",
          file=sys.stderr)
    extra = ["--budget", str(args.budget), "--regions", str(args.regions), "--small-rounds",
             str(args.small_rounds), "--grid", str(args.grid), "--iters", str(args.iters), "--mib", str(args.mib),
             "--memory-reps", str(args.memory_reps)]
    launches: list[H.Launch] = []
    for rep in range(1, args.reps + 1):
        for s in H.rotate(systems, rep - 1):
            print(f"[parallel] rep {rep}/{args.reps} {s:7s} load {H.loadavg()} ...", end="", file=sys.stderr,
                  flush=True)
            ln = H.run_child(Path(__file__).resolve(), s, rep, workdir, args.timeout, extra)
            launches.append(ln)
            print(f" {ln.wall_s:5.1f} s " + ("ok" if not ln.error else f"FAILED ({ln.error[:200]})"),
                  file=sys.stderr)
    cfg["load_end"] = H.loadavg()
    cfg["raw_dir"] = str(workdir)
    md, js = report(launches, cfg)
    out = Path(args.results_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "parallel.md").write_text(md)
    (out / "parallel.json").write_text(json.dumps(js, indent=1, default=str) + "\n")
    print(md)
    print(f"[parallel] wrote {out / 'parallel.md'} and {out / 'parallel.json'}", file=sys.stderr)
    if args.update_readme:
        section = md.split("\n", 2)[2]  # drop the H1: each README has its own heading
        for path in (REPO / "README.md", HERE / "README.md"):
            ok = H.replace_between_markers(path, "<!-- bench:parallel:start -->", "<!-- bench:parallel:end -->",
                                           section)
            print(f"[parallel] {'updated' if ok else 'no bench:parallel markers in'} {path}", file=sys.stderr)
    failed = any(ln.error for ln in launches)
    return 1 if failed else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=int(os.environ.get("REPS", "3")),
                    help="launches per system (env REPS, default 3)")
    ap.add_argument("--systems", default=os.environ.get("SYSTEMS", ",".join(ORDER)),
                    help=f"comma-separated subset of {ORDER} (env SYSTEMS)")
    ap.add_argument("--budget", type=float, default=float(os.environ.get("BUDGET", "2.0")),
                    help="seconds of sampling for the empty-region latency (env BUDGET, default 2)")
    ap.add_argument("--regions", type=int, default=1000, help="consecutive small regions / maps (default 1000)")
    ap.add_argument("--small-rounds", type=int, default=5,
                    help="rounds of --regions regions per launch; the launch reports their median (default 5)")
    ap.add_argument("--grid", type=int, default=4096, help="stencil grid side (default 4096)")
    ap.add_argument("--iters", type=int, default=20, help="stencil sweeps (default 20)")
    ap.add_argument("--matmul", type=int, default=1536, help="matmul side (default 1536)")
    ap.add_argument("--mib", type=int, default=64, help="diff+merge region size in MiB (default 64)")
    ap.add_argument("--memory-reps", type=int, default=9, help="repetitions inside memory_bench.run (default 9)")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds before a launch is abandoned")
    ap.add_argument("--results-dir", default=str(HERE / "results"))
    ap.add_argument("--update-readme", action="store_true",
                    help="also copy the tables into README.md and benchmarks/README.md between their "
                         "bench:parallel markers")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args.child, args.out, args)
    return driver(args)


if __name__ == "__main__":
    sys.exit(main())
