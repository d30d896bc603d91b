"""The simulator drives the real planner state: decisions checked by hand on tiny traces, determinism,
re-timing by the runtime model, failures that never fit, heartbeats, and granny-migrate's moves."""

from __future__ import annotations

import math

import pytest

from granny.errors import ConfigError
from granny.experiment.metrics import compute
from granny.sim import (
    EvictionSchedule,
    Job,
    KindModel,
    RuntimeModel,
    Simulator,
    parse_trace,
    poisson_trace,
    scheduler_named,
    simulate,
    to_csv,
)

FLAT = RuntimeModel({"short": KindModel(10, 0, 0), "long": KindModel(100, 0, 0)})
TRACE = [Job(0, "short", 3, 0), Job(1, "long", 3, 1), Job(2, "long", 4, 2), Job(3, "long", 2, 20)]


def placements(result: object) -> dict[str, tuple[tuple[str, int], ...]]:
    from collections import Counter

    return {req: tuple(sorted(Counter(hosts).items())) for req, hosts in result.decisions}  # type: ignore[attr-defined]


def starts(result: object) -> dict[int, float]:
    return {e.job_id: e.t for e in result.events if e.what == "start"}  # type: ignore[attr-defined]


def test_binpack_decisions_by_hand() -> None:
    r = simulate(TRACE, scheduler_named("granny"), 2, 4, FLAT)
    # j0 alone: the emptiest host, ties to the larger id; j1: the other, emptier host; j2 waits for
    # 4 free slots: j0's ranks end one by one, but its slots come back together (planner/holds.py), so
    # j2 gets h0001 whole rather than 3 + 1 over both hosts; j3 then waits for j1's end, and its host.
    assert placements(r) == {"job0": (("h0001", 3),), "job1": (("h0000", 3),),
                             "job2": (("h0001", 4),), "job3": (("h0000", 2),)}
    assert starts(r) == {0: 0, 1: 1, 2: 10, 3: 101}


def test_first_fit_decisions_by_hand() -> None:
    r = simulate(TRACE, scheduler_named("slurm"), 2, 4, FLAT)
    assert placements(r) == {"job0": (("h0000", 3),), "job1": (("h0000", 1), ("h0001", 2)),
                             "job2": (("h0000", 3), ("h0001", 1)), "job3": (("h0000", 1), ("h0001", 1))}
    # j2 takes j0's 3 slots together (held until its last rank ended) and one of h0001; j3 finds 1 free
    # slot at 20, and at 101 first fit's lowest slots of the 4 j1's end frees.
    assert starts(r) == {0: 0, 1: 1, 2: 10, 3: 101}


def test_whole_hosts_decisions_by_hand() -> None:
    r = simulate(TRACE, scheduler_named("batch"), 2, 4, FLAT)
    # j2 waits for a whole empty host (all of j0 gone), j3 for the next one (j1's, at 101).
    assert placements(r) == {"job0": (("h0000", 4 - 1),), "job1": (("h0001", 3),), "job2": (("h0000", 4),),
                             "job3": (("h0001", 2),)}
    assert starts(r) == {0: 0, 1: 1, 2: 10, 3: 101}


def test_a_run_is_deterministic() -> None:
    jobs = poisson_trace(120, 0.2, "mpi-locality", range(1, 16), seed=3)
    model = RuntimeModel({"mpi-locality": KindModel(50, 600, 0.5)})
    for name in ("batch", "slurm", "granny", "granny-migrate"):
        a = simulate(jobs, scheduler_named(name), 6, 8, model)
        b = simulate(jobs, scheduler_named(name), 6, 8, model)
        assert a.events == b.events and a.decisions == b.decisions
        assert sum(1 for e in a.events if e.what == "end") == len(jobs)


def test_runtime_follows_the_split() -> None:
    model = RuntimeModel({"k": KindModel(20, 80, 0.5)})
    r = simulate([Job(0, "k", 2, 0), Job(1, "k", 4, 0)], scheduler_named("slurm"), 2, 3, model)
    ev = {(e.job_id, e.what): e for e in r.events}
    # job0 on one host: (20 + 80/2) = 60 s; job1 split 1 + 3: links 3, so (20 + 20) * (1 + 0.5 * 3/4).
    assert ev[(0, "end")].t - ev[(0, "start")].t == pytest.approx(60)
    assert ev[(1, "start")].counts == (("h0000", 1), ("h0001", 3))
    assert ev[(1, "end")].t - ev[(1, "start")].t == pytest.approx(40 * 1.375)


def test_a_job_larger_than_the_cluster_fails_and_the_rest_runs() -> None:
    jobs = [Job(0, "long", 9, 0), Job(1, "short", 2, 1)]
    r = simulate(jobs, scheduler_named("granny"), 2, 4, FLAT)
    fails = [e for e in r.events if e.what == "fail"]
    assert [e.job_id for e in fails] == [0] and "never" in fails[0].detail
    assert [e.job_id for e in r.events if e.what == "end"] == [1]


def test_heartbeats_on_a_virtual_clock_keep_hosts_alive_and_change_nothing() -> None:
    plain = simulate(TRACE, scheduler_named("granny"), 2, 4, FLAT)
    beating = simulate(TRACE, scheduler_named("granny"), 2, 4, FLAT, heartbeat_timeout=4.0)
    assert beating.decisions == plain.decisions and beating.events == plain.events


def test_granny_migrate_consolidates_a_split_job_through_the_planner() -> None:
    model = RuntimeModel({"short": KindModel(10, 0, 0), "long": KindModel(100, 0, 1.0)})
    jobs = [Job(0, "short", 3, 0), Job(1, "long", 3, 0.5), Job(2, "long", 2, 1)]
    still = simulate(jobs, scheduler_named("granny"), 2, 4, model)
    moving = simulate(jobs, scheduler_named("granny-migrate"), 2, 4, model)
    assert placements(still)["job2"] == (("h0000", 1), ("h0001", 1))  # split by the two others
    moves = [e for e in moving.events if e.what == "move"]
    assert [e.job_id for e in moves] == [2] and len(moves[0].counts) == 1  # moved onto one host
    end = {e.job_id: e.t for e in moving.events if e.what == "end"}
    end_still = {e.job_id: e.t for e in still.events if e.what == "end"}
    assert end[2] < end_still[2]
    # Split 1 + 1 it runs 100 * (1 + 1/2) = 150 s; its first point (10% of its work) is at 1 + 15 s,
    # after j0 freed its host at 10: rank 0 asks, the planner moves it; 90% of 100 s is left.
    assert moves[0].t == pytest.approx(16) and end[2] == pytest.approx(106)


def test_the_planner_records_the_simulated_migration() -> None:
    model = RuntimeModel({"short": KindModel(10, 0, 0), "long": KindModel(100, 0, 1.0)})
    sim = Simulator(scheduler_named("granny-migrate"), 2, 4, model)
    sim.run([Job(0, "short", 3, 0), Job(1, "long", 3, 0.5), Job(2, "long", 2, 1)])
    assert sim.state.migrations.counts["completed"] == 1
    assert [h["gen"] for h in sim.state.migrations.history["job2"]] == [1]


def test_traces_round_trip_and_bad_ones_are_clear() -> None:
    jobs = poisson_trace(30, 0.5, "mpi-migrate", [2, 4, 8], seed=9)
    again = parse_trace(to_csv(jobs).splitlines())
    assert [(j.job_id, j.kind, j.size) for j in again] == [(j.job_id, j.kind, j.size) for j in jobs]
    assert all(math.isclose(a.arrival, b.arrival, abs_tol=1e-6) for a, b in zip(again, jobs, strict=True))
    assert poisson_trace(30, 0.5, "mpi-migrate", [2, 4, 8], seed=9) == jobs
    with pytest.raises(ConfigError, match="columns"):
        parse_trace(["a,b\n", "1,2\n"])
    with pytest.raises(ConfigError, match="line 2"):
        parse_trace(["TaskId,App,Size,InterArrivalTimeSecs\n", "0,x,0,1\n"])
    with pytest.raises(ConfigError, match="no runtime model"):
        simulate([Job(0, "nope", 1, 0)], scheduler_named("granny"), 1, 1, FLAT)
    with pytest.raises(ConfigError, match="unknown scheduler"):
        scheduler_named("fifo")


def test_granny_migrate_asks_again_only_when_the_planner_hints() -> None:
    model = RuntimeModel({"short": KindModel(30, 0, 0), "long": KindModel(100, 0, 1.0)})
    sim = Simulator(scheduler_named("granny-migrate"), 2, 4, model)
    r = sim.run([Job(0, "short", 3, 0), Job(1, "long", 3, 0.5), Job(2, "long", 2, 1)])
    # First point at 16: the cluster is full, it stays (and is registered). j0 ends at 30 and the
    # planner hints; the next point (20% of the work, at 31) asks and moves. 80% of 100 s is left.
    moves = [e for e in r.events if e.what == "move"]
    assert [(e.job_id, e.t) for e in moves] == [(2, pytest.approx(31))]
    assert {e.job_id: e.t for e in r.events if e.what == "end"}[2] == pytest.approx(111)
    assert sim.state.migrations.counts["asks"] == 3 + 1  # every job at its first point, and j2 once hinted


def test_the_originals_blocking_submitter_ignores_the_gaps() -> None:
    # The original's harness for its figures: the next job 1 s after the previous one started.
    jobs = [Job(0, "long", 4, 0), Job(1, "long", 4, 500), Job(2, "long", 4, 900), Job(3, "short", 1, 901)]
    r = Simulator(scheduler_named("granny"), 1, 8, FLAT, submit_gap=1.0).run(jobs)
    submits = {e.job_id: e.t for e in r.events if e.what == "submit"}
    # Job 2 waits in the queue for job 0's slots (at 100); the submitter blocks on it until then.
    assert submits == {0: 0, 1: 1, 2: 2, 3: 101}
    assert starts(r) == {0: 0, 1: 1, 2: 100, 3: 101}


# --- spot VMs: the eviction schedule, granny-spot and the restart baselines -----------------------
SPOT_MODEL = RuntimeModel({"long": KindModel(100, 0, 0), "mid": KindModel(50, 0, 0)})


def test_an_evicted_hosts_job_moves_off_through_the_planner_and_completes() -> None:
    # h0001 gets a 30 s notice at 5 (the job's first point, which registers it, comes first); the
    # planner hints, and the next point (10% of the work, at 10) moves both ranks to h0000, 1 s for
    # the move: 90 s of work are left. The host is taken back at 35 and returns as a new incarnation.
    schedule = EvictionSchedule(every=1000, grace=30, start=5, hosts=("h0001",))
    sim = Simulator(scheduler_named("granny-spot"), 2, 4, SPOT_MODEL, evictions=schedule)
    r = sim.run([Job(0, "long", 2, 0)])
    assert placements(r)["job0"] == (("h0001", 2),)
    (move,) = [e for e in r.events if e.what == "move"]
    assert move.t == pytest.approx(10) and move.counts == (("h0000", 2),)
    assert [(e.what, e.t) for e in r.events if e.what in ("end", "evicted", "freeze")] == [("end", pytest.approx(101))]
    assert sim.state.migrations.counts["completed"] == 1  # the state's own record of the move
    assert sim.state.hosts["h0001"].incarnation == 2 and sim.state.hosts["h0001"].alive
    assert r.evictions is not None and r.evictions["hosts_taken"] == 1


def test_a_job_with_nowhere_to_go_freezes_and_thaws_when_room_appears() -> None:
    # job0 (4 ranks, 100 s, a point every 5 s) on h0001, job1 fills h0000 until 50.5. h0001's notice at 5
    # runs out at 35: the spot policy has no room elsewhere, so job0 uses h0001 while its next point but
    # one comes 1 s before the deadline (points at 10, 15, 20), and freezes at its last point, 25 (25%
    # done). When job1 ends the state thaws it on h0000 (a Dispatch with thaw); it resumes with 1 s for
    # the thaw and 75 s left.
    schedule = EvictionSchedule(every=1000, grace=30, down=100, start=5, hosts=("h0001",))
    sim = Simulator(scheduler_named("granny-spot"), 2, 4, SPOT_MODEL, evictions=schedule)
    r = sim.run([Job(0, "long", 4, 0), Job(1, "mid", 4, 0.5)])
    seen = [(e.what, e.job_id, e.t) for e in r.events if e.what in ("freeze", "thaw", "end", "evicted")]
    assert seen == [("freeze", 0, pytest.approx(25)), ("end", 1, pytest.approx(50.5)),
                    ("thaw", 0, pytest.approx(50.5)), ("end", 0, pytest.approx(126.5))]
    (thaw,) = [e for e in r.events if e.what == "thaw"]
    assert thaw.counts == (("h0000", 4),)
    counts = sim.state.migrations.counts
    assert counts["freezes"] == 1 and counts["frozen"] == 1 and counts["thawed"] == 1
    assert sim.state.requests["job0"].frozen == 0 and sim.state.requests["job0"].final()


def test_the_restart_baseline_runs_an_evicted_job_again_from_the_start() -> None:
    # slurm-ft: the planner is not warned (as the original's native baselines were not); at 35 h0000
    # is taken back, job0 fails there and is submitted again; h0000 is gone, so it runs on h0001.
    schedule = EvictionSchedule(every=1000, grace=30, down=100, start=5, hosts=("h0000",))
    sim = Simulator(scheduler_named("slurm-ft"), 2, 4, SPOT_MODEL, evictions=schedule)
    r = sim.run([Job(0, "long", 4, 0)])
    seen = [(e.what, e.t, e.counts) for e in r.events if e.what in ("start", "evicted", "end")]
    assert seen == [("start", 0, (("h0000", 4),)), ("evicted", pytest.approx(35), ()),
                    ("start", pytest.approx(35), (("h0001", 4),)), ("end", pytest.approx(135), ())]
    assert placements(r) == {"job0": (("h0000", 4),), "job0.r1": (("h0001", 4),)}
    assert compute(r.events, r.cluster).restarts == 1
    # The same eviction of the job's host under granny-spot (bin-pack put it on h0001): the planner hears
    # the notice, the job leaves at its next point and loses no work.
    schedule = EvictionSchedule(every=1000, grace=30, down=100, start=5, hosts=("h0001",))
    spot = Simulator(scheduler_named("granny-spot"), 2, 4, SPOT_MODEL, evictions=schedule).run([Job(0, "long", 4, 0)])
    assert [(e.what, e.counts) for e in spot.events if e.what in ("start", "move")] == [
        ("start", (("h0001", 4),)), ("move", (("h0000", 4),))]
    assert [e.what for e in spot.events].count("evicted") == 0 and spot.events[-1].t == pytest.approx(101)


def test_without_evictions_the_spot_schedulers_run_as_their_base() -> None:
    jobs = [Job(0, "long", 3, 0), Job(1, "mid", 4, 1), Job(2, "long", 2, 2)]
    for base, spot in (("slurm", "slurm-ft"), ("batch", "batch-ft")):
        a = simulate(jobs, scheduler_named(base), 2, 4, SPOT_MODEL)
        b = Simulator(scheduler_named(spot), 2, 4, SPOT_MODEL, evictions=None).run(jobs)
        assert placements(a) == placements(b) and starts(a) == starts(b)
