"""Spot hosts, freeze and thaw, recovery and checkpoints: issue 12's targets (needs root for the testbed).

    scripts/bench spot            # or: .venv/bin/python benchmarks/spot_bench.py --parts freeze,checkpoint --reps 3

Parts (each repeated ``--reps`` times; every cell is the median, with the min-max over reps):

freeze
    A LocalCluster of 2 workers with 4 slots each. A 4-rank world with ``--mib`` MiB of numpy state per rank
    (the array is in the migration point's resume args) runs pinned on local1; a 4-rank blocker holds local2.
    ``set-policy spot`` and an eviction notice on local1 make the planner freeze the world at its next
    migration point (no room anywhere). Once its slots are free, the notice is lifted, and the world thaws
    on local1. Freeze = the ``migration.frozen`` event's ``seconds`` (decision to every rank's state synced
    in the store); thaw = from lifting the notice (client clock, same machine) to the ``migration.thawed``
    event's time. The app's deliberate wait for room is not counted. Baseline, same run: write 4 x MIB MiB
    into files in the planner's data dir (fsync each), drop the page cache (root), read them back.
    Target: freeze + thaw <= 2x (write + read).

recovery
    A 2-host namespace testbed (4 slots per host, heartbeat timeout ``--heartbeat`` s). A 4-rank world,
    h1:2 + h2:2, ``checkpoint=2``, ``--mib`` MiB per rank, waits at a gate after its second checkpoint; then
    ``testbed.cut("h2")``. The planner emits ``migration.recovering`` when h2's heartbeats expire and
    ``migration.recovered`` once all 4 ranks run again on h1 from the checkpoint: the target is on the time
    between the two (<= 1 s, so that cut-to-running is <= heartbeat timeout + 1 s). The result is checked
    against an undisturbed run.

checkpoint
    The LocalCluster above; a 4-rank all-to-all kernel on local1 with ``--mib`` MiB of state per rank (each
    iteration: an Alltoall of a window of the state, folded back, and a pass over the whole state), a
    migration point every 10 iterations, sized to run ``--ckpt-run`` seconds. Runs alternate
    ``checkpoint="10s"`` and no checkpoints; run time = submit to result (client). Target: overhead <= 5%.

trace: benchmarks/spot_trace.py (MPI jobs on 4 testbed hosts, a quarter evicted on a schedule).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sqlite3
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _harness as h
import spot_trace

import granny
from granny.cluster import LocalCluster

ROOT = Path(__file__).resolve().parents[1]
PREFIX = os.environ.get("GRANNY_TEST_NETNS_PREFIX", "gb12")
SUBNET = os.environ.get("GRANNY_TEST_SUBNET", "10.83.0.0/24")
BEGIN, END = "<!-- bench:spot:start -->", "<!-- bench:spot:end -->"


def log(msg: str) -> None:
    print(f"[spot {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def wait_for(pred: Callable[[], Any], timeout: float, what: str, interval: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


# ------------------------------------------------------------------------------------- the MPI programs
# Closures, so that cloudpickle ships them by value (the testbed's hosts cannot import this file).
def make_spinner() -> Callable[..., dict[str, Any]]:
    """Steps until ``flag`` exists, a migration point after each; the state is ``mib`` MiB of float64."""

    def loop(comm: Any, step: int, state: Any, flag: str) -> dict[str, Any]:
        import os
        import time

        import granny as g

        while not comm.bcast(os.path.exists(flag), root=0):
            state[step % state.size] += 1.0
            time.sleep(0.02)
            g.migration_point(loop, comm, step + 1, state, flag)
            step += 1
        return {"steps": step, "sum": float(state.sum()), "host": os.environ.get("GRANNY_HOST_ID", "")}

    def program(comm: Any, flag: str, mib: int) -> dict[str, Any]:
        import numpy as np

        return loop(comm, 0, np.full(mib << 17, float(comm.Get_rank())), flag)

    return program


def make_holder() -> Callable[..., None]:
    def hold(comm: Any, release: str) -> None:
        import os
        import time
        while not os.path.exists(release):
            time.sleep(0.02)

    return hold


def make_gated() -> Callable[..., dict[str, Any]]:
    """Ten steps with a migration point after each; at step 5 the world waits for ``gate`` to exist."""

    def steps(comm: Any, start: int, state: Any, gate: str) -> dict[str, Any]:
        import os
        import time

        import granny as g

        for step in range(start, 10):
            if step == 5:
                while not comm.bcast(os.path.exists(gate), root=0):
                    time.sleep(0.01)
            total = comm.allreduce(float(state[:1000].sum()))
            state[:1000] += total * 1e-9 + step
            g.migration_point(steps, comm, step + 1, state, gate)
        return {"sum": float(state.sum()), "host": os.environ.get("GRANNY_HOST_ID", "")}

    def program(comm: Any, gate: str, mib: int) -> dict[str, Any]:
        import numpy as np

        return steps(comm, 0, np.arange(mib << 17, dtype=np.float64) + comm.Get_rank(), gate)

    return program


def make_a2a() -> Callable[..., dict[str, Any]]:
    """An all-to-all kernel over ``mib`` MiB of state per rank: each iteration an Alltoall of a 1 MiB
    window per peer, folded back into the state, and one pass over the whole state. ``spent[0]``: the
    seconds this rank spent inside migration points (where checkpoints are taken)."""

    def kernel(comm: Any, start: int, iters: int, state: Any, spent: Any, t0: float) -> dict[str, Any]:
        import time

        import numpy as np

        import granny as g

        size = comm.Get_size()
        block = 1 << 17  # float64 per peer: 1 MiB
        recv = np.empty(size * block)
        for i in range(start, iters):
            off = (i * size * block) % (state.size - size * block)
            comm.Alltoall(state[off:off + size * block], recv)
            state[off:off + size * block] = recv * 0.5 + state[off:off + size * block] * 0.5
            np.multiply(state, 0.999999, out=state)
            if (i + 1) % 10 == 0 and i + 1 < iters:
                t = time.perf_counter()
                g.migration_point(kernel, comm, i + 1, iters, state, spent, t0)
                spent[0] += time.perf_counter() - t
        total = comm.allreduce(float(state.sum()))
        return {"sum": total, "elapsed": time.time() - t0, "in_points": float(spent[0])}

    def program(comm: Any, iters: int, mib: int) -> dict[str, Any]:
        import time

        import numpy as np

        rng = np.random.default_rng(comm.Get_rank())
        return kernel(comm, 0, iters, rng.random(mib << 17), np.zeros(1), time.time())

    return program


# ------------------------------------------------------------------------------------------ journal
class Journal:
    """Read-only view of the planner's events table (the planner journals each event with time.time())."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / "journal.sqlite"

    def events(self, req_id: str) -> list[dict[str, Any]]:
        db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=5)
        try:
            rows = db.execute("SELECT id, at, kind, text, data FROM events WHERE req_id=? ORDER BY id",
                              (req_id,)).fetchall()
        finally:
            db.close()
        return [{"id": r[0], "at": r[1], "kind": r[2], "text": r[3], "data": json.loads(r[4] or "{}")} for r in rows]

    def wait(self, req_id: str, kind: str, timeout: float, after: int = 0) -> dict[str, Any]:
        def find() -> dict[str, Any] | None:
            return next((e for e in self.events(req_id) if e["kind"] == f"migration.{kind}" and e["id"] > after), None)

        return wait_for(find, timeout, f"event migration.{kind} of {req_id}", interval=0.05)  # type: ignore[no-any-return]


# --------------------------------------------------------------------------------------- disk baseline
def drop_caches() -> bool:
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def disk_baseline(folder: Path, mib: int, n: int = 4) -> dict[str, Any]:
    """Write n files of mib MiB (fsync each), then read them back (page cache dropped if we can)."""
    import numpy as np

    buf = np.random.default_rng(1).integers(0, 255, mib << 20, dtype=np.uint8)
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"baseline-{i}.bin" for i in range(n)]
    t0 = time.perf_counter()
    for p in paths:
        with open(p, "wb") as f:
            f.write(memoryview(buf))
            f.flush()
            os.fsync(f.fileno())
    write = time.perf_counter() - t0
    dropped = drop_caches()
    out = bytearray(mib << 20)

    def read_all() -> float:
        t = time.perf_counter()
        for p in paths:
            with open(p, "rb", buffering=0) as f:
                view, got = memoryview(out), 0
                while got < len(out):
                    k = f.readinto(view[got:])
                    if not k:
                        break
                    got += k
        return time.perf_counter() - t

    read = read_all()
    cached = read_all()
    for p in paths:
        p.unlink()
    return {"write": write, "read": read, "read_cached": cached, "cold": dropped}


# ---------------------------------------------------------------------------------------------- parts
def idle(client: granny.Client, host: str, n: int) -> bool:
    return any(x.host_id == host and x.alive and x.idle_granules >= n and x.used == 0 for x in client.hosts())


def freeze_rep(cluster: LocalCluster, client: granny.Client, journal: Journal, mib: int, work: Path,
               rep: int) -> dict[str, Any]:
    flag, release = work / f"stop-{rep}", work / f"release-{rep}"
    wait_for(lambda: idle(client, "local1", 4) and idle(client, "local2", 4), 60, "both hosts idle")
    blocker = client.options(hosts="local2:4", migrate=False).submit_mpi(make_holder(), 4, (str(release),))
    app = None
    try:
        wait_for(lambda: any(x.host_id == "local2" and x.used == 4 for x in client.hosts()), 60, "the blocker")
        asks = client.query("counters")["migration"].get("asks", 0)
        app = client.options(hosts="local1:4").submit_mpi(make_spinner(), 4, (str(flag), mib))
        wait_for(lambda: client.query("counters")["migration"].get("asks", 0) > asks, 120, "the first point")
        client.query("set-policy", "spot")
        t_evict = time.time()
        client.query("evict", "local1:5s")  # freezes at its last point before the deadline
        frozen = journal.wait(app.req_id, "frozen", 180)
        freezing = journal.wait(app.req_id, "freezing", 5)
        files = list((cluster.data_dir / "state").rglob("*.state"))
        stored = sum(f.stat().st_size for f in files)
        wait_for(lambda: any(x.host_id == "local1" and x.used == 0 for x in client.hosts()), 60, "slots freed")
        # Room, in steady state, is warm granules: do not count the pool refilling after the freeze.
        try:
            warm = bool(wait_for(lambda: idle(client, "local1", 4), 30, "local1's granules warm again"))
        except TimeoutError:
            warm = False
        t_lift = time.time()
        client.query("evict", "local1:off")
        thawed = journal.wait(app.req_id, "thawed", 180)
        flag.write_text("stop")
        results = app.result(timeout=180)
    finally:
        flag.write_text("stop")
        release.write_text("go")
        client.query("set-policy", "bin-pack")
        client.query("evict", "local1:off")
        with contextlib.suppress(Exception):
            blocker.result(timeout=60)
        if app is not None:
            with contextlib.suppress(Exception):
                app.result(timeout=60)
    steps = results[0]["steps"]
    n = mib << 17
    ok = all(r["steps"] == steps and r["sum"] == float(i * n + steps) for i, r in enumerate(results))
    return {
        "freeze": float(frozen["data"]["seconds"]),
        "decision_after_notice": freezing["at"] - t_evict,
        "thaw": thawed["at"] - t_lift,
        "frozen_wait": float(thawed["data"].get("frozen_s", 0.0)),
        "warm_before_lift": warm,
        "state_files": len(files),
        "stored_bytes": stored,
        "correct": ok,
        "hosts": sorted({r["host"] for r in results}),
    }


def part_freeze(cluster: LocalCluster, client: granny.Client, args: argparse.Namespace, work: Path,
                into: dict[str, Any]) -> None:
    journal = Journal(cluster.data_dir)
    reps: list[dict[str, Any]] = into.setdefault("reps", [])
    bases: list[dict[str, Any]] = into.setdefault("baseline", [])
    for rep in range(args.reps):
        bases.append(disk_baseline(cluster.data_dir / "bench", args.mib))
        log(f"freeze: baseline {bases[-1]}")
        reps.append(freeze_rep(cluster, client, journal, args.mib, work, rep))
        log(f"freeze rep {rep}: {reps[-1]}")


def part_checkpoint(client: granny.Client, args: argparse.Namespace, into: dict[str, Any]) -> None:
    kernel = make_a2a()

    def run(iters: int, ckpt: str | None) -> tuple[float, dict[str, Any]]:
        before = client.query("counters")["migration"].get("checkpoints", 0)
        t0 = time.perf_counter()
        opts = client.options(hosts="local1:4", migrate=False, checkpoint=ckpt) if ckpt else \
            client.options(hosts="local1:4", migrate=False)
        res = opts.submit_mpi(kernel, 4, (iters, args.mib)).result(timeout=args.ckpt_run * 6 + 120)
        wall = time.perf_counter() - t0
        after = client.query("counters")["migration"].get("checkpoints", 0)
        return wall, {"sum": res[0]["sum"], "checkpoints": after - before,
                      "kernel": max(r["elapsed"] for r in res), "in_points": max(r["in_points"] for r in res)}

    wait_for(lambda: idle(client, "local1", 4), 60, "local1 idle")
    probe_iters = 100
    _, probe = run(probe_iters, None)  # the kernel's own time: start-up is not per iteration
    iters = max(20, int(round(args.ckpt_run / (probe["kernel"] / probe_iters) / 10.0)) * 10)
    log(f"checkpoint: {probe_iters} iterations took {probe['kernel']:.2f} s; runs of {iters} iterations")
    into["iterations"] = iters
    reps: list[dict[str, Any]] = into.setdefault("reps", [])
    for rep in range(args.reps):
        row: dict[str, Any] = {}
        order = [("off", None), ("on", "10s")] if rep % 2 == 0 else [("on", "10s"), ("off", None)]
        for name, ckpt in order:
            wait_for(lambda: idle(client, "local1", 4), 60, "local1 idle")
            w, info = run(iters, ckpt)
            row[name] = {"wall": w, **info}
        row["overhead"] = row["on"]["wall"] / row["off"]["wall"] - 1.0
        row["stall"] = stall(row)
        row["same_result"] = row["on"]["sum"] == row["off"]["sum"]
        reps.append(row)
        log(f"checkpoint rep {rep}: {row}")


def part_recovery(args: argparse.Namespace, work: Path, into: dict[str, Any]) -> None:
    from granny.testbed import Testbed

    data = work / "tb-data"
    tb = Testbed(["h1", "h2"], slots=4, prefix=PREFIX, subnet=SUBNET, state_dir=work / "tb",
                 data_dir=data, heartbeat_timeout=args.heartbeat, ready_timeout=120.0)
    tb.up()
    into["heartbeat_timeout"] = args.heartbeat
    reps: list[dict[str, Any]] = into.setdefault("reps", [])
    try:
        client = granny.connect(tb.address, tb.token)
        journal = Journal(data)
        gate = work / "gate"
        try:
            gate.write_text("open")
            calm = client.options(hosts="h1:2,h2:2", migrate=False).submit_mpi(
                make_gated(), 4, (str(gate), args.mib)).result(timeout=300)
            for rep in range(args.reps):
                wait_for(lambda: idle(client, "h1", 4) and idle(client, "h2", 4), 120, "both hosts idle")
                gate.unlink()
                counters = client.query("counters")["migration"]
                fut = client.options(hosts="h1:2,h2:2", migrate=False, checkpoint=2).submit_mpi(
                    make_gated(), 4, (str(gate), args.mib))
                need = counters.get("checkpoints", 0) + 2
                wait_for(lambda need=need: client.query("counters")["migration"].get("checkpoints", 0) >= need,
                         180, "two checkpoints")
                t_cut = time.time()
                tb.cut("h2")
                try:
                    recovering = journal.wait(fut.req_id, "recovering", 120)
                    recovered = journal.wait(fut.req_id, "recovered", 120)
                finally:
                    gate.write_text("open")
                hit = fut.result(timeout=300)
                tb.restore("h2")
                row = {
                    "recovery": recovered["at"] - recovering["at"],
                    "expiry_after_cut": recovering["at"] - t_cut,
                    "cut_to_running": recovered["at"] - t_cut,
                    "checkpoint": recovering["data"].get("checkpoint"),
                    "correct": [r["sum"] for r in hit] == [r["sum"] for r in calm],
                    "hosts": sorted({r["host"] for r in hit}),
                }
                reps.append(row)
                log(f"recovery rep {rep}: {row}")
        finally:
            client.close()
    finally:
        tb.down()


# -------------------------------------------------------------------------------------------- report
def stall(row: dict[str, Any]) -> float:  # share of the run spent in points, on - off: load scales both
    return float(row["on"]["in_points"] / row["on"]["wall"] - row["off"]["in_points"] / row["off"]["wall"])


def med(rows: list[dict[str, Any]], key: Callable[[dict[str, Any]], float]) -> dict[str, float]:
    v = [key(r) for r in rows]
    return {"median": statistics.median(v), "min": min(v), "max": max(v), "n": len(v)}


def cell(s: dict[str, float], f: Callable[[float], str] = h.fmt_time) -> str:
    return f"{f(s['median'])} ({h.fmt_range(f, s['min'], s['max'])})"


def verdict(ok: bool) -> str:
    return "✅ pass" if ok else "❌ FAIL"


def report(res: dict[str, Any]) -> str:
    args = argparse.Namespace(**res["meta"]["args"])
    rows: list[list[str]] = []
    targets: list[list[str]] = []
    notes: list[str] = []
    fr = res.get("freeze")
    if fr and fr.get("reps"):
        reps, bases = fr["reps"], fr["baseline"]
        fz, th = med(reps, lambda r: r["freeze"]), med(reps, lambda r: r["thaw"])
        both = med(reps, lambda r: r["freeze"] + r["thaw"])
        wr, rd = med(bases, lambda b: b["write"]), med(bases, lambda b: b["read"])
        base = med(bases, lambda b: b["write"] + b["read"])
        ratio = both["median"] / base["median"]
        paired = [(r["freeze"] + r["thaw"]) / (b["write"] + b["read"]) for r, b in zip(reps, bases, strict=True)]
        cold = all(b["cold"] for b in bases)
        rows += [
            [f"freeze of 4 ranks × {args.mib} MiB (decision → every rank's state synced in the store)", cell(fz)],
            ["thaw (notice lifted → every rank runs again)", cell(th)],
            ["**freeze + thaw**", cell(both)],
            [f"disk baseline: write 4 × {args.mib} MiB, fsync each", cell(wr)],
            [f"disk baseline: read them back ({'page cache dropped' if cold else 'CACHED: could not drop'})", cell(rd)],
            ["disk baseline: read again, cached", cell(med(bases, lambda b: b["read_cached"]))],
            ["**disk baseline: write + read**", cell(base)],
            ["notice → freeze decision (the app's next migration point; not counted)",
             cell(med(reps, lambda r: r["decision_after_notice"]))],
        ]
        ok = all(r["correct"] and r["state_files"] == 4 for r in reps)
        targets.append(["freeze + thaw ≤ 2× disk write + read", h.fmt_ratio(ratio),
                        h.fmt_range(h.fmt_ratio, min(paired), max(paired)), verdict(ratio <= 2.0)])
        # The thaw reads files the freeze just wrote (page cache); against a cached read it is stricter.
        hot = med(bases, lambda b: b["write"] + b["read_cached"])
        hot_ratio = both["median"] / hot["median"]
        hot_paired = [(r["freeze"] + r["thaw"]) / (b["write"] + b["read_cached"]) for r, b in zip(reps, bases, strict=True)]
        targets.append(["the same, against write + a cached read (stricter)", h.fmt_ratio(hot_ratio),
                        h.fmt_range(h.fmt_ratio, min(hot_paired), max(hot_paired)), verdict(hot_ratio <= 2.0)])
        warm = all(r.get("warm_before_lift", False) for r in reps)
        notes.append("freeze/thaw: the notice was lifted once local1's 4 granules were warm again "
                     f"(in every rep: {warm}); the thawing ranks pull state the freeze just wrote, from the "
                     "page cache, so the cold baseline read is the lenient side")
        notes.append(f"freeze/thaw: results equal the expected sums and 4 state files were stored in every rep: {ok}")
    rc = res.get("recovery")
    if rc and rc.get("reps"):
        reps = rc["reps"]
        rec = med(reps, lambda r: r["recovery"])
        rows += [
            [f"recovery: heartbeat expiry → every rank runs again (4 × {args.mib} MiB, testbed)", cell(rec)],
            [f"recovery: cut → heartbeat expiry (timeout {rc['heartbeat_timeout']:g} s)",
             cell(med(reps, lambda r: r["expiry_after_cut"]))],
            ["recovery: cut → every rank runs again", cell(med(reps, lambda r: r["cut_to_running"]))],
        ]
        targets.append(["recovery ≤ heartbeat timeout + 1 s (expiry → running ≤ 1 s)", h.fmt_time(rec["median"]),
                        h.fmt_range(h.fmt_time, rec["min"], rec["max"]), verdict(rec["median"] <= 1.0)])
        ok = all(r["correct"] and r["hosts"] == ["h1"] for r in reps)
        notes.append(f"recovery: results equal the undisturbed run's and every rank ended on h1 in every rep: {ok}")
    ck = res.get("checkpoint")
    if ck and ck.get("reps"):
        reps = ck["reps"]
        on, off = med(reps, lambda r: r["on"]["wall"]), med(reps, lambda r: r["off"]["wall"])
        over = on["median"] / off["median"] - 1.0
        paired = [r["overhead"] for r in reps]
        nck = med(reps, lambda r: r["on"]["checkpoints"])
        rows += [
            [f"all-to-all kernel, {ck['iterations']} iterations, 4 × {args.mib} MiB, checkpoints off", cell(off)],
            [f"the same, checkpoint every 10 s ({nck['median']:g} checkpoints per run)", cell(on)],
        ]
        targets.append(["checkpoint every 10 s ≤ 5% of run time (run times, on ÷ off − 1)",
                        f"{over * 100:+.1f}% (paired: {statistics.median(paired) * 100:+.1f}%)",
                        f"{min(paired) * 100:+.1f}% – {max(paired) * 100:+.1f}%", verdict(over <= 0.05)])
        if all("in_points" in r["on"] for r in reps):
            st = med(reps, stall)
            pts = med(reps, lambda r: r["on"]["in_points"])
            rows.append(["time the ranks spent in migration points per run, checkpoints on (max over ranks)",
                         cell(pts)])
            rows.append(["the same, checkpoints off", cell(med(reps, lambda r: r["off"]["in_points"]))])
            targets.append(["the same, from the share of the run the ranks spent in migration points, on − off",
                            f"{st['median'] * 100:+.1f}%", f"{st['min'] * 100:+.1f}% – {st['max'] * 100:+.1f}%",
                            verdict(st["median"] <= 0.05)])
        ok = all(r["same_result"] for r in reps)
        notes.append(f"checkpoint: the results with and without checkpoints are equal in every rep: {ok}")
    for name in ("freeze", "recovery", "checkpoint"):
        if res.get(name, {}).get("error"):
            notes.append(f"{name}: FAILED after {len(res[name].get('reps', []))} reps: {res[name]['error']}")
    t_rows, t_targets, t_notes = spot_trace.summarize(res.get("trace", {}))
    rows += t_rows
    notes += t_notes
    if t_targets:
        targets += t_targets
    else:
        targets.append(["spot experiment: makespan with evictions ÷ without (trace on 4 hosts, ¼ evicted every "
                        "minute for a minute) ≤ 1.2", "not done", "–", "–"])
        notes.append(f"spot experiment: {res.get('spot_note', 'not done')}")
    m = res["meta"]
    text = (
        f"Generated by `scripts/bench spot` (`benchmarks/spot_bench.py`) on {m['date']}: {args.reps} reps of each "
        f"part; each cell is the median over reps (min–max). Machine: {m['machine']['cpus']} CPUs "
        f"({m['machine']['cpu_model']}), {m['machine']['mem_gib']} GiB; load average {m['load_start']} at start, "
        f"{m['load_end']} at end; granny rev {m['rev']}. **Noisy:** 2 shared cores, with another helper's "
        "migration benchmark running at the same time.\n\n"
        + h.md_table(["metric", "median (min–max)"], rows) + "\n\n"
        + h.md_table(["target", "measured (median)", "per-rep range", "verdict"], targets, "lrrl") + "\n\n"
        + "\n".join(f"- {n}" for n in notes) + "\n"
    )
    return text


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parts", default="freeze,recovery,checkpoint,trace")
    ap.add_argument("--trace-json", help="take the spot trace's figures from this spot_trace.py output")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--mib", type=int, default=64)
    ap.add_argument("--heartbeat", type=float, default=2.0)
    ap.add_argument("--ckpt-run", type=float, default=45.0, help="seconds of one checkpoint-off run")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "spot"))
    ap.add_argument("--spot-note", default="not done", help="what the report says of the spot experiment")
    ap.add_argument("--update-readme", action="store_true")
    ap.add_argument("--from-json", help="only rewrite the report from this results file")
    args = ap.parse_args()
    out = Path(args.out)
    if args.from_json:
        res = json.loads(Path(args.from_json).read_text())
    else:
        parts = args.parts.split(",")
        res = {"meta": {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": h.machine_info(),
                        "load_start": h.loadavg(), "rev": os.environ.get("GRANNY_BENCH_REV") or h.git_rev(ROOT), "args": vars(args)}}
        res["spot_note"] = args.spot_note

        def save() -> None:
            res["meta"]["load_end"] = h.loadavg()
            out.with_suffix(".json").write_text(json.dumps(res, indent=1))

        def attempt(name: str, fn: Callable[[dict[str, Any]], None]) -> None:
            """A part that fails keeps the reps it finished, and the error is reported."""
            into: dict[str, Any] = res.setdefault(name, {})
            try:
                fn(into)
            except Exception as exc:  # reported with the figures, the other parts still run
                log(f"{name} failed: {traceback.format_exc()}")
                into["error"] = f"{type(exc).__name__}: {exc}"
            save()

        with tempfile.TemporaryDirectory(prefix="spot-bench-") as tmp:
            work = Path(tmp)
            if "freeze" in parts or "checkpoint" in parts:
                cluster = LocalCluster(workers=2, slots=4, data_dir=work / "data", granule_user="same")
                try:
                    with granny.connect(cluster.address, cluster.token) as client:
                        wait_for(lambda: idle(client, "local1", 4) and idle(client, "local2", 4), 120, "warm hosts")
                        if "freeze" in parts:
                            attempt("freeze", lambda into: part_freeze(cluster, client, args, work, into))
                        if "checkpoint" in parts:
                            attempt("checkpoint", lambda into: part_checkpoint(client, args, into))
                finally:
                    cluster.stop()
            if "recovery" in parts:
                attempt("recovery", lambda into: part_recovery(args, work, into))
            if "trace" in parts:
                attempt("trace", lambda into: spot_trace.run_all(spot_trace.defaults(args.reps), work, into, save))
        if args.trace_json:
            res["trace"] = json.loads(Path(args.trace_json).read_text())
        save()
    if args.from_json and args.spot_note != "not done":
        res["spot_note"] = args.spot_note
    if args.from_json and args.trace_json:
        res["trace"] = json.loads(Path(args.trace_json).read_text())
    text = report(res)
    print(text)
    out.with_suffix(".md").write_text("# Spot hosts: freeze and thaw, recovery, checkpoints (issue 12)\n\n" + text)
    if args.update_readme and not h.replace_between_markers(ROOT / "benchmarks" / "README.md", BEGIN, END, text):
        log("benchmarks/README.md has no spot markers: not updated")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
