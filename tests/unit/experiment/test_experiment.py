"""The experiment harness: metrics from job events, the runtime calibration, `granny experiment` run/plot."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from granny.experiment import compute, load_model, read_runs, run
from granny.experiment.paper import makespan, trace_name
from granny.sim import Cluster, Job, JobEvent

PAPER = Path("/work/shared/paper-data")


def test_metrics_of_hand_made_events() -> None:
    # 2 hosts x 4. Job 0 (4 ranks, split 2 + 2: 4 links, optimum 0) runs 0..10; job 1 (2 ranks,
    # one host) queues 5 s and runs 5..15.
    events = [
        JobEvent(0, "submit", 0, 4), JobEvent(0, "start", 0, 4, (("a", 2), ("b", 2))),
        JobEvent(0, "submit", 1, 2), JobEvent(5, "start", 1, 2, (("a", 2),)),
        JobEvent(10, "end", 0, 4), JobEvent(15, "end", 1, 2),
    ]
    m = compute(events, Cluster(2, 4))
    assert m.makespan == 15 and m.finished == 2 and m.failed == 0
    assert m.jct_median == pytest.approx(12.5) and m.queue_median == pytest.approx(2.5)
    busy = 4 * 5 + 6 * 5 + 2 * 5  # slot-seconds in use
    assert m.idle_pct == pytest.approx(100 * (1 - busy / (8 * 15)))
    assert m.links_vs_optimum == float("inf")  # links where the optimum has none
    assert m.jct_cdf == [(10, 0.5), (15, 1.0)]
    one = compute([JobEvent(0, "submit", 0, 12), JobEvent(0, "start", 0, 12, (("a", 4), ("b", 4), ("c", 4))),
                   JobEvent(4, "end", 0, 12)], Cluster(3, 8))
    # optimum for 12 ranks on hosts of 8 is 8 + 4: 32 links; 4 + 4 + 4 has 48.
    assert one.links_vs_optimum == pytest.approx(48 / 32)


def test_calibration_loads_and_locality_costs_time() -> None:
    model = load_model()
    for kind in ("mpi-locality", "mpi-migrate", "mpi-spot", "mpi-evict", "omp-elastic"):
        together, split = model.runtime(kind, [8]), model.runtime(kind, [4, 4])
        assert 0 < together < split, kind


def test_run_writes_a_run_directory_and_reads_back(tmp_path: Path) -> None:
    jobs = [Job(i, "mpi-locality", 2 + i % 7, 5.0 * i) for i in range(12)]
    out = run(jobs, 3, 8, "granny", out=tmp_path / "r")
    assert out.metrics.finished == 12 and out.metrics.migrations == 0
    (stored,) = read_runs(tmp_path)
    assert stored.events == out.result.events
    assert stored.metrics["makespan"] == pytest.approx(out.metrics.makespan)


def cli(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "granny", "experiment", *argv], capture_output=True, text=True,
                          timeout=120)


def test_cli_run_testbed_mode_and_plot(tmp_path: Path) -> None:
    trace = tmp_path / "trace_mpi-locality_6_8.csv"
    trace.write_text("TaskId,App,Size,InterArrivalTimeSecs\n0,mpi-locality,4,0\n1,mpi-locality,9,3\n"
                     "2,mpi-locality,5,2\n3,mpi-locality,7,1\n4,mpi-locality,2,0\n5,mpi-locality,12,4\n")
    for name in ("batch", "slurm", "granny", "granny-migrate"):
        done = cli("run", "--trace", str(trace), "--hosts", "3", "--slots", "8", "--scheduler", name,
                   "--mode", "sim", "--out", str(tmp_path / "runs" / name))
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["finished"] == 6
    # testbed mode runs the schedulers the live replay knows how to run; a wrong one is refused before
    # any testbed comes up (tests/dist/test_testbed_replay.py runs it for real)
    live = cli("run", "--trace", str(trace), "--hosts", "3", "--scheduler", "granny-spot", "--mode", "testbed",
               "--out", str(tmp_path / "t"))
    assert live.returncode == 2 and "--mode testbed runs batch, slurm, granny, granny-migrate, granny-elastic" in live.stdout
    assert "Traceback" not in live.stderr and not (tmp_path / "t").exists()
    live = cli("run", "--trace", str(trace), "--hosts", "3", "--scheduler", "granny", "--mode", "testbed",
               "--arrivals", "original", "--out", str(tmp_path / "t"))
    assert live.returncode == 2 and "--arrivals trace" in live.stdout
    bad = cli("run", "--trace", str(trace), "--hosts", "3", "--scheduler", "fifo", "--out", str(tmp_path / "t"))
    assert bad.returncode == 2 and "unknown scheduler 'fifo'" in bad.stdout
    drawn = cli("plot", str(tmp_path / "runs"))
    assert drawn.returncode == 0, drawn.stderr
    pngs = sorted(Path(p).name for p in drawn.stdout.split())
    assert pngs == ["jct_cdf_mpi-locality_3.png", "makespan_mpi-locality.png", "timeline_mpi-locality_3.png"]
    assert all((tmp_path / "runs" / "plots" / p).stat().st_size > 1000 for p in pngs)


@pytest.mark.skipif(not PAPER.is_dir(), reason="the original's data is not on this machine")
def test_the_originals_results_are_read() -> None:
    root = PAPER / "results" / "makespan"
    assert trace_name("trace_mpi-locality_100_8.csv") == ("mpi-locality", 100)
    assert makespan(root, "slurm", 32, "mpi-migrate", 200) == pytest.approx(1706.996, abs=0.01)
    # No makespan file for this one: recomputed from the per-job stamps.
    assert 100 < (makespan(root, "granny", 32, "mpi-migrate", 100) or 0) < 3000


@pytest.mark.skipif(not PAPER.is_dir(), reason="the original's data is not on this machine")
def test_every_trace_family_replays_and_a_sweep_tabulates(tmp_path: Path) -> None:
    from granny.experiment import sweep, table

    for trace in sorted((PAPER / "traces").glob("trace_*_8.csv")):
        if trace.stat().st_size < 2000:  # the small ones: every family, quickly
            out = run(trace, 4, 8, "granny", arrivals="original")
            assert out.metrics.finished == out.metrics.jobs > 0 and out.metrics.failed == 0, trace.name
    rows = sweep(PAPER / "traces", "omp-elastic", ["batch", "granny"], tmp_path, compare=PAPER / "results" / "makespan")
    assert [(r.hosts, r.jobs, r.scheduler) for r in rows][:2] == [(8, 50, "batch"), (8, 50, "granny")]
    assert all(r.original for r in rows)  # the original ran both at every size
    text = table(rows)
    assert text.count("\n") == 2 + len(rows) and "| omp-elastic | 32 | 200 | granny |" in text


def test_migrate_every_is_checked_and_recorded(tmp_path: Path) -> None:
    from granny.errors import ConfigError

    jobs = [Job(i, "mpi-locality", 3 + i % 5, 2.0 * i) for i in range(10)]
    out = run(jobs, 2, 8, "granny-migrate", out=tmp_path / "m", migrate_every=0.05)
    assert json.loads((tmp_path / "m" / "run.json").read_text())["migrate_every"] == 0.05
    assert out.metrics.finished == 10
    with pytest.raises(ConfigError, match="migrate-every"):
        run(jobs, 2, 8, "slurm", migrate_every=0.05)
    with pytest.raises(ConfigError, match="migrate-every"):
        run(jobs, 2, 8, "granny-migrate", migrate_every=1.5)


@pytest.mark.skipif(not PAPER.is_dir(), reason="the original's data is not on this machine")
def test_cli_replays_the_spot_trace_under_evictions(tmp_path: Path) -> None:
    trace = str(PAPER / "traces" / "trace_mpi-spot_10_8.csv")
    done = cli("run", "--scheduler", "granny-spot", "--trace", trace, "--hosts", "4", "--mode", "sim",
               "--arrivals", "original", "--out", str(tmp_path / "spot"))
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)
    assert got["finished"] == 10 and got["failed"] == 0 and got["freezes"] + got["migrations"] > 0
    meta = json.loads((tmp_path / "spot" / "run.json").read_text())
    assert meta["evictions"]["every"] == 60 and meta["evictions"]["hosts_taken"] > 0
    calm = cli("run", "--scheduler", "granny-spot", "--trace", trace, "--hosts", "4", "--evictions", "none",
               "--out", str(tmp_path / "calm"))
    assert calm.returncode == 0 and json.loads(calm.stdout)["freezes"] == 0
    assert "hosts_taken" not in (tmp_path / "calm" / "run.json").read_text()
    bad = cli("run", "--scheduler", "slurm-ft", "--trace", trace, "--hosts", "4", "--evictions", "every=0",
              "--out", str(tmp_path / "bad"))
    assert bad.returncode == 2 and "eviction schedule" in bad.stdout


def test_a_spot_sweep_tabulates_slowdowns(tmp_path: Path) -> None:
    from granny.experiment.spot import spot_sweep, spot_table

    traces = tmp_path / "traces"
    traces.mkdir()
    rows = "".join(f"{i},mpi-migrate,{4 + i % 5},1\n" for i in range(6))
    (traces / "trace_mpi-spot_6_8.csv").write_text("TaskId,App,Size,InterArrivalTimeSecs\n" + rows)
    pairs = spot_sweep(traces, tmp_path / "out", configs=[(4, 6)])
    assert [(p.base, p.spot) for p in pairs] == [("granny", "granny-spot"), ("granny", "granny-spot-late"),
                                                 ("slurm", "slurm-ft"), ("batch", "batch-ft")]
    assert all(p.slowdown >= 1.0 and p.evicted.metrics.finished == 6 for p in pairs)
    text = spot_table(pairs)
    assert text.count("\n") == 2 + 4 and "| 4 | 6 | granny-spot |" in text and "| 4 | 6 | granny-spot-late |" in text


@pytest.mark.skipif(not PAPER.is_dir(), reason="the original's data is not on this machine")
def test_cli_runs_granny_elastic_on_the_omp_trace(tmp_path: Path) -> None:
    trace = str(PAPER / "traces" / "trace_omp-elastic_25_8.csv")
    got = {}
    for name in ("granny", "granny-elastic"):
        done = cli("run", "--scheduler", name, "--trace", trace, "--hosts", "8", "--arrivals", "original",
                   "--out", str(tmp_path / name))
        assert done.returncode == 0, done.stdout + done.stderr
        got[name] = json.loads(done.stdout)
    assert got["granny-elastic"]["finished"] == 25 and got["granny-elastic"]["resizes"] > 0
    assert got["granny"]["resizes"] == 0
    # the teams take the idle slots: fewer of them idle, and the trace done sooner
    assert got["granny-elastic"]["idle_pct"] < got["granny"]["idle_pct"]
    assert got["granny-elastic"]["makespan"] < got["granny"]["makespan"]


def test_cli_writes_a_dfaas_trace_and_runs_it(tmp_path: Path) -> None:
    trace = tmp_path / "mixed.csv"
    made = cli("trace", "--calls", "300", "--hosts", "1", "--slots", "4", "--load", "0.9", "--burst", "8",
               "--burst-every", "60", "--out", str(trace))
    assert made.returncode == 0 and trace.read_text().splitlines()[0].endswith(",Tolerance")
    again = tmp_path / "again.csv"
    cli("trace", "--calls", "300", "--hosts", "1", "--slots", "4", "--load", "0.9", "--burst", "8",
        "--burst-every", "60", "--out", str(again))
    assert again.read_text() == trace.read_text()  # seeded: the same trace
    from granny.experiment.dfaas import summarise
    from granny.experiment.run import load_trace

    jobs = load_trace(trace)
    at_once, tolerant = (run(trace, 1, 4, name) for name in ("granny", "dfaas"))
    a, b = summarise(jobs, at_once.result.events), summarise(jobs, tolerant.result.events)
    assert at_once.metrics.finished == 300 and tolerant.metrics.finished + b.outcomes["refused"] == 300
    # latency-sensitive calls go first, and the deadline guard and admission keep deadlines from being missed
    assert b.ls_wait_p99 < a.ls_wait_p99 and b.outcomes["missed"] < a.outcomes["missed"]


def test_a_live_teams_growth_comes_from_its_apps_placements_and_ends() -> None:
    """live.team_changes: the requests after thread 0's and its team's are the team's growth leases."""
    from granny.experiment.live import team_changes

    base = {("job", 0): "h1", ("job.team", 0): "h1"}
    rows = [(1.0, "app.placed", "r0", {"hosts": {"h1": 1}}), (1.1, "app.placed", "r1", {"hosts": {"h1": 1}}),
            (2.0, "app.placed", "r2", {"hosts": {"h1": 1}}), (2.0, "app.placed", "r3", {"hosts": {"h2": 1}}),
            (3.0, "app.finished", "r3", {}), (3.5, "app.finished", "r1", {}), (4.0, "app.cancelled", "r2", {})]
    assert team_changes(rows, base, 2) == [(2.0, (("h1", 3), ("h2", 1))), (3.0, (("h1", 3),)), (4.0, (("h1", 2),))]
    # a job of one thread has no team request: its first lease is growth already
    assert team_changes(rows[:3], {("job", 0): "h1"}, 1) == [(1.1, (("h1", 2),)), (2.0, (("h1", 3),))]


def test_testbed_sweeps_run_granny_elastic_and_dfaas_only_where_they_differ_from_granny() -> None:
    from granny.experiment.live import LIVE_SCHEDULERS, schedulers_for

    assert {"granny-elastic", "dfaas"} <= set(LIVE_SCHEDULERS)
    both = [Job(0, "omp", 2, 0), Job(1, "fn2", 1, 0, tolerance=-1)]
    assert schedulers_for(both) == list(LIVE_SCHEDULERS)
    assert schedulers_for([Job(0, "mpi-locality", 2, 0), Job(1, "fn2", 1, 0)]) == [
        "batch", "slurm", "granny", "granny-migrate"]  # no OpenMP-style job, no delay-tolerant call


def test_a_scaled_trace_scales_deadlines_with_arrivals_and_keeps_whenever() -> None:
    from granny.experiment.live import Scaling

    jobs = Scaling(2, 0.5).jobs([Job(0, "fn2", 1, 10.0, 60.0), Job(1, "fn5", 1, 0.0, -1.0), Job(2, "fn5", 1, 0.0)])
    assert [(j.arrival, j.tolerance) for j in jobs] == [(5.0, 30.0), (0.0, -1.0), (0.0, 0.0)]
