"""OpenMP-style jobs in the simulator as granny.parallel runs them live (sim/teams.py): thread 0 is a
gang of one that starts only where its team fits (the planner holds those slots: planner/holds.py),
and the rest of the team a second gang request of the same app once thread 0 runs.
Placements checked by hand; and the live replay's scaling of a trace."""

from __future__ import annotations

import pytest

from granny.experiment.live import Scaling, Workload, points_every, time_scale
from granny.sim import Job, KindModel, RuntimeModel, scheduler_named
from granny.sim.teams import TeamSimulator

FLAT = RuntimeModel({"omp": KindModel(10, 0, 0), "mpi": KindModel(10, 0, 0)})


def run(scheduler: str, jobs: list[Job], hosts: int = 2, slots: int = 2,
        team_delay: float = 0.0) -> tuple[dict[str, tuple[str, ...]], dict[int, float]]:
    sim = TeamSimulator(scheduler_named(scheduler), hosts, slots, FLAT, host_ids=[f"h{i + 1}" for i in range(hosts)],
                        evictions=None, team_delay=team_delay)
    result = sim.run(jobs)
    assert [e.what for e in result.events].count("end") == len(jobs)
    assert all(not h.busy() for h in sim.state.hosts.values())  # every granule of every team reported done
    starts = {e.job_id: e.t for e in result.events if e.what == "start"}
    return {req: tuple(sorted(hosts)) for req, hosts in result.decisions}, starts


def test_a_team_joins_its_thread_0_under_bin_pack_and_first_fit() -> None:
    # bin-pack puts a gang of one on the host with the fewest free slots that holds it (ties: the last id), and the
    # team beside the app; first-fit fills hosts in their order
    assert run("granny", [Job(0, "omp", 2, 0)])[0] == {"job0": ("h2", "h2")}
    assert run("slurm", [Job(0, "omp", 2, 0)])[0] == {"job0": ("h1", "h1")}


def test_whole_hosts_gives_thread_0_and_its_team_one_host_set() -> None:
    # thread 0 is placed with its team's slots held beside it, and the team takes them (before the holds,
    # the team's own request needed a host nobody used: one job, two host sets)
    assert run("batch", [Job(0, "omp", 2, 0)])[0] == {"job0": ("h1", "h1")}


def test_a_job_arriving_between_thread_0_and_its_team_does_not_split_the_team() -> None:
    # job 0's thread 0 starts at t=0 on h2 (bin-pack), asks for its team at t=1; job 1 (one thread) comes at
    # t=0.5. Bin-pack would put it on h2's last slot (the fullest host that holds it), and job 0's team
    # across on h1: that slot is held for the team, so job 1 goes to h1 and job 0 stays on one host
    placed, starts = run("granny", [Job(0, "omp", 2, 0), Job(1, "omp", 1, 0.5)], team_delay=1.0)
    assert placed == {"job0": ("h2", "h2"), "job1": ("h1",)}
    assert starts == {0: 1.0, 1: 0.5}


def test_the_team_is_queued_when_thread_0_runs_ahead_of_later_jobs() -> None:
    # one host of 3 slots: job 0 holds 2 until t=10; job 1's thread 0 takes the last slot at t=1 and its
    # team waits, ahead of job 2 (t=2, 2 ranks); at t=10 the team gets a slot and job 2 must wait for job 1
    placed, starts = run("slurm", [Job(0, "mpi", 2, 0), Job(1, "omp", 2, 1), Job(2, "mpi", 2, 2)], hosts=1, slots=3)
    assert starts == {0: 0.0, 1: 10.0, 2: 20.0}
    assert placed["job1"] == ("h1", "h1")


def test_a_team_asked_for_late_finds_its_slot_held() -> None:
    # as above, but thread 0 asks for its team 5 s after it starts: thread 0 starts at t=10 (where its team
    # fits), its team's slot is held until the team asks (t=15), and job 2 (t=2) waits behind it. Before the
    # holds, job 2 took the slots at t=10 and thread 0 idled on its slot from t=1 to t=20
    placed, starts = run("slurm", [Job(0, "mpi", 2, 0), Job(1, "omp", 2, 1), Job(2, "mpi", 2, 2)], hosts=1, slots=3,
                         team_delay=5.0)
    assert starts == {0: 0.0, 1: 15.0, 2: 25.0}


def test_a_one_thread_job_is_thread_0_alone() -> None:
    placed, starts = run("granny", [Job(0, "omp", 1, 0), Job(1, "omp", 1, 0)])
    # bin-pack's best fit: job1 takes job0's host's other slot, and h1 stays whole
    assert placed == {"job0": ("h2",), "job1": ("h2",)} and starts == {0: 0.0, 1: 0.0}


def test_scaling_a_trace_for_two_slot_hosts() -> None:
    s = Scaling(2, 0.05)
    assert [s.size(n) for n in (1, 4, 5, 8, 15)] == [1, 1, 2, 2, 4]
    assert s.jobs([Job(3, "omp", 7, 20.0)]) == [Job(3, "omp", 2, 1.0)]
    original = RuntimeModel({"omp": KindModel(0, 200, 0)})  # 200 rank-seconds over the job's threads
    ours = RuntimeModel({"omp": KindModel(0, 10, 0)})
    assert time_scale([Job(0, "omp", 8, 0)], 2, original, ours) == pytest.approx((10 / 2) / (200 / 8))


def test_migration_points_follow_the_schedulers_distance() -> None:
    assert points_every("granny-migrate", Workload(steps=20)) == 2
    assert points_every("granny", Workload(steps=20)) == 0
