"""granny-elastic in the simulator (sim/elastic.py): OpenMP-style teams grow into their host's idle
slots at forks, through planner leases, and give them back when the planner asks (a Revoke).
Timelines computed by hand with a flat model (no serial part, no network penalty)."""

from __future__ import annotations

import pytest

from granny.experiment import compute
from granny.sim import Cluster, Job, KindModel, RuntimeModel, scheduler_named
from granny.sim.elastic import ElasticSimulator, ElasticTeamSimulator
from granny.sim.events import JobEvent

# omp: 80 thread-seconds of parallel work (40 s on 2 threads, 20 s on 4); mpi: 10 s whatever its size
MODEL = RuntimeModel({"omp": KindModel(0, 80, 0), "mpi": KindModel(10, 0, 0)})


def run(jobs: list[Job], hosts: int = 1, slots: int = 4) -> tuple[ElasticSimulator, list[JobEvent]]:
    sim = ElasticSimulator(scheduler_named("granny-elastic"), hosts, slots, MODEL, evictions=None)
    result = sim.run(jobs)
    assert [e.what for e in result.events].count("end") == len(jobs)
    assert all(not h.busy() for h in sim.state.hosts.values())  # every thread, grown or not, reported done
    return sim, result.events


def threads(events: list[JobEvent], job: int) -> list[tuple[float, int]]:
    return [(e.t, sum(c for _, c in e.counts)) for e in events if e.job_id == job and e.what in ("start", "resize")]


def test_a_team_grows_into_its_hosts_idle_slots_at_its_first_fork() -> None:
    _, events = run([Job(0, "omp", 2, 0)])
    # 2 threads from t=0; at the first fork (5% of the work, t=2) it leases the host's 2 free slots:
    # the other 95% take 0.95 x 20 s on 4 threads
    assert threads(events, 0) == [(0.0, 2), (2.0, 4)]
    assert [e.t for e in events if e.what == "end"] == [pytest.approx(21.0)]


def test_a_grown_team_gives_its_slots_back_when_the_planner_asks() -> None:
    _, events = run([Job(0, "omp", 2, 0), Job(1, "mpi", 2, 5.5)])
    # job 1 cannot be placed at 5.5 (job 0 grew to the whole host): the planner revokes job 0's lease,
    # which gives its 2 threads back at its next fork (t=6, 25% done); job 1 runs 6..16, then job 0
    # (50% done by then) grows again at its fork at t=16 and does the rest on 4 threads
    assert threads(events, 0) == [(0.0, 2), (2.0, 4), (6.0, 2), (16.0, 4)]
    assert threads(events, 1) == [(6.0, 2)]
    ends = {e.job_id: e.t for e in events if e.what == "end"}
    assert ends == {1: pytest.approx(16.0), 0: pytest.approx(26.0)}


def test_a_team_never_grows_onto_another_host() -> None:
    _, events = run([Job(0, "omp", 2, 0), Job(1, "mpi", 3, 0)], hosts=2, slots=4)
    counts = [e.counts for e in events if e.job_id == 0 and e.what in ("start", "resize")]
    assert all(len(c) == 1 for c in counts) and counts[-1][0][1] == 4


def test_the_metrics_count_the_grown_slots_as_busy() -> None:
    _, events = run([Job(0, "omp", 2, 0)])
    m = compute(events, Cluster(1, 4))
    assert m.resizes == 1
    # busy: 2 slots for 2 s, then 4 slots for 19 s, of 4 x 21 slot-seconds
    assert m.idle_pct == pytest.approx(100 * (1 - (2 * 2 + 4 * 19) / (4 * 21)))


def test_the_live_replays_teams_grow_alike() -> None:
    """ElasticTeamSimulator (--mode testbed's model of granny.parallel): thread 0 and its team are two
    requests; the team grows at its first fork, and every request's granules report done at the end."""
    sim = ElasticTeamSimulator(scheduler_named("granny-elastic"), 1, 4, MODEL, evictions=None)
    result = sim.run([Job(0, "omp", 2, 0), Job(1, "mpi", 2, 5.5)])
    assert threads(result.events, 0) == [(0.0, 2), (2.0, 4), (6.0, 2), (16.0, 4)]
    assert {e.job_id: e.t for e in result.events if e.what == "end"} == {1: pytest.approx(16.0), 0: pytest.approx(26.0)}
    assert all(not h.busy() for h in sim.state.hosts.values())
    assert sorted(r for r in sim.state.requests if r.startswith("job0")) == [
        "job0", "job0.t1", "job0.t2", "job0.t3", "job0.t4", "job0.team"]  # one lease per grown thread


def test_a_team_does_not_grow_while_a_request_waits() -> None:
    # job 1 (4 ranks) waits for job 0 to end: job 0 may not take the 2 free slots meanwhile
    _, events = run([Job(0, "omp", 2, 0), Job(1, "mpi", 4, 1.0)])
    assert threads(events, 0) == [(0.0, 2)]
