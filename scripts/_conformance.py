"""Driver of ``scripts/conformance``: runs mpi4py's own unittest suite against granny or Open MPI.

Normally started by ``scripts/conformance`` (which first fetches the suite and, for ``--impl openmpi``,
installs the peer); see ``--help``. For each module and each rank count it launches one job:

    granny:   .venv/bin/granny run -n K RUNNER --suite DIR --out PREFIX MODULE
    openmpi:  mpirun -n K PEERS_PY RUNNER --suite DIR --out PREFIX MODULE

with a timeout (a hang is reported as a hang, naming the test that never finished), then reads the
per-rank JSON files written by ``_conformance_runner.py`` and writes
``build/conformance/conformance[-IMPL].md`` and ``.json`` (ignored by git; ``--update-results`` writes the
committed ``benchmarks/results/`` copies instead): a module × ranks table of passed/failed/errors/skipped,
and every failing test id with the first line of its error.
Exit code: 0 when every selected job ran to completion (failures are reported, not fatal); with
``--strict`` also non-zero when any test failed or errored. 2 for usage errors.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RUNNER = HERE / "_conformance_runner.py"
CACHE = Path(os.environ.get("GRANNY_CACHE", Path.home() / ".cache" / "granny"))
MPI4PY_VERSION = os.environ.get("MPI4PY_VERSION", "4.1.2")
DEFAULT_SUITE = CACHE / f"mpi4py-{MPI4PY_VERSION}" / "test"
DEFAULT_PEER_PY = Path(os.environ.get("PEERS_MPI_VENV", CACHE / "peers-mpi")) / "bin" / "python"
# A run's results go under build/ (ignored by git), so that running the tests leaves the tree as it was; the
# committed copies in benchmarks/results/ change only on purpose, with --update-results.
RUN_RESULTS = REPO / "build" / "conformance"
COMMITTED_RESULTS = REPO / "benchmarks" / "results"
DEFAULT_MODULES = ["test_p2p_obj", "test_p2p_buf", "test_cco_obj", "test_cco_buf", "test_comm", "test_status",
                   "test_request", "test_msgzero", "test_op", "test_rma", "test_rma_nb", "test_win"]
STATUSES = ["pass", "fail", "error", "skip", "xfail", "xpass"]


def log(msg: str) -> None:
    print(f"[conformance] {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------ granny up cluster
class UpCluster:
    """One ``granny up`` for the whole run; GRANNY_ADDRESS/GRANNY_TOKEN of the jobs point at it."""

    def __init__(self, granny: list[str], slots: int) -> None:
        from granny.cluster import UpProcess

        self.data_dir = tempfile.mkdtemp(prefix="granny-conformance-")
        log(f"starting granny up ({slots} slots) in {self.data_dir}")
        try:
            self.up = UpProcess(self.data_dir, slots=slots, new_session=True)
        except Exception:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            raise
        self.proc, self.lines, self.env = self.up.proc, self.up.lines, self.up.env
        log(f"granny up ready at {self.up.address} ({slots} slots)")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def cancel_leftovers(self, granny: list[str], env: dict[str, str]) -> str:
        """After a hung job: a `granny run` that was killed (not interrupted) cannot cancel its app, whose
        granules would keep the slots and make every later job queue. The cluster is private to this run, so cancel every
        app that is not finished; restart the cluster if slots are still in use after that."""
        def cli(*a: str) -> str:
            return subprocess.run([*granny, *a], env=env, capture_output=True, text=True, timeout=30).stdout
        done = []
        try:
            for app in json.loads(cli("status", "--json") or "[]"):
                if app.get("state") not in ("succeeded", "failed", "cancelled"):
                    cli("cancel", app["app_id"])
                    done.append(app["app_id"])
            for _ in range(20):
                if all(h.get("used", 0) == 0 for h in json.loads(cli("hosts", "--json") or "[]")):
                    return f"cancelled leftover app(s) {done}" if done else ""
                time.sleep(0.5)
        except (OSError, ValueError, subprocess.SubprocessError) as e:
            return f"could not cancel leftovers ({e})"
        return "slots still in use after cancelling: restart"

    def stop(self) -> None:
        if self.up.stop() is None and self.proc.poll() is None:
            _kill_group(self.proc)
        shutil.rmtree(self.data_dir, ignore_errors=True)


def _kill_group(proc: subprocess.Popen[Any]) -> None:
    """SIGINT (granny run cancels its app on it), then SIGTERM, then SIGKILL the job's process group."""
    for sig, wait in ((signal.SIGINT, 10), (signal.SIGTERM, 5), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


# ------------------------------------------------------------------------------------------------ jobs
def run_job(cmd: list[str], env: dict[str, str], timeout: float, logfile: Path) -> tuple[int | None, float, bool]:
    t0 = time.monotonic()
    with open(logfile, "w") as lf:
        lf.write("$ " + " ".join(cmd) + "\n")
        lf.flush()
        proc = subprocess.Popen(cmd, stdout=lf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                cwd=str(logfile.parent), start_new_session=True)
        try:
            rc: int | None = proc.wait(timeout=timeout)
            hung = False
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            rc, hung = None, True
        except KeyboardInterrupt:
            _kill_group(proc)
            raise
    return rc, time.monotonic() - t0, hung


def summarise(prefix: Path, k: int, rc: int | None, wall: float, hung: bool, logfile: Path) -> dict[str, Any]:
    ranks: dict[int, dict[str, Any]] = {}
    for r in range(k):
        f = Path(f"{prefix}.rank{r}.json")
        if f.exists():
            try:
                ranks[r] = json.loads(f.read_text())
            except ValueError:
                pass
    r0 = ranks.get(0)
    counts = {s: 0 for s in STATUSES}
    tests: dict[str, Any] = {}
    if r0:
        tests = r0["tests"]
        for t in tests.values():
            counts[t["status"]] = counts.get(t["status"], 0) + 1
    failing: dict[str, dict[str, Any]] = {}  # test id -> {"msg", "ranks"}
    for r, d in sorted(ranks.items()):
        for tid, t in d.get("tests", {}).items():
            if t["status"] in ("fail", "error", "xpass"):
                e = failing.setdefault(tid, {"status": t["status"], "msg": t.get("msg", ""), "ranks": []})
                e["ranks"].append(r)
    if hung:
        state = "hang"
    elif not ranks:
        state = "no output"
    elif any(d.get("fatal") for d in ranks.values()):
        state = "crashed"
    elif len(ranks) < k or not all(d.get("done") for d in ranks.values()):
        state = "incomplete"
    else:
        state = "completed"
    note = ""
    if state != "completed":
        cur = sorted({(d.get("current") or "") for d in ranks.values()} - {""})
        fatal = sorted({d["fatal"] for d in ranks.values() if d.get("fatal")})
        parts = []
        if hung:
            parts.append(f"killed after {wall:.0f} s")
        if cur:
            parts.append("unfinished test: " + ", ".join(cur))
        if fatal:
            parts.append("fatal: " + "; ".join(fatal))
        missing = [r for r in range(k) if r not in ranks]
        if missing:
            parts.append(f"no result file from rank(s) {missing}")
        if rc not in (None, 0) and not fatal:
            parts.append(f"exit code {rc}")
        tail = [ln.strip() for ln in logfile.read_text(errors="replace").splitlines() if ln.strip()][-4:]
        if not ranks or (not cur and not fatal):
            parts.append("log tail: " + " | ".join(tail)[-500:])
        note = "; ".join(parts)
    return {"state": state, "rc": rc, "wall_s": round(wall, 2), "counts": counts, "ntests": len(tests),
            "failing": failing, "note": note, "log": str(logfile),
            "per_rank_counts": {r: d.get("counts", {}) for r, d in ranks.items()}}


# ---------------------------------------------------------------------------------------------- report
def report(results: dict[str, dict[int, dict[str, Any]]], cfg: dict[str, Any]) -> str:
    ranks = cfg["ranks"]
    header = ["module"] + [f"n={k}: pass / fail / error / skip" for k in ranks]
    lines = ["| " + " | ".join(header) + " |", "|---" + "|:---:" * len(ranks) + "|"]
    tot = {k: {s: 0 for s in STATUSES} for k in ranks}
    for mod, per in results.items():
        cells = []
        for k in ranks:
            r = per.get(k)
            if r is None:
                cells.append("–")
                continue
            c = r["counts"]
            for s in STATUSES:
                tot[k][s] += c.get(s, 0)
            txt = f"{c['pass']} / {c['fail']} / {c['error']} / {c['skip']}"
            if c.get("xfail") or c.get("xpass"):
                txt += f" (+{c.get('xfail', 0)} xfail, {c.get('xpass', 0)} xpass)"
            if r["state"] != "completed":
                txt = f"**{r['state'].upper()}** {txt}"
            elif c["fail"] or c["error"]:
                txt = f"❌ {txt}"
            else:
                txt = f"✅ {txt}"
            cells.append(txt)
        lines.append(f"| `{mod}` | " + " | ".join(cells) + " |")
    lines.append("| **total** | " + " | ".join(
        f"**{tot[k]['pass']} / {tot[k]['fail']} / {tot[k]['error']} / {tot[k]['skip']}**" for k in ranks) + " |")
    table = "\n".join(lines)

    notes = []
    for mod, per in results.items():
        for k, r in sorted(per.items()):
            if r["state"] != "completed":
                notes.append(f"- `{mod}` n={k}: **{r['state']}** — {r['note']} (log: `{r['log']}`)")
    fails = []
    for mod, per in results.items():
        merged: dict[str, dict[str, Any]] = {}
        for k, r in sorted(per.items()):
            for tid, e in r["failing"].items():
                m = merged.setdefault(tid, {"status": e["status"], "msg": e["msg"], "where": []})
                m["where"].append(f"n={k} rank {','.join(map(str, e['ranks']))}")
        for tid, m in sorted(merged.items()):
            fails.append(f"- `{tid}` [{m['status']}; {'; '.join(m['where'])}]: {m['msg']}")
    skips: dict[str, set[str]] = {}
    for mod, per in results.items():
        for k, r in per.items():
            for tid, t in r.get("tests", {}).items():
                if t["status"] == "skip":
                    skips.setdefault(f"{t.get('msg', '')}", set()).add(tid.split(".")[0])

    body = f"""# MPI conformance: mpi4py {cfg['mpi4py_version']}'s own test suite against **{cfg['impl']}**

Generated by `scripts/conformance --impl {cfg['impl']}` on {cfg['date']} ({cfg['impl_desc']}); granny rev
{cfg['git']}. The suite is mpi4py's `test/` folder, unmodified, driven by its own `main.py` through
`scripts/_conformance_runner.py`. Counts are rank 0's; a test that failed on another rank only is listed
below with its ranks. Timeout {cfg['timeout']:.0f} s per module per rank count. Total wall time
{cfg['wall_s']:.0f} s.

{table}
"""
    body += "\n### Jobs that did not complete\n\n" + ("\n".join(notes) if notes else "none") + "\n"
    body += f"\n### Failing tests ({len(fails)})\n\n" + ("\n".join(fails) if fails else "none") + "\n"
    if skips:
        body += "\n### Skip reasons (modules)\n\n" + "\n".join(
            f"- {reason or '(no reason)'}: {', '.join(sorted(mods))}" for reason, mods in sorted(skips.items())) + "\n"
    return body


def main() -> int:
    ap = argparse.ArgumentParser(prog="scripts/conformance", description=__doc__.split("\n\n")[0])
    ap.add_argument("--ranks", default=os.environ.get("RANKS", "1,2,3"), help="rank counts (default 1,2,3)")
    ap.add_argument("--impl", choices=["granny", "openmpi"], default="granny")
    ap.add_argument("--timeout", type=float, default=float(os.environ.get("TIMEOUT", "120")),
                    help="seconds per module per rank count (default 120)")
    ap.add_argument("--suite", default=str(DEFAULT_SUITE), help="mpi4py's test/ folder")
    ap.add_argument("--peer-python", default=str(DEFAULT_PEER_PY), help="python of the mpi4py+Open MPI venv")
    ap.add_argument("--granny", default=str(REPO / ".venv" / "bin" / "granny"), help="the granny CLI")
    ap.add_argument("--cluster", choices=["up", "embedded"], default="up",
                    help="granny: one `granny up` for the whole run (default) or the embedded cluster per job")
    ap.add_argument("--results-dir", default=None,
                    help=f"where the .md and .json go (default: {RUN_RESULTS.relative_to(REPO)}/)")
    ap.add_argument("--update-results", action="store_true",
                    help=f"write the committed results in {COMMITTED_RESULTS.relative_to(REPO)}/ instead")
    ap.add_argument("--name", default=None, help="results file stem (default: conformance for granny, "
                                                  "conformance-openmpi for openmpi)")
    ap.add_argument("--strict", action="store_true", help="exit 1 when any test failed or errored")
    ap.add_argument("-v", "--verbose", action="store_true", help="verbose unittest output in the logs")
    ap.add_argument("-x", dest="exclude", action="append", default=[], help="skip tests matching a substring")
    ap.add_argument("modules", nargs="*", help=f"suite modules (default: {' '.join(DEFAULT_MODULES)}; env MODULES)")
    args = ap.parse_args()
    if args.update_results and args.results_dir:
        ap.error("--update-results and --results-dir name two places: give one")
    results_dir = Path(args.results_dir) if args.results_dir else COMMITTED_RESULTS if args.update_results else RUN_RESULTS
    # Started in the background by a non-interactive shell, we inherit SIGINT ignored, and so would our
    # jobs: `granny run` must see SIGINT to cancel its app when a job times out. Restore the default.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        ranks = [int(x) for x in args.ranks.split(",") if x.strip()]
        assert ranks and all(k > 0 for k in ranks)
    except (ValueError, AssertionError):
        ap.error(f"--ranks wants positive integers separated by commas, not {args.ranks!r}")
    modules = args.modules or os.environ.get("MODULES", "").split() or DEFAULT_MODULES
    modules = [m[:-3] if m.endswith(".py") else m for m in modules]
    suite = Path(args.suite).resolve()
    missing = [m for m in modules if not (suite / f"{m}.py").exists()]
    if missing:
        ap.error(f"not in {suite}: {missing}")

    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    cluster: UpCluster | None = None
    if args.impl == "openmpi":
        mpirun = shutil.which("mpirun")
        peer = Path(args.peer_python)
        if not mpirun or not peer.exists():
            log(f"Open MPI peer unavailable (mpirun={mpirun}, {peer} exists={peer.exists()})")
            return 2
        env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMPI_MCA_rmaps_base_oversubscribe="1")
        launch = lambda k: [mpirun, "--oversubscribe", "-n", str(k), str(peer)]  # noqa: E731
        desc = subprocess.run([mpirun, "--version"], capture_output=True, text=True).stdout.splitlines()[0]
        desc += ", mpi4py " + subprocess.run([str(peer), "-c", "import mpi4py; print(mpi4py.__version__)"],
                                             capture_output=True, text=True).stdout.strip()
    else:
        granny = [args.granny] if Path(args.granny).exists() else [sys.executable, "-m", "granny"]
        launch = lambda k: [*granny, "run", "-n", str(k)]  # noqa: E731
        if args.cluster == "up":
            env.pop("GRANNY_ADDRESS", None)
            env.pop("GRANNY_TOKEN", None)
            cluster = UpCluster(granny, max(ranks))
            env.update(cluster.env)
            desc = f"granny run against one `granny up --workers 1 --slots {max(ranks)}`"
        else:
            env.pop("GRANNY_ADDRESS", None)
            env.pop("GRANNY_TOKEN", None)
            desc = "granny run, embedded cluster per job"

    stem = args.name or ("conformance" if args.impl == "granny" else "conformance-openmpi")
    workdir = Path(tempfile.mkdtemp(prefix=f"conformance-{args.impl}-"))
    log(f"{args.impl}: {len(modules)} modules x ranks {ranks}; logs in {workdir}")
    results: dict[str, dict[int, dict[str, Any]]] = {}
    t_start = time.monotonic()
    try:
        for mod in modules:
            for k in ranks:
                if cluster is not None and not cluster.alive():
                    log("the `granny up` cluster died; restarting it")
                    cluster.stop()
                    cluster = UpCluster(granny, max(ranks))
                    env.update(cluster.env)
                prefix = workdir / f"{mod}.n{k}"
                logfile = workdir / f"{mod}.n{k}.log"
                cmd = [*launch(k), str(RUNNER), "--suite", str(suite), "--out", str(prefix)]
                cmd += (["-v"] if args.verbose else []) + [a for x in args.exclude for a in ("-x", x)] + [mod]
                rc, wall, hung = run_job(cmd, env, args.timeout, logfile)
                r = summarise(prefix, k, rc, wall, hung, logfile)
                if cluster is not None and rc != 0:
                    what = cluster.cancel_leftovers(granny, env)
                    if what:
                        log(what)
                        r["note"] = (r["note"] + "; " + what).strip("; ")
                    if what.endswith("restart"):
                        cluster.stop()
                        cluster = UpCluster(granny, max(ranks))
                        env.update(cluster.env)
                r0 = prefix.with_name(prefix.name + ".rank0.json")
                r["tests"] = json.loads(r0.read_text())["tests"] if r0.exists() else {}
                results.setdefault(mod, {})[k] = r
                c = r["counts"]
                log(f"{mod:16s} n={k}: {r['state']:10s} {wall:6.1f} s  pass {c['pass']:4d} fail {c['fail']:3d} "
                    f"error {c['error']:3d} skip {c['skip']:3d}" + (f"  ({r['note'][:160]})" if r["note"] else ""))
    except KeyboardInterrupt:
        log("interrupted: writing what ran so far")
    finally:
        if cluster is not None:
            cluster.stop()

    cfg = {"impl": args.impl, "impl_desc": desc, "ranks": ranks, "modules": modules, "timeout": args.timeout,
           "suite": str(suite), "mpi4py_version": MPI4PY_VERSION, "date": dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
           "git": _git_rev(), "wall_s": time.monotonic() - t_start, "logs": str(workdir)}
    md = report(results, cfg)
    out = results_dir
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.md").write_text(md)
    (out / f"{stem}.json").write_text(json.dumps({"config": cfg, "results": results}, indent=1, default=str) + "\n")
    print(md)
    log(f"wrote {out / (stem + '.md')} and {out / (stem + '.json')}; logs in {workdir}")
    incomplete = any(r["state"] != "completed" for per in results.values() for r in per.values())
    failed = any(r["counts"]["fail"] or r["counts"]["error"] or r["failing"]
                 for per in results.values() for r in per.values())
    if len(results) < len(modules):
        incomplete = True
    return 1 if incomplete or (args.strict and failed) else 0


def _git_rev() -> str:
    try:
        rev = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return (rev or "?") + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "?"


if __name__ == "__main__":
    sys.exit(main())
