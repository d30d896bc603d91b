"""granny-elastic: OpenMP-style jobs whose teams grow at forks (the original's elastic OpenMP jobs).

A job of the trace asks for ``size`` threads: one gang request ``jobN`` of ``size`` granules, which
bin-pack keeps on one host when one has room (as the original placed an OpenMP job on one VM). At
each fork (every ``Scheduler.fork_every`` of the job's work; the omp kernel's 20 regions: 5%):
- the team first gives back what the planner asked for (``Revoke`` actions, sent when the head of
  the queue cannot be placed: :mod:`granny.planner.leases`): its highest grown threads retire and
  their tasks end (``task_done``), which frees their slots; it never shrinks below its own request;
- otherwise, when nothing waits in the planner's queue and it has no lease still pending, it leases
  the free slots of thread 0's host: one gang request ``jobN.tK`` of one granule per thread, of the
  same app, ``lease=True`` (so that the planner may ask for them back; bin-pack puts them on the host
  that runs the app). The new threads join when the planner dispatches them (one ``resize`` event
  per fork's growth); the rest of the work is re-timed on the new team with the runtime model.
So a team grows past its requested size into the idle slots of its host, as the original's did
(their threads stay on one VM). The live ``granny.parallel(elastic=True)`` team does the same
(parallel/team.py): one lease per grown thread, growth only when nothing is queued and every
leased thread has joined, into its master's host, never below the threads it was created with.
:class:`ElasticTeamSimulator` is granny-elastic for the live replay's jobs (thread 0 its own
request, the team a lease of ``size - 1``: :mod:`.teams`), which ``--mode testbed`` simulates.
Pure, as the engine: no clocks or I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..planner.lifecycle import AppKind, TaskState
from ..planner.records import Action, Revoke
from .engine import Simulator
from .running import RunningJob
from .schedulers import Scheduler
from .teams import TEAM, TeamSimulator, is_team_job
from .trace import Job


class _Forks:
    """The migration hook, used for forks: the engine calls it at each of a job's points."""

    def at_point(self, sim: Simulator, run: RunningJob) -> None:
        assert isinstance(sim, ElasticSimulator)
        sim.fork(run)


class ElasticSimulator(Simulator):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["migration"] = _Forks()
        super().__init__(*args, **kwargs)
        self._lease_of: dict[str, str] = {}  # lease request -> its job's request
        self._lease_size: dict[str, int] = {}
        self._leases_of: dict[str, list[str]] = {}  # job request -> its lease requests, oldest first
        self._base: dict[str, list[str]] = {}  # job request -> the granules of its own request (thread 0..)
        self._members: dict[str, list[tuple[str, str, int]]] = {}  # job -> (granule, lease, index) per grown thread
        self._revoked: dict[str, int] = {}  # lease request -> granules the planner asked back
        self._pending: set[str] = set()  # lease requests not dispatched yet
        self._grown: set[str] = set()  # jobs whose new threads joined in this batch of actions (one resize)

    # --- requests ---------------------------------------------------------------------------------
    def granules_needed(self, req_id: str) -> int:
        if req_id in self._lease_of:
            return self._lease_size[req_id]
        return super().granules_needed(req_id)

    def apply(self, actions: Iterable[Action]) -> None:
        actions = list(actions)
        for action in actions:
            if isinstance(action, Revoke) and action.req_id in self._lease_of:
                self._revoked[action.req_id] = self._revoked.get(action.req_id, 0) + action.count
        super().apply(actions)
        while self._grown:
            run = self.running.get(self._grown.pop())
            if run is not None:
                self._resize(run)

    def _new_leases(self, req_id: str, count: int) -> None:
        """One lease of one granule per new thread, as the live team leases them."""
        leases = self._leases_of.setdefault(req_id, [])
        new = [f"{req_id}.t{len(leases) + 1 + k}" for k in range(count)]
        for lease in new:
            leases.append(lease)
            self._lease_of[lease] = req_id
            self._lease_size[lease] = 1
            self._pending.add(lease)
        actions: list[Action] = []
        for lease in new:  # (applied together: the threads placed at once join in one resize)
            actions += self.state.submit(lease, req_id, 1, AppKind.FUNCTIONS, self._jobs[req_id].kind,
                                         gang=True, lease=True)
        self.apply(actions)

    def begin(self, req_id: str, job: Job, granules: list[str]) -> None:
        if is_team_job(job):
            self._base[req_id] = list(granules)
            self._members[req_id] = []
        super().begin(req_id, job, granules)

    def _start(self, req_id: str) -> None:
        job_req = self._lease_of.get(req_id)
        if job_req is None:
            super()._start(req_id)
            return
        self._pending.discard(req_id)
        got = self._dispatched.pop(req_id)
        members = [(got[i], req_id, i) for i in range(self._lease_size[req_id])]
        run = self.running.get(job_req)
        if run is None:  # the job ended before its lease was placed: the members leave at once
            self._retire(members)
            return
        self._members[job_req].extend(members)
        self._grown.add(job_req)  # one resize for the leases dispatched together (see apply)

    # --- forks --------------------------------------------------------------------------------------
    def fork(self, run: RunningJob) -> None:
        req_id = run.req_id
        give = sum(self._revoked.pop(lease, 0) for lease in self._leases_of.get(req_id, []))
        members = self._members[req_id]
        if give:
            give = min(give, len(members))
            if give:
                leaving, self._members[req_id] = members[len(members) - give:], members[:len(members) - give]
                self._retire(leaving)
                self._resize(run, at_fork=True)
            return
        if self._queued() or any(lease in self._pending for lease in self._leases_of.get(req_id, [])):
            return
        host = self.state.hosts[self.host_of(run.granules[0])]
        free = host.slots - host.busy()
        if free > 0 and host.alive:
            self._new_leases(req_id, free)

    def _queued(self) -> bool:
        """Something waits in the planner's queue (what the live team asks the planner: its ``queue``)."""
        return any(any(t.state is TaskState.QUEUED for t in self.state.requests[r].tasks)
                   for r in self.state.queue if r in self.state.requests)

    def _retire(self, members: list[tuple[str, str, int]]) -> None:
        for gid, lease, index in members:
            _, actions = self.state.task_done(gid, lease, index, True)
            self.apply(actions)

    def _resize(self, run: RunningJob, at_fork: bool = False) -> None:
        granules = [*self._base[run.req_id], *(g for g, _, _ in self._members[run.req_id])]
        hosts = [self.host_of(g) for g in granules]
        self._progress(run)
        self._resume(run, hosts, granules, "resize")
        if not at_fork:  # (at a fork, the engine schedules the next one)
            self._next_point(run)

    def tasks_of(self, run: RunningJob) -> list[tuple[str, str, int]]:
        if not is_team_job(run.job):
            return super().tasks_of(run)
        base = [(gid, run.req_id, i) for i, gid in enumerate(self._base.pop(run.req_id))]
        return [*self._members.pop(run.req_id, []), *base]  # the grown threads leave first

    def _next_point(self, run: RunningJob) -> None:
        if is_team_job(run.job):
            super()._next_point(run)

    def retires(self, run: RunningJob) -> bool:
        return not is_team_job(run.job)  # an OpenMP-style job's granules run calls, and stay


class ElasticTeamSimulator(ElasticSimulator, TeamSimulator):
    """granny-elastic with the live replay's OpenMP-style jobs: thread 0 is request ``jobN`` (one
    granule), its team the lease ``jobN.team`` of ``size - 1`` (never asked back), as
    :class:`.teams.TeamSimulator` models ``granny.parallel``; the team grows at forks as in
    :class:`ElasticSimulator`. Other jobs run as in :class:`.teams.TeamSimulator`."""

    def tasks_of(self, run: RunningJob) -> list[tuple[str, str, int]]:
        if not is_team_job(run.job):
            return Simulator.tasks_of(self, run)
        base = self._base.pop(run.req_id)
        team = [(gid, run.req_id + TEAM, i) for i, gid in enumerate(base[1:])]
        return [*self._members.pop(run.req_id, []), *team, (base[0], run.req_id, 0)]

    def _next_point(self, run: RunningJob) -> None:
        if is_team_job(run.job):
            Simulator._next_point(self, run)


def simulator_class(scheduler: Scheduler) -> type[Simulator]:
    """The engine a scheduler runs on: teams that grow at forks need :class:`ElasticSimulator`."""
    return ElasticSimulator if scheduler.fork_every else Simulator
