"""The discrete-event simulator: a virtual clock driving the real planner state.

Theory of operation
- The planner is :class:`granny.planner.state.PlannerState` with the scheduler's policy, the
  very object the planner server runs. The simulator is its driver, as the server is: it calls
  the same event methods (``register_host``, ``granule_connected``, ``submit``, ``task_done``,
  ``heartbeat``, ``tick`` when :meth:`PlannerState.next_deadline` is due) and carries out the
  actions they return. No scheduling decision is made here.
- A host registers with ``slots`` warm granules (a worker's pool). A job of the trace is one MPI
  world: a gang request of ``size`` granules of a ``script`` app, as ``granny run -n`` submits.
  When the state dispatches all its granules, the job starts on their hosts, and its end is
  scheduled after ``runtime(kind, per-host split)`` (:mod:`.runtime`); at the end each rank
  reports done (``task_done``), which frees its slot and lets the state place the next jobs.
- Events at the same instant run in a fixed order (ends, migration points, arrivals,
  heartbeats; then by order of scheduling), so a run is deterministic.
- Heartbeats: with a finite ``heartbeat_timeout`` every host beats every timeout/4 of virtual time
  (no host fails here, so the default is an infinite timeout and no beats at all: the state then
  asks for a single tick, at the start).
- Migration: a job's work is tracked as the fraction done, so a move (:meth:`Simulator.move`)
  re-times the rest of it on the new split. A :class:`MigrationHook` is called at each job's
  migration points (every ``migrate_every`` of its work) once the planner can migrate.
Pure: no clocks, threads or I/O; the harness (:mod:`granny.experiment`) reads and writes files.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from ..errors import ConfigError
from ..planner.policies.base import counts_of
from ..planner.records import Action, Dispatch, Fail, Hint
from ..planner.state import PlannerState
from .events import Cluster, JobEvent
from .migrate import PlannerMigration
from .runtime import RuntimeModel
from .schedulers import Scheduler
from .trace import Job

_END, _POINT, _ARRIVE, _BEAT = 0, 1, 2, 3


@dataclass
class RunningJob:
    job: Job
    req_id: str
    granules: list[str]  # rank -> granule id
    hosts: list[str]  # rank -> host id
    started: float
    end: float
    done: float = 0.0  # fraction of the work done at ``since``
    since: float = 0.0
    version: int = 0  # bumped by each move: end events of an older split are stale


class MigrationHook(Protocol):
    def at_point(self, sim: Simulator, job: RunningJob) -> None: ...


@dataclass
class SimResult:
    cluster: Cluster
    scheduler: str
    events: list[JobEvent]
    decisions: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)  # req_id -> host of each rank
    end: float = 0.0
    migrate_every: float | None = None


class Simulator:
    def __init__(self, scheduler: Scheduler, hosts: int, slots: int, model: RuntimeModel,
                 heartbeat_timeout: float = math.inf, migration: MigrationHook | None = None,
                 host_ids: Sequence[str] | None = None, submit_gap: float | None = None) -> None:
        """``host_ids``: the hosts' names, in the order they register (default h0000, h0001...); a
        replay of a live run gives the live hosts' names, since policies break ties by host id.

        ``submit_gap``: None replays the trace's arrival times. A number replays it as the original's
        harness did for its figures: one blocking submitter, which submits the next job that many
        seconds after the previous one started (the trace's gaps are ignored; the cluster stays
        saturated)."""
        if hosts < 1 or slots < 1:
            raise ConfigError(f"a simulated cluster needs hosts and slots >= 1, got {hosts} x {slots}")
        self.scheduler = scheduler
        self.cluster = Cluster(hosts, slots)
        self.model = model
        self.state = PlannerState(heartbeat_timeout, scheduler.policy)
        self.heartbeat_interval = heartbeat_timeout / 4
        if migration is None and scheduler.migrate_every:
            migration = PlannerMigration()
        self.migration = migration
        self.hinted: set[str] = set()  # worlds the planner hinted would gain from moving (Hint actions)
        self.now = 0.0
        self.events: list[JobEvent] = []
        self.decisions: list[tuple[str, tuple[str, ...]]] = []
        self.running: dict[str, RunningJob] = {}
        self.host_ids = list(host_ids) if host_ids is not None else [f"h{i:04d}" for i in range(hosts)]
        if len(self.host_ids) != hosts or len(set(self.host_ids)) != hosts:
            raise ConfigError(f"{hosts} hosts need {hosts} distinct names, got {self.host_ids}")
        self._heap: list[tuple[float, int, int, str]] = []
        self._seq = 0
        self._jobs: dict[str, Job] = {}
        self._dispatched: dict[str, dict[int, str]] = {}
        self._open = 0  # jobs that have not ended or failed
        self._granule_host: dict[str, str] = {}
        self.submit_gap = submit_gap
        self._order: list[str] = []  # req ids in trace order (for the blocking submitter)
        self._position: dict[str, int] = {}

    # --- driving the planner ---------------------------------------------------------------
    def run(self, jobs: Sequence[Job]) -> SimResult:
        self.apply(self.state.tick(0.0))  # the regular deadlines count from the first tick
        for host_id in self.host_ids:
            self.apply(self.state.register_host(host_id, self.cluster.slots, 0.0, boot="sim"))
            for k in range(self.cluster.slots):
                gid = f"{host_id}/g{k}"
                self._granule_host[gid] = host_id
                self.apply(self.state.granule_connected(host_id, gid, None))
        for job in jobs:
            req_id = f"job{job.job_id}"
            if req_id in self._jobs:
                raise ConfigError(f"job id {job.job_id} appears twice in the trace")
            self._jobs[req_id] = job
            self._position[req_id] = len(self._order)
            self._order.append(req_id)
            if self.submit_gap is None:
                self._push(job.arrival, _ARRIVE, req_id)
        if self.submit_gap is not None and self._order:
            self._push(0.0, _ARRIVE, self._order[0])
        self._open = len(jobs)
        if math.isfinite(self.heartbeat_interval):
            self._push(self.heartbeat_interval, _BEAT, "")
        while self._heap:
            due = self.state.next_deadline()
            if due is not None and math.isfinite(due) and due <= self._heap[0][0]:
                self.now = max(self.now, due)
                self.apply(self.state.tick(self.now))
                continue
            t, kind, _, key = heapq.heappop(self._heap)
            self.now = t
            if kind == _ARRIVE:
                self._arrive(self._jobs[key])
            elif kind == _END:
                self._end(key, t)
            elif kind == _POINT:
                self._point(key)
            else:
                for host_id in self.host_ids:
                    self.apply(self.state.heartbeat(host_id, t))
                if self._open:
                    self._push(t + self.heartbeat_interval, _BEAT, "")
        return SimResult(self.cluster, self.scheduler.name, self.events, self.decisions, self.now,
                         self.scheduler.migrate_every if self.migration is not None else None)

    def _push(self, t: float, kind: int, key: str) -> None:
        heapq.heappush(self._heap, (t, kind, self._seq, key))
        self._seq += 1

    def _arrive(self, job: Job) -> None:
        req_id = f"job{job.job_id}"
        self.events.append(JobEvent(self.now, "submit", job.job_id, job.size, kind=job.kind))
        self.apply(self.state.submit(req_id, req_id, job.size, "script", job.kind, gang=True))

    def _end(self, req_id: str, t: float) -> None:
        run = self.running.get(req_id)
        if run is None or run.end != t:
            return  # a move re-timed it: this end is stale
        del self.running[req_id]
        self.hinted.discard(req_id)
        self._open -= 1
        self.events.append(JobEvent(t, "end", run.job.job_id, run.job.size, kind=run.job.kind))
        for index, gid in enumerate(run.granules):
            _, actions = self.state.task_done(gid, req_id, index, True)
            self.apply(actions)

    def apply(self, actions: Iterable[Action]) -> None:
        started: list[str] = []
        for action in actions:
            if isinstance(action, Dispatch):
                got = self._dispatched.setdefault(action.req_id, {})
                got[action.index] = action.granule_id
                if len(got) == self._jobs[action.req_id].size:
                    started.append(action.req_id)
            elif isinstance(action, Hint):
                self.hinted.add(action.req_id)
            elif isinstance(action, Fail):
                job = self._jobs.get(action.req_id)
                if job is not None and action.req_id not in self.running and action.index == 0:
                    self._open -= 1
                    self.events.append(JobEvent(self.now, "fail", job.job_id, job.size, kind=job.kind,
                                                detail=f"{action.error_kind}: {action.message}"))
                    self._submit_next(action.req_id)
            # The other actions (AppChanged, ...) have no effect on simulated hosts.
        for req_id in started:
            self._start(req_id)

    def host_of(self, granule_id: str) -> str:
        return self._granule_host[granule_id]

    def _start(self, req_id: str) -> None:
        job = self._jobs[req_id]
        by_rank = self._dispatched.pop(req_id)
        granules = [by_rank[i] for i in range(job.size)]
        hosts = [self._granule_host[g] for g in granules]
        self.decisions.append((req_id, tuple(hosts)))
        counts = counts_of(hosts)
        end = self.now + self.model.runtime(job.kind, [c for _, c in counts])
        run = RunningJob(job, req_id, granules, hosts, self.now, end, since=self.now)
        self.running[req_id] = run
        self.events.append(JobEvent(self.now, "start", job.job_id, job.size, counts, job.kind))
        self._push(end, _END, req_id)
        self._next_point(run)
        self._submit_next(req_id)

    def _submit_next(self, req_id: str) -> None:
        """The blocking submitter (``submit_gap``) goes on once ``req_id`` started (or failed)."""
        if self.submit_gap is None:
            return
        position = self._position[req_id]
        if position + 1 < len(self._order):
            self._push(self.now + self.submit_gap, _ARRIVE, self._order[position + 1])

    # --- migration (the hook comes with the planner's migration support) ------------------------
    def _next_point(self, run: RunningJob) -> None:
        every = self.scheduler.migrate_every
        if self.migration is None or every is None or every <= 0:
            return
        step = math.floor(run.done / every + 1e-9) + 1
        target = step * every
        if target < 1.0:
            rest = self.model.runtime(run.job.kind, [c for _, c in counts_of(run.hosts)])
            self._push(run.since + (target - run.done) * rest, _POINT, run.req_id)

    def _point(self, req_id: str) -> None:
        run = self.running.get(req_id)
        if run is None or self.migration is None:
            return
        self._progress(run)
        self.migration.at_point(self, run)
        self._next_point(run)

    def _progress(self, run: RunningJob) -> None:
        total = self.model.runtime(run.job.kind, [c for _, c in counts_of(run.hosts)])
        run.done = min(1.0, run.done + (self.now - run.since) / total)
        run.since = self.now

    def move(self, run: RunningJob, hosts: Sequence[str], granules: Sequence[str]) -> None:
        """The job's ranks now run on ``hosts`` (granules ``granules``): the rest of its work is re-timed."""
        self._progress(run)
        run.hosts, run.granules = list(hosts), list(granules)
        counts = counts_of(run.hosts)
        rest = (1.0 - run.done) * self.model.runtime(run.job.kind, [c for _, c in counts])
        run.end = self.now + rest
        run.version += 1
        self.events.append(JobEvent(self.now, "move", run.job.job_id, run.job.size, counts, run.job.kind))
        self._push(run.end, _END, run.req_id)


def simulate(jobs: Sequence[Job], scheduler: Scheduler, hosts: int, slots: int, model: RuntimeModel,
             heartbeat_timeout: float = math.inf) -> SimResult:
    return Simulator(scheduler, hosts, slots, model, heartbeat_timeout).run(jobs)
