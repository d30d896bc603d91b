"""The contention model (sim/contention.py) in the simulator: jobs that share cores go slower, every
running job is re-timed when the busy slots change, an MPI job's slots come back ``release`` later;
and without a contention model the simulator is as it was (a real cluster's hosts have their own cores)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from granny.errors import ConfigError
from granny.experiment.calibration import DEFAULT, TESTBED, load_model
from granny.sim import Job, KindModel, RuntimeModel, Simulator, poisson_trace, scheduler_named, simulate
from granny.sim.contention import Contention
from granny.sim.teams import TeamSimulator


def model(cores: int = 1, share: float = 1.0, release: float = 0.0, **kinds: float) -> RuntimeModel:
    fitted = {name: KindModel(t, 0, 0) for name, t in (kinds or {"k": 10.0}).items()}
    return RuntimeModel(fitted, contention=Contention(cores, dict.fromkeys(fitted, share), release))


def spans(result: object) -> dict[int, tuple[float, float]]:
    start = {e.job_id: e.t for e in result.events if e.what == "start"}  # type: ignore[attr-defined]
    return {e.job_id: (start[e.job_id], e.t) for e in result.events if e.what == "end"}  # type: ignore[attr-defined]


def test_the_slowdown_is_processor_sharing_of_the_part_that_needs_a_core() -> None:
    c = Contention(2, {"k": 0.5})
    assert c.slowdown("k", 0) == c.slowdown("k", 2) == 1.0  # no more ranks than cores: no one waits
    assert c.slowdown("k", 4) == pytest.approx(1.5)  # half its time on a core, shared by 2 ranks a core
    assert c.slowdown("other", 8) == 1.0  # a kind nobody measured is not slowed
    # other work's runnable processes count too, a rank's slot as per_slot of one, past what the cores absorb
    loaded = Contention(2, {"k": 0.5}, per_slot=0.5, free=3.0, background=2.0)
    assert loaded.slowdown("k", 2) == 1.0 and loaded.slowdown("k", 4) == pytest.approx(1.25)
    assert Contention(2, move=(0.25, 0.05), background=6.0).move_cost() == pytest.approx(0.55)
    assert Contention(2).move_cost() is None  # not measured: the scheduler's own move cost stands
    with pytest.raises(ConfigError):
        Contention(0)
    with pytest.raises(ConfigError):
        Contention(2, {"k": -0.1})


def test_two_one_rank_jobs_on_one_core_take_twice_as_long() -> None:
    r = simulate([Job(0, "k", 1, 0), Job(1, "k", 1, 0)], scheduler_named("granny"), 2, 1, model())
    assert spans(r) == {0: (0.0, 20.0), 1: (0.0, 20.0)}


def test_a_job_arriving_midway_slows_the_running_one_from_then_on() -> None:
    # j0 runs alone 0-5 (half its work), then shares the core with j1: its other half takes 10 s (ends at
    # 15); j1 has done half its work by then and finishes alone at 20. The ends come in that order.
    r = simulate([Job(0, "k", 1, 0), Job(1, "k", 1, 5)], scheduler_named("granny"), 2, 1, model())
    assert spans(r) == {0: (0.0, pytest.approx(15.0)), 1: (5.0, pytest.approx(20.0))}
    assert [(e.job_id, e.what) for e in r.events if e.what == "end"] == [(0, "end"), (1, "end")]


def test_a_share_below_one_slows_only_that_part() -> None:
    # 4 one-rank jobs on 2 cores, 30% of their time on a core: 1 + 0.3 * (4 - 2) / 2 = 1.3
    r = simulate([Job(i, "k", 1, 0) for i in range(4)], scheduler_named("granny"), 4, 1, model(cores=2, share=0.3))
    assert {j: e - s for j, (s, e) in spans(r).items()} == {j: pytest.approx(13.0) for j in range(4)}


def test_an_ended_jobs_slots_come_back_release_seconds_later() -> None:
    jobs = [Job(0, "k", 2, 0), Job(1, "k", 2, 0)]  # one host of 2 slots: job 1 waits for job 0's
    r = simulate(jobs, scheduler_named("granny"), 1, 2, model(cores=8, release=0.25))
    assert spans(r) == {0: (0.0, 10.0), 1: (10.25, pytest.approx(20.25))}
    # an OpenMP-style job's granules run calls and stay: no release
    omp = model(cores=8, release=0.25, omp=10.0)
    sim = TeamSimulator(scheduler_named("granny"), 1, 2, omp, evictions=None)
    assert spans(sim.run([Job(0, "omp", 2, 0), Job(1, "omp", 2, 0)])) == {0: (0.0, 10.0), 1: (10.0, 20.0)}


def test_with_cores_to_spare_it_changes_nothing() -> None:
    jobs = poisson_trace(60, 0.3, "k", range(1, 9), seed=5)
    base = RuntimeModel({"k": KindModel(20, 100, 0.5)})
    roomy = RuntimeModel(base.kinds, contention=Contention(10_000, {"k": 1.0}))
    for name in ("batch", "slurm", "granny", "granny-migrate"):
        a = simulate(jobs, scheduler_named(name), 4, 8, base)
        b = simulate(jobs, scheduler_named(name), 4, 8, roomy)
        assert a.decisions == b.decisions
        assert [(e.job_id, e.what) for e in a.events] == [(e.job_id, e.what) for e in b.events]
        assert [e.t for e in a.events] == pytest.approx([e.t for e in b.events])


def test_migrations_and_contention_together_finish_every_job_deterministically() -> None:
    jobs = poisson_trace(40, 0.5, "k", range(1, 7), seed=2)
    m = RuntimeModel({"k": KindModel(5, 40, 0.8)}, contention=Contention(2, {"k": 0.4}, release=0.1))
    a = simulate(jobs, scheduler_named("granny-migrate"), 4, 2, m)
    b = simulate(jobs, scheduler_named("granny-migrate"), 4, 2, m)
    assert a.events == b.events and sum(1 for e in a.events if e.what == "end") == len(jobs)
    assert any(e.what == "move" for e in a.events)
    solo = simulate(jobs, scheduler_named("granny-migrate"), 4, 2, RuntimeModel(m.kinds))
    assert a.end > solo.end


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(0.5, 20), st.floats(0, 30)), min_size=1, max_size=7))
def test_one_core_shared_by_one_rank_jobs_does_their_total_work_in_their_busy_time(jobs: list[tuple[float, float]]) -> None:
    # Processor sharing on one core with share 1 conserves work: while any job runs, the core does one
    # second of (solo) work per second, so the union of the jobs' run times is the sum of their runtimes.
    trace = [Job(i, f"k{i}", 1, round(at, 3)) for i, (_, at) in enumerate(jobs)]
    m = model(**{f"k{i}": t for i, (t, _) in enumerate(jobs)})
    r = simulate(trace, scheduler_named("slurm"), len(jobs), 1, m)  # a host per job: nobody queues
    busy, last = 0.0, -math.inf
    for s, e in sorted(spans(r).values()):
        busy += max(0.0, e - max(s, last))
        last = max(last, e)
    assert busy == pytest.approx(sum(t for t, _ in jobs), rel=1e-6)
    for i, (s, e) in spans(r).items():  # and nobody ends sooner than alone
        assert e - s >= jobs[i][0] - 1e-6


def test_only_the_testbed_calibration_carries_a_contention_model() -> None:
    assert load_model(DEFAULT).contention is None  # the original's cluster: every VM has its own cores
    tb = load_model(TESTBED)
    assert tb.contention is not None and tb.contention.cores >= 1
    assert tb.slowdown("mpi-locality", tb.contention.cores) == 1.0
    sim = Simulator(scheduler_named("granny"), 4, 2, tb)
    assert sim.run([Job(0, "mpi-locality", 2, 0)]).end > 0


def test_the_replay_gives_the_live_runs_background_to_the_simulated_twin() -> None:
    from granny.experiment.replay import simulate as twin

    jobs = [Job(i, "mpi-locality", 2, i * 0.5) for i in range(6)]
    tb = load_model(TESTBED)
    ids = [f"h{i + 1}" for i in range(4)]
    quiet = twin(jobs, "granny", 4, 2, tb, ids, background=0.0)
    busy = twin(jobs, "granny", 4, 2, tb, ids, background=12.0)
    alone = twin(jobs, "granny", 4, 2, RuntimeModel(tb.kinds, tb.aliases), ids, background=12.0)  # no model: no effect
    assert alone.end < quiet.end < busy.end  # (quiet: the ranks' slots come back late, release)
    assert quiet.decisions == busy.decisions
