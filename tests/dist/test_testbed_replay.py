"""``granny experiment run --mode testbed``: a tiny trace replayed live on the namespace testbed, end to end.

Four short jobs (two MPI worlds, two OpenMP-style jobs, one and two ranks or threads each once scaled
onto 2-slot hosts) run as real processes on two testbed hosts; the run directory must hold what a
simulated run's does, consistent with itself: every job submitted, started on real hosts with as many
granules as it has, and ended after it started; the metrics are those of its events; and the simulated
run of the same scaled trace sits beside it.
"""

from __future__ import annotations

import json
from pathlib import Path

from granny.experiment import compute
from granny.experiment.cli import main
from granny.sim import Cluster, JobEvent

from .conftest import PREFIX, SUBNET, require_root

TRACE = """\
TaskId,App,Size,InterArrivalTimeSecs
0,mpi-migrate,8,0
1,omp,7,2
2,mpi-migrate,3,1
3,omp,2,0
"""
KERNEL = "steps=4,serial=0.5,work=1,nbytes=65536,omp_nbytes=65536"  # about 1-1.5 s a job


def read(run: Path) -> tuple[dict[str, object], list[JobEvent], dict[str, object]]:
    events = [JobEvent.from_json(json.loads(line)) for line in (run / "events.jsonl").read_text().splitlines()]
    return json.loads((run / "run.json").read_text()), events, json.loads((run / "metrics.json").read_text())


def test_a_tiny_trace_replays_live_and_its_results_are_consistent(tmp_path: Path,
                                                                  capsys: object) -> None:
    require_root()
    trace = tmp_path / "trace.csv"
    trace.write_text(TRACE)
    out = tmp_path / "run"
    code = main(["run", "--mode", "testbed", "--trace", str(trace), "--hosts", "2", "--slots", "2",
                 "--scheduler", "granny-migrate", "--netns-prefix", PREFIX, "--subnet", SUBNET, "--kernel", KERNEL,
                 "--time-scale", "0.2", "--out", str(out)])
    assert code == 0
    meta, events, metrics = read(out)
    assert meta["mode"] == "testbed" and meta["scheduler"] == "granny-migrate"
    assert meta["scaling"]["time_scale"] == 0.2  # type: ignore[index]
    sizes = {0: 2, 1: 2, 2: 1, 3: 1}  # ceil(S x 2 / 8)
    for job, size in sizes.items():
        mine = [e for e in events if e.job_id == job]
        assert [e.what for e in mine if e.what in ("submit", "start", "end")] == ["submit", "start", "end"], mine
        submit, start, end = (next(e for e in mine if e.what == w) for w in ("submit", "start", "end"))
        assert {e.size for e in mine} == {size}
        assert sum(c for _, c in start.counts) == size and {h for h, _ in start.counts} <= {"h1", "h2"}, start
        assert submit.t <= start.t < end.t, mine
    assert abs(min(e.t for e in events if e.what == "submit")) < 1.0  # times count from the first submission
    assert metrics["jobs"] == 4 and metrics["finished"] == 4 and metrics["failed"] == 0
    assert metrics["makespan"] == max(e.t for e in events if e.what == "end") - min(e.t for e in events)
    assert metrics["makespan"] > 0  # type: ignore[operator]
    again = compute(events, Cluster(2, 2)).to_json()
    assert json.loads(json.dumps(again)) == metrics  # the metrics are those of the recorded events
    _, sim_events, sim_metrics = read(out / "sim")
    assert sim_metrics["finished"] == 4 and sim_metrics["makespan"] > 0  # type: ignore[operator]
    assert sorted(e.job_id for e in sim_events if e.what == "start") == [0, 1, 2, 3]


ELASTIC_TRACE = """\
TaskId,App,Size,InterArrivalTimeSecs
0,omp,2,0
1,omp,4,15
2,omp,8,15
"""


def test_an_omp_trace_replays_live_with_elastic_teams_that_grow(tmp_path: Path) -> None:
    """granny-elastic live: OpenMP-style jobs of 1, 2 and 4 threads (scaled onto 4-slot hosts), far enough
    apart that each finds its host free of the others' work. Each team grows into its host's free
    slots: the planner's journal shows its leases placed (``resize`` events of more threads than the
    job asked for), and the simulator's granny-elastic places every job on the same host and grows it
    too."""
    require_root()
    trace = tmp_path / "trace.csv"
    trace.write_text(ELASTIC_TRACE)
    out = tmp_path / "run"
    code = main(["run", "--mode", "testbed", "--trace", str(trace), "--hosts", "2", "--slots", "4",
                 "--scheduler", "granny-elastic", "--netns-prefix", PREFIX, "--subnet", SUBNET,
                 "--kernel", "steps=10,serial=0.5,work=4", "--time-scale", "0.4", "--out", str(out)])
    assert code == 0
    meta, events, metrics = read(out)
    assert meta["scheduler"] == "granny-elastic" and metrics["finished"] == 3 and metrics["failed"] == 0
    _, sim_events, sim_metrics = read(out / "sim")
    assert sim_metrics["finished"] == 3
    for job, size in {0: 1, 1: 2, 2: 4}.items():
        for run in (events, sim_events):
            mine = [e for e in run if e.job_id == job]
            start = next(e for e in mine if e.what == "start")
            assert sum(c for _, c in start.counts) == size, mine
            if size < 4:  # (a job of 4 threads fills its host: nothing to grow into)
                # (live, the leases of one fork may be placed, and journaled, a moment apart)
                grown = [e.counts for e in mine if e.what == "resize" and sum(c for _, c in e.counts) > size]
                assert ((start.counts[0][0], 4),) in grown, mine  # the whole host, never another one
                assert all(len(c) == 1 and c[0][0] == start.counts[0][0] for c in grown), mine
    starts = {e.job_id: e.counts for e in events if e.what == "start"}
    assert starts == {e.job_id: e.counts for e in sim_events if e.what == "start"}  # the same decisions
    assert metrics["resizes"] >= 2


CALLS_TRACE = """\
TaskId,App,Size,InterArrivalTimeSecs,Tolerance
0,fn10,1,0,0
1,fn20,1,0,120
2,fn20,1,0,-1
3,fn10,1,0,60
4,fn10,1,5,0
5,fn5,1,0,0
6,fn20,1,0,100
7,fn2,1,5,0
8,fn5,1,0,-1
9,fn10,1,0,0
"""


def test_a_mixed_trace_of_calls_replays_live_under_dfaas(tmp_path: Path) -> None:
    """dfaas live: function calls sleeping their (scaled) seconds; the delay-tolerant ones go to the
    planner's batch queue with their scaled tolerance, and each meets its deadline; the simulated twin
    runs every call too."""
    require_root()
    trace = tmp_path / "trace.csv"
    trace.write_text(CALLS_TRACE)
    out = tmp_path / "run"
    code = main(["run", "--mode", "testbed", "--trace", str(trace), "--hosts", "2", "--slots", "2",
                 "--scheduler", "dfaas", "--netns-prefix", PREFIX, "--subnet", SUBNET, "--time-scale", "0.2",
                 "--out", str(out)])
    assert code == 0
    meta, events, metrics = read(out)
    assert meta["scheduler"] == "dfaas" and metrics["finished"] == 10 and metrics["failed"] == 0
    submit = {e.job_id: e.t for e in events if e.what == "submit"}
    end = {e.job_id: e.t for e in events if e.what == "end"}
    for job, tolerance in {1: 120, 3: 60, 6: 100}.items():
        assert end[job] - submit[job] <= tolerance * 0.2, (job, events)
    _, sim_events, sim_metrics = read(out / "sim")
    assert sim_metrics["finished"] == 10
