"""OpenMP-style jobs as ``granny.parallel`` runs them, in the simulator (the live replay's omp kernel).

A live OpenMP-style job is a gang of one granule (thread 0, request ``jobN``, app ``jobN``);
once it runs (and ``team_delay`` later: the process sets the team up first), ``granny.parallel`` leases the rest of its team as one gang request of ``size - 1``
granules in the same app (``jobN.team``). :class:`TeamSimulator` submits the same two requests
to the state, in that order (thread 0 with ``team=size - 1``, so that it starts only where its team
fits and the planner holds those slots for the team: planner/holds.py), and starts the job's work once the team's granules are dispatched;
at its end every granule reports done. A job of one thread is the call alone. Such jobs have no
migration points (the omp kernel has none). The other jobs of a trace run as in :class:`Simulator`.
"""

from __future__ import annotations

from typing import Any

from ..planner.lifecycle import AppKind
from .engine import Simulator
from .events import JobEvent
from .running import RunningJob
from .trace import Job

TEAM = ".team"


def is_team_job(job: Job) -> bool:
    return job.kind.startswith("omp")


class TeamSimulator(Simulator):
    def __init__(self, *args: Any, team_delay: float = 0.0, **kwargs: Any) -> None:
        """``team_delay``: seconds from thread 0's dispatch to its team's request (thread 0's process
        starts, sets up the team's board and listener, then leases; measured by the calibration)."""
        super().__init__(*args, **kwargs)
        self.team_delay = team_delay
        self._thread0: dict[str, str] = {}  # job request -> its thread 0's granule, once dispatched

    def granules_needed(self, req_id: str) -> int:
        if req_id.endswith(TEAM):
            return self._jobs[req_id].size - 1
        job = self._jobs[req_id]
        return 1 if is_team_job(job) else job.size

    def _arrive(self, job: Job) -> None:
        if not is_team_job(job):
            super()._arrive(job)
            return
        req_id = f"job{job.job_id}"
        self.events.append(JobEvent(self.now, "submit", job.job_id, job.size, kind=job.kind))
        self.apply(self.state.submit(req_id, req_id, 1, AppKind.FUNCTIONS, job.kind, gang=True, team=job.size - 1))

    def _start(self, req_id: str) -> None:
        job = self._jobs[req_id]
        if not is_team_job(job):
            super()._start(req_id)
            return
        by_index = self._dispatched.pop(req_id)
        if req_id.endswith(TEAM):
            main = req_id[: -len(TEAM)]
            self.begin(main, job, [self._thread0[main], *(by_index[i] for i in range(job.size - 1))])
            return
        self._thread0[req_id] = by_index[0]
        if job.size == 1:
            self.begin(req_id, job, [by_index[0]])
            return
        team = req_id + TEAM
        self._jobs[team] = job
        if self.team_delay > 0:
            self.later(self.now + self.team_delay, lambda: self._lease(team, req_id, job))
        else:
            self._lease(team, req_id, job)

    def _lease(self, team: str, req_id: str, job: Job) -> None:
        self.apply(self.state.submit(team, req_id, job.size - 1, AppKind.FUNCTIONS, job.kind, gang=True))

    def tasks_of(self, run: RunningJob) -> list[tuple[str, str, int]]:
        if not is_team_job(run.job):
            return super().tasks_of(run)
        team = [(gid, run.req_id + TEAM, i) for i, gid in enumerate(run.granules[1:])]
        return [*team, (run.granules[0], run.req_id, 0)]  # the members end as the team closes, then thread 0

    def _next_point(self, run: RunningJob) -> None:
        if not is_team_job(run.job):
            super()._next_point(run)

    def retires(self, run: RunningJob) -> bool:
        return not is_team_job(run.job)  # an OpenMP-style job's granules run calls, and stay
