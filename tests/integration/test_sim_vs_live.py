"""A live run and a simulated run of the same small trace make the same placement decisions.

Live: a planner and two workers of 4 slots (real processes). Each job is an MPI-style gang script
whose ranks each wait for their own release file, so the test decides the order of every event:
arrivals, and the end of each rank, rank by rank, as the simulator ends them. After each step the
test waits until the planner has seen it and the hosts' warm pools are full again (a script's
granule retires after its task and a fresh one replaces it), then goes on.
Simulated: :class:`granny.sim.Simulator` with the live hosts' names, in their registration order,
replays the same steps on a virtual clock. Both must place every job on the same hosts.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import granny
from granny.cluster import LocalCluster
from granny.sim import Job, Simulator, scheduler_named

from ..polling import wait_for

SCRIPT = """\
import os, sys, time
path = os.path.join(sys.argv[1], os.environ["GRANNY_INDEX"])
while not os.path.exists(path):  # the test releases each rank in turn
    time.sleep(0.01)
"""

SIZES = {0: 3, 1: 3, 2: 4, 3: 2}
STEPS = [("submit", 0), ("submit", 1), ("submit", 2), ("end", 0), ("submit", 3), ("end", 1), ("end", 2), ("end", 3)]
POLICY = {"batch": "whole-hosts", "slurm": "first-fit", "granny": "bin-pack"}


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    c = LocalCluster(workers=2, slots=4, data_dir=tmp_path_factory.mktemp("simlive") / "data", granule_user="same")
    try:
        with granny.connect(c.address, c.token) as probe:
            wait_for(lambda: len([h for h in probe.hosts() if h.idle_granules == 4]) == 2, timeout=60,
                     what="two hosts with 4 warm granules each")
        yield c
    finally:
        c.stop()


class StepClock:
    """The simulated run's times: step k happens at t = k; a job ends at the time of its end step."""

    def __init__(self) -> None:
        self.sim: Simulator | None = None
        self.ends = {job: float(k) for k, (what, job) in enumerate(STEPS) if what == "end"}

    def runtime(self, kind: str, counts: Any) -> float:
        assert self.sim is not None
        return self.ends[int(kind)] - self.sim.now


def simulated(scheduler: str, hosts: list[str]) -> dict[int, Counter[str]]:
    clock = StepClock()
    jobs = [Job(job, str(job), SIZES[job], float(k)) for k, (what, job) in enumerate(STEPS) if what == "submit"]
    sim = Simulator(scheduler_named(scheduler), len(hosts), 4, clock, host_ids=hosts)  # type: ignore[arg-type]
    clock.sim = sim
    result = sim.run(jobs)
    assert [e.what for e in result.events].count("end") == len(SIZES)
    return {int(req[3:]): Counter(where) for req, where in result.decisions}


def settled(client: granny.Client) -> bool:
    return all(h.used + h.idle_granules == h.slots for h in client.hosts())


@pytest.mark.parametrize("scheduler", ["batch", "slurm", "granny"])
def test_live_and_simulated_runs_place_every_job_alike(live: LocalCluster, tmp_path: Path, scheduler: str) -> None:
    script = tmp_path / "job.py"
    script.write_text(SCRIPT)
    with granny.connect(live.address, live.token) as client:
        client.query("set-policy", POLICY[scheduler])
        wait_for(lambda: settled(client) and all(h.used == 0 for h in client.hosts()), timeout=60,
                 what="an idle cluster")
        hosts = [h.host_id for h in client.hosts()]  # registration order: the order policies see them in
        apps = {job: f"simlive-{scheduler}-{job}-{tmp_path.name[-6:]}" for job in SIZES}
        threads: list[threading.Thread] = []
        errors: list[BaseException] = []

        def tasks(job: int) -> list[dict[str, Any]]:
            try:
                return list(client.query("app", apps[job])["granules"])
            except granny.GrannyError:
                return []

        def submit(job: int) -> None:
            release = tmp_path / f"release-{job}"
            release.mkdir()

            def body() -> None:
                try:
                    results = client.run_script(str(script), SIZES[job], [str(release)], mpi=True, app_id=apps[job])
                    assert [r.status.value for r in results] == ["ok"] * SIZES[job], [r.message for r in results]
                except BaseException as exc:  # reported by the test thread
                    errors.append(exc)

            t = threading.Thread(target=body, daemon=True)
            t.start()
            threads.append(t)
            wait_for(lambda: len(tasks(job)) == SIZES[job], timeout=30, what=f"the planner to know job {job}")

        placed: dict[int, Counter[str]] = {}
        for what, job in STEPS:
            if what == "submit":
                submit(job)
            else:
                rows = wait_for(lambda j=job: (r := tasks(j)) and all(t["state"] == "running" for t in r) and r,
                                timeout=30, what=f"job {job} running")
                placed[job] = Counter(t["host_id"] for t in rows)
                for rank in range(SIZES[job]):
                    (tmp_path / f"release-{job}" / str(rank)).touch()
                    wait_for(lambda j=job, i=rank: tasks(j)[i]["state"] == "succeeded", timeout=30,
                             what=f"rank {rank} of job {job} to end")
                    wait_for(lambda: settled(client), timeout=30, what="the warm pools to be full again")
            assert not errors, errors
        for t in threads:
            t.join(timeout=30)
        assert not errors, errors
    assert placed == simulated(scheduler, hosts), (scheduler, hosts)
