"""Task-runtime benchmark: granny vs Ray, Dask distributed and multiprocessing.Pool (2 worker processes).

Usage (normally through ``scripts/bench tasks``)::

    python benchmarks/tasks_bench.py [--reps N] [--systems granny,granny-up,ray,dask,pool]
                                     [--ntasks 10000] [--budget 2.0] [--update-readme]

Every system runs in its own fresh child process, REPS times (env ``REPS``, default 3), interleaved
round-robin with a rotating order (see ``_harness``). Each launch measures, in this order:

1. ``startup_s``        fresh cluster until the first no-op result is back (package import excluded
                        and reported apart as ``import_s``):
                        granny     ``granny.connect()`` (embedded planner + 1 worker, GRANNY_SLOTS=2)
                        granny-up  launching ``granny up --workers 1 --slots 2 --data-dir TMP --port 0``
                                   as a subprocess, waiting for its ``READY`` line, then
                                   ``granny.connect(address, token)`` and a first task
                        ray        ``ray.init(num_cpus=2)``; dask ``LocalCluster(2 procs x 1 thread)`` +
                        ``Client``; pool ``multiprocessing.Pool(2)``
2. ``noop_rtt_s``       sequential submit→result of a no-op (median, after warm-up)
3. ``throughput_per_s`` NTASKS individual submits of a no-op, then wait for all
4. ``arg8mib_s``        submit→result of a task taking an 8 MiB float64 ndarray by value (median)
then ``shutdown_s``. The driver reports the median of the launch medians and granny ÷ peer ratios,
and writes ``benchmarks/results/tasks.md`` and ``tasks.json``.

Task functions live in this file, so in a child they belong to ``__main__`` and every runtime ships
them by value (cloudpickle) rather than by import.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import datetime as dt
import importlib.util
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _harness as H
from _peers import NW, PEERS, TaskSystem

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
ARR_LEN = 1 << 20  # float64 -> 8 MiB


# ------------------------------------------------------------------------------------------ the tasks
def noop(x: Any = None) -> Any:
    return x


def takes_arr(a: Any) -> int:
    return int(a.shape[0])


# ------------------------------------------------------------------------------------------ granny
class GrannySystem(TaskSystem):
    """Embedded cluster: ``granny.connect()`` with no address (planner + 1 worker, GRANNY_SLOTS=2)."""

    name = "granny"

    def __init__(self) -> None:
        super().__init__()
        import granny

        self.granny = granny
        self.meta["granny"] = getattr(granny, "__version__", "?")
        self.client: Any = None
        self.data_dir = ""

    def start(self) -> None:
        # A fresh, private embedded cluster: never one named by the caller's environment.
        os.environ.pop("GRANNY_ADDRESS", None)
        os.environ.pop("GRANNY_TOKEN", None)
        os.environ["GRANNY_SLOTS"] = str(NW)
        self.data_dir = tempfile.mkdtemp(prefix="granny-bench-")
        os.environ["GRANNY_DATA_DIR"] = self.data_dir
        self.client = self.granny.connect()

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return self.client.submit(fn, *args).result(timeout=120)

    def submit_all(self, fn: Callable[..., Any], args: Sequence[Any]) -> Any:
        submit = self.client.submit
        return [submit(fn, a) for a in args]

    def wait_all(self, handle: Any) -> None:
        _, pending = cf.wait(handle, timeout=600)
        if pending:
            raise TimeoutError(f"{len(pending)} of {len(handle)} futures still pending after 600 s")

    def results(self, handle: Any) -> list[Any]:
        return [f.result() for f in handle]

    def stop(self) -> None:
        try:
            if self.client is not None:
                self.client.close()
        finally:
            if self.data_dir:
                shutil.rmtree(self.data_dir, ignore_errors=True)


class GrannyUpSystem(GrannySystem):
    """A ``granny up`` cluster started as a subprocess; the client connects by address and token."""

    name = "granny-up"
    READY_TIMEOUT_S = 60.0

    def __init__(self) -> None:
        super().__init__()
        self.up: Any = None
        self.data_dir = ""

    def start(self) -> None:
        from granny.cluster import UpProcess, granny_command  # the one `granny up` launcher

        self.meta["launcher"] = " ".join(Path(c).name for c in granny_command())
        self.data_dir = tempfile.mkdtemp(prefix="granny-bench-")
        self.up = UpProcess(self.data_dir, slots=NW, timeout=self.READY_TIMEOUT_S)
        self.details["up_ready_s"] = self.up.ready_s
        self.meta["ready_line"] = self.up.ready_line
        self.client = self.granny.connect(address=self.up.address, token=self.up.token)

    def stop(self) -> None:
        try:
            if self.client is not None:
                self.client.close()
        finally:
            if self.up is not None:
                code = self.up.stop()
                self.meta["up_exit_code"] = code if code is not None else "no exit 15 s after SIGINT; terminated"
            if self.data_dir:
                shutil.rmtree(self.data_dir, ignore_errors=True)


SYSTEMS: dict[str, tuple[str, Callable[[], TaskSystem]]] = {
    "granny": ("granny.client", GrannySystem),
    "granny-up": ("granny.cli", GrannyUpSystem),
    **PEERS,
}
ORDER = ["granny", "granny-up", "ray", "dask", "pool"]
LABEL = {"granny": "granny", "granny-up": "granny up", "ray": "Ray", "dask": "Dask", "pool": "Pool"}


# ------------------------------------------------------------------------------------------ child
def child(system: str, out: str, ntasks: int, budget: float, tp_rounds: int) -> int:
    import numpy as np

    res = H.ChildResult(out, system)
    t0 = H.now()
    try:
        s = SYSTEMS[system][1]()
    except ImportError as e:
        res.meta(skipped=f"not importable: {e}")
        print(f"{system}: skipped, {e}", file=sys.stderr)
        return 0
    res.put("import_s", H.single(H.now() - t0))
    res.meta(**s.meta)

    t0 = H.now()
    try:
        s.start()
        first = s.call(noop, 1)
        res.put("startup_s", H.single(H.now() - t0))
        assert first == 1, f"noop(1) returned {first!r}"
        for k, v in s.details.items():
            res.put(k, H.single(v))
        res.meta(**s.meta)

        res.put(
            "noop_rtt_s", H.timed(lambda: s.call(noop), iters=5000, warm=50, budget_s=budget, min_iters=30)
        )

        h = s.submit_all(noop, list(range(200)))  # warm-up: every worker process has run tasks
        s.wait_all(h)
        del h
        rates = []
        for _ in range(tp_rounds):
            args = list(range(ntasks))
            t0 = H.now()
            h = s.submit_all(noop, args)
            s.wait_all(h)
            rates.append(ntasks / (H.now() - t0))
            got = s.results(h)
            assert got == args, "throughput: wrong results"
            del h, got
        res.put("throughput_per_s", H.stats(rates))

        arr = np.ones(ARR_LEN)
        assert s.call(takes_arr, arr) == ARR_LEN
        res.put(
            "arg8mib_s",
            H.timed(lambda: s.call(takes_arr, arr), iters=200, warm=3, budget_s=budget, min_iters=10),
        )
    finally:
        t0 = H.now()
        s.stop()
        res.put("shutdown_s", H.single(H.now() - t0))
        res.meta(**s.meta)
    return 0


# ------------------------------------------------------------------------------------------ driver
MAIN_ROWS = [  # key, label, kind ("time": lower is better, "rate": higher is better)
    ("noop_rtt_s", "no-op submit→result, sequential", "time"),
    ("throughput_per_s", "throughput, {ntasks} individual submits, then wait all", "rate"),
    ("arg8mib_s", "task taking an 8 MiB ndarray by value", "time"),
    ("startup_s", "start-up until the first result ¹", "time"),
]
EXTRA_ROWS = [
    ("import_s", "import of the package (not in start-up)", "time"),
    ("up_ready_s", "`granny up` launched → READY line", "time"),
    ("shutdown_s", "shutdown (close / shutdown / SIGINT + exit)", "time"),
]
TARGETS = [  # metric, peer (None: absolute), op, bound, text, systems it applies to
    ("noop_rtt_s", "ray", "<=", 0.2, "no-op RTT ≤ 0.2× Ray", ("granny", "granny-up")),
    ("noop_rtt_s", "pool", "<=", 2.0, "no-op RTT ≤ 2× Pool", ("granny", "granny-up")),
    ("throughput_per_s", "ray", ">=", 5.0, "throughput ≥ 5× Ray", ("granny", "granny-up")),
    ("arg8mib_s", "ray", "<=", 1.0, "8 MiB argument no slower than Ray", ("granny", "granny-up")),
    ("startup_s", None, "<", 1.0, "`granny up` → first result < 1 s", ("granny-up",)),
]


def available(system: str) -> str | None:
    """None if the system can run, else why not (checked without importing it)."""
    mod = SYSTEMS[system][0]
    try:
        if importlib.util.find_spec(mod) is None:
            return f"`{mod}` not importable"
    except (ImportError, ValueError) as e:
        return f"`{mod}` not importable ({e})"
    return None


def cell(agg: dict[str, Any] | None, kind: str) -> str:
    if not agg:
        return "–"
    f = H.fmt_rate if kind == "rate" else H.fmt_time
    if agg["n"] > 1:
        return f"{f(agg['median'])} ({H.fmt_range(f, agg['min'], agg['max'])})"
    return f(agg["median"])


def check(value: float, op: str, bound: float) -> bool:
    return {"<=": value <= bound, ">=": value >= bound, "<": value < bound}[op]


def report(
    launches: list[H.Launch], systems: list[str], status: dict[str, str], cfg: dict[str, Any]
) -> tuple[str, dict[str, Any]]:
    ran = [s for s in systems if status[s] == "ok"]
    agg = {s: {k: H.aggregate(launches, s, k) for k, _, _ in MAIN_ROWS + EXTRA_ROWS} for s in ran}
    primary = next((s for s in ("granny", "granny-up") if s in ran), None)
    peers = [s for s in ("ray", "dask", "pool") if s in ran]
    ntasks = f"{cfg['ntasks']:,}"

    def version(s: str) -> str:
        m: dict[str, Any] = next(
            (ln.data.get("_meta", {}) for ln in launches if ln.system == s and ln.data), {}
        )
        return {
            "ray": f"Ray {m.get('ray', '')}",
            "dask": f"Dask {m.get('distributed', '')}",
            "pool": f"Pool(2), {m.get('start_method', '')}",
            "granny": "granny (embedded)",
            "granny-up": "granny up",
        }[s].strip()

    cols = [s for s in ORDER if s in ran]
    header = ["metric (median of launch medians, min–max)"] + [version(s) for s in cols]
    if primary:
        header += [f"{LABEL[primary]} ÷ {LABEL[p]}" for p in peers]
    rows, ratios = [], {}
    for key, label, kind in MAIN_ROWS:
        row = [label.format(ntasks=ntasks)] + [cell(agg[s][key], kind) for s in cols]
        if primary:
            for p in peers:
                a, b = agg[primary][key], agg[p][key]
                r = a["median"] / b["median"] if a and b else None
                ratios[f"{primary}/{p}:{key}"] = r
                row.append(H.fmt_ratio(r))
        rows.append(row)
    main_md = H.md_table(header, rows)

    trows, targets = [], []
    for key, peer, op, bound, text, applies in TARGETS:
        for s in applies:
            if s not in ran:
                continue
            a = agg[s][key]
            entry: dict[str, Any] = {
                "target": text,
                "system": s,
                "metric": key,
                "peer": peer,
                "op": op,
                "bound": bound,
            }
            if peer is None:
                val = a["median"] if a else None
                rng = H.fmt_range(H.fmt_time, a["min"], a["max"]) if a else "–"
                shown = H.fmt_time(val)
            else:
                b = agg.get(peer, {}).get(key) if peer in ran else None
                val = a["median"] / b["median"] if a and b else None
                pr = H.paired_ratios(a, b)
                rng = H.fmt_range(H.fmt_ratio, min(pr), max(pr)) if pr else "–"
                shown = H.fmt_ratio(val)
                entry["paired_ratios"] = pr
            if val is None:
                verdict = (
                    "n/a (" + (f"{LABEL[peer]} did not run" if peer and peer not in ran else "no data") + ")"
                )
            else:
                verdict = "✅ pass" if check(val, op, bound) else "❌ FAIL"
            entry.update(value=val, verdict=verdict)
            targets.append(entry)
            trows.append([text, LABEL[s], shown, rng, verdict])
    targets_md = (
        H.md_table(
            ["target", "granny variant", "measured (ratio of medians)", "per-launch range", "verdict"],
            trows,
            align="llrrl",
        )
        if trows
        else "_no granny figures: targets not checked_"
    )

    xrows = []
    for key, label, kind in EXTRA_ROWS:
        cells = [cell(agg[s][key], kind) for s in cols]
        if any(c != "–" for c in cells):
            xrows.append([label] + cells)
    extras_md = H.md_table(["other timings"] + [version(s) for s in cols], xrows) if xrows else ""

    notes = []
    for s in systems:
        if status[s] != "ok":
            notes.append(f"- **{LABEL[s]}**: {status[s]}")
    for ln in launches:
        if ln.error:
            notes.append(f"- {LABEL[ln.system]} launch {ln.rep}: {ln.error}")
        if ln.stragglers:
            notes.append(
                f"- {LABEL[ln.system]} launch {ln.rep}: had to end {len(ln.stragglers)} leftover process(es) "
                f"after it exited: {'; '.join(ln.stragglers)[:300]}"
            )

    m = cfg["machine"]
    body = f"""Generated by `scripts/bench tasks` (`benchmarks/tasks_bench.py`) on {cfg["date"]}: {cfg["reps"]} launches per
system, each in a fresh process, interleaved round-robin; every system uses 2 worker processes. Each cell is
the median of the launch medians (min–max over launches). Ratios are {LABEL[primary] if primary else "granny"} ÷ peer
of the figure in that row: below 1× is better for times, above 1× is better for throughput.
Machine: {m["cpus"]} CPUs ({m["cpu_model"]}), {m["mem_gib"]} GiB, Python {m["python"]}; load average
{cfg["load_start"]} at start, {cfg["load_end"]} at end; granny rev {cfg["git"]}. Absolute times drift 20–50 % between
runs on this shared machine: compare the ratios, which were measured side by side.

{main_md}

¹ Start-up, fresh cluster until the first no-op result is back (import excluded): granny (embedded) =
`granny.connect()`; granny up = launching `granny up --workers 1 --slots 2 --data-dir TMP --port 0` as a
subprocess, its READY line, `granny.connect(address, token)` and the first task; Ray = `ray.init(num_cpus=2)`;
Dask = `LocalCluster(n_workers=2, threads_per_worker=1, processes=True)` + `Client`; Pool = `Pool(2)`.
The other rows of the granny up column run against that `granny up` cluster.

### Targets

{targets_md}

### Other timings

{extras_md}
"""
    if notes:
        body += "\n### Notes\n\n" + "\n".join(notes) + "\n"
    md = "# Task runtimes: granny vs Ray, Dask and multiprocessing.Pool\n\n" + body

    js = {
        "benchmark": "tasks",
        "config": cfg,
        "status": status,
        "ratios": ratios,
        "targets": targets,
        "aggregate": agg,
        "launches": [
            {
                "system": ln.system,
                "rep": ln.rep,
                "rc": ln.rc,
                "wall_s": ln.wall_s,
                "error": ln.error,
                "stragglers": ln.stragglers,
                "data": ln.data,
            }
            for ln in launches
        ],
    }
    return md, js


def driver(args: argparse.Namespace) -> int:
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = [s for s in systems if s not in SYSTEMS]
    if unknown:
        sys.exit(f"unknown system(s): {unknown}; known: {list(SYSTEMS)}")
    status = {}
    for s in systems:
        why = available(s)
        status[s] = "ok" if why is None else f"skipped: {why}"
        if why:
            print(f"[tasks] {LABEL[s]}: skipped ({why})", file=sys.stderr)
    runnable = [s for s in systems if status[s] == "ok"]

    cfg: dict[str, Any] = {
        "reps": args.reps,
        "ntasks": args.ntasks,
        "budget_s": args.budget,
        "tp_rounds": args.tp_rounds,
        "systems": systems,
        "date": dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "machine": H.machine_info(),
        "load_start": H.loadavg(),
        "git": H.git_rev(REPO),
    }
    workdir = Path(tempfile.mkdtemp(prefix="tasks-bench-"))
    print(
        f"[tasks] {len(runnable)} systems x {args.reps} launches; raw results and logs in {workdir}",
        file=sys.stderr,
    )
    extra = ["--ntasks", str(args.ntasks), "--budget", str(args.budget), "--tp-rounds", str(args.tp_rounds)]
    launches: list[H.Launch] = []
    for rep in range(1, args.reps + 1):
        for s in H.rotate(runnable, rep - 1):
            print(
                f"[tasks] rep {rep}/{args.reps} {LABEL[s]:9s} load {H.loadavg()} ...",
                end="",
                file=sys.stderr,
                flush=True,
            )
            ln = H.run_child(Path(__file__).resolve(), s, rep, workdir, args.timeout, extra)
            launches.append(ln)
            skipped = ln.data.get("_meta", {}).get("skipped")
            if skipped:
                status[s] = f"skipped: {skipped}"
            print(
                f" {ln.wall_s:5.1f} s " + ("ok" if not ln.error else f"FAILED ({ln.error[:200]})"),
                file=sys.stderr,
            )
        runnable = [s for s in runnable if status[s] == "ok"]
    for s in systems:
        if status[s] == "ok" and not any(ln.system == s and "noop_rtt_s" in ln.data for ln in launches):
            status[s] = "failed in every launch (see notes)"
    cfg["load_end"] = H.loadavg()
    cfg["raw_dir"] = str(workdir)

    md, js = report(launches, systems, status, cfg)
    out = Path(args.results_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "tasks.md").write_text(md)
    (out / "tasks.json").write_text(json.dumps(js, indent=1, default=str) + "\n")
    print(md)
    print(f"[tasks] wrote {out / 'tasks.md'} and {out / 'tasks.json'}", file=sys.stderr)
    if args.update_readme:
        body = md.split("\n", 2)[2]  # drop the H1: the README section has its own heading
        ok = H.replace_between_markers(
            HERE / "README.md", "<!-- tasks-results:begin -->", "<!-- tasks-results:end -->", body
        )
        print(f"[tasks] {'updated' if ok else 'no markers found in'} {HERE / 'README.md'}", file=sys.stderr)
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--reps",
        type=int,
        default=int(os.environ.get("REPS", "3")),
        help="launches per system (env REPS, default 3)",
    )
    ap.add_argument(
        "--systems",
        default=os.environ.get("SYSTEMS", ",".join(ORDER)),
        help=f"comma-separated subset of {ORDER} (env SYSTEMS)",
    )
    ap.add_argument(
        "--ntasks",
        type=int,
        default=int(os.environ.get("NTASKS", "10000")),
        help="tasks in the throughput test (env NTASKS, default 10000)",
    )
    ap.add_argument(
        "--budget",
        type=float,
        default=float(os.environ.get("BUDGET", "2.0")),
        help="seconds of sampling per latency metric per launch (env BUDGET, default 2)",
    )
    ap.add_argument("--tp-rounds", type=int, default=1, help="throughput rounds per launch (default 1)")
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds before a launch is abandoned")
    ap.add_argument("--results-dir", default=str(HERE / "results"))
    ap.add_argument(
        "--update-readme",
        action="store_true",
        help="also copy the tables into benchmarks/README.md between its result markers",
    )
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args.child, args.out, args.ntasks, args.budget, args.tp_rounds)
    return driver(args)


if __name__ == "__main__":
    sys.exit(main())
