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
  migration points (every ``migrate_every`` of its work) once the planner can migrate. A frozen job
  (:meth:`Simulator.freeze`) keeps its fraction done and goes on from there when the state thaws
  it (a Dispatch with ``thaw``).
- Contention (:mod:`.contention`, the testbed-calibrated model only): a job's rate is 1 / (its
  runtime x the model's slowdown for the slots busy now), so every change of the busy slots
  re-times the running jobs (:meth:`Simulator._rebalance`), and an MPI job's slots come back
  ``release`` seconds after its end (its rank processes retire; the worker forks fresh ones).
- Spot VMs (:mod:`.spot`): under an eviction schedule, hosts get notices, are taken back by the
  state (StopWorker) and come back as new workers; a Kill of a live host's granule is its process
  ending (the worker starts a fresh granule in its slot); a job that lost ranks is submitted again.
Pure: no clocks, threads or I/O; the harness (:mod:`granny.experiment`) reads and writes files.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from ..errors import ConfigError
from ..planner.lifecycle import AppKind
from ..planner.policies.base import counts_of
from ..planner.records import Action, Dispatch, Fail, Hint, Kill, RankAddress, StopWorker
from ..planner.state import PlannerState
from .contention import Contention
from .events import Cluster, JobEvent
from .migrate import PlannerMigration
from .running import RunningJob
from .runtime import RuntimeModel
from .schedulers import Scheduler
from .spot import ORIGINAL, EvictionSchedule, Evictor
from .trace import Job

_RETURN, _END, _POINT, _ARRIVE, _BEAT, _TAKE, _EVICT, _LATER = -1, 0, 1, 2, 3, 4, 5, 6


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
    evictions: dict[str, float] | None = None  # the eviction schedule it ran under, and how many hosts it took
    policy: str = ""  # the planner's policy


class Simulator:
    def __init__(self, scheduler: Scheduler, hosts: int, slots: int, model: RuntimeModel,
                 heartbeat_timeout: float = math.inf, migration: MigrationHook | None = None,
                 host_ids: Sequence[str] | None = None, submit_gap: float | None = None,
                 evictions: EvictionSchedule | None = ORIGINAL) -> None:
        """``host_ids``: the hosts' names, in the order they register (default h0000, h0001...); a
        replay of a live run gives the live hosts' names, since policies break ties by host id.

        ``submit_gap``: None replays the trace's arrival times. A number replays it as the original's
        harness did for its figures: one blocking submitter, which submits the next job that many
        seconds after the previous one started (the trace's gaps are ignored; the cluster stays
        saturated).

        ``evictions``: the schedule a scheduler that runs under evictions (``Scheduler.evictions``) gets;
        None runs it without evictions."""
        if hosts < 1 or slots < 1:
            raise ConfigError(f"a simulated cluster needs hosts and slots >= 1, got {hosts} x {slots}")
        self.scheduler = scheduler
        self.cluster = Cluster(hosts, slots)
        self.model = model
        self.contention: Contention | None = getattr(model, "contention", None)  # (a test's stand-in model: none)
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
        self._frozen: dict[str, RunningJob] = {}  # req_id -> a frozen job, as it was when it froze
        self._lost: set[str] = set()  # requests that lost ranks to an eviction (submitted again as another)
        self._attempts: dict[int, int] = {}  # job id -> times submitted again
        self._granule_seq = 0
        self._points: dict[str, float] = {}  # req_id -> when its next migration point is due
        self.evictor = Evictor(self, evictions) if scheduler.evictions and evictions is not None else None
        self._later: dict[str, Callable[[], None]] = {}  # what a driver asked to do at a later instant
        self._over = 0.0  # the contention model's load past the cores at the last re-timing (contention.py)

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
        if self.evictor is not None:
            self.evictor.start()
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
            elif kind == _RETURN:
                assert self.evictor is not None
                self.evictor.back(key)
            elif kind == _TAKE:
                assert self.evictor is not None
                self.evictor.take(key)
            elif kind == _EVICT:
                assert self.evictor is not None
                self.evictor.round()
            elif kind == _LATER:
                self._later.pop(key)()
            else:
                for host_id in self.host_ids:
                    self.apply(self.state.heartbeat(host_id, t))
                if self._open:
                    self._push(t + self.heartbeat_interval, _BEAT, "")
        evictions = None
        if self.evictor is not None:
            s = self.evictor.schedule
            evictions = {"every": s.every, "fraction": s.fraction, "grace": s.grace, "down": s.down, "seed": s.seed,
                         "rounds": self.evictor.rounds, "hosts_taken": self.evictor.taken}
        return SimResult(self.cluster, self.scheduler.name, self.events, self.decisions, self.now,
                         self.scheduler.migrate_every if self.migration is not None else None, evictions,
                         self.scheduler.policy.name)

    def _push(self, t: float, kind: int, key: str) -> None:
        heapq.heappush(self._heap, (t, kind, self._seq, key))
        self._seq += 1

    def later(self, t: float, call: Callable[[], None]) -> None:
        """Call ``call()`` at virtual time ``t`` (after the ends, points and arrivals of that instant)."""
        key = f"later{self._seq}"
        self._later[key] = call
        self._push(t, _LATER, key)

    def push_evict(self, t: float) -> None:
        self._push(t, _EVICT, "")

    def push_take(self, t: float, host_id: str) -> None:
        self._push(t, _TAKE, host_id)

    def push_return(self, t: float, host_id: str) -> None:
        self._push(t, _RETURN, host_id)

    def open_jobs(self) -> int:
        return self._open

    def new_granule(self, host_id: str) -> None:
        """A fresh warm granule on ``host_id`` (a returning host's, or one replacing a process that ended)."""
        self._granule_seq += 1
        gid = f"{host_id}/n{self._granule_seq}"
        self._granule_host[gid] = host_id
        self.apply(self.state.granule_connected(host_id, gid, None))

    def _arrive(self, job: Job) -> None:
        req_id = f"job{job.job_id}"
        self.events.append(JobEvent(self.now, "submit", job.job_id, job.size, kind=job.kind))
        if job.tolerance and self.scheduler.delay_tolerant:  # a delay-tolerant call: the batch queue (dfaas.py)
            self.apply(self.state.submit(req_id, req_id, 1, AppKind.FUNCTIONS, job.kind, tolerance=job.tolerance,
                                         key=job.kind, now=self.now))
            return
        self.apply(self.state.submit(req_id, req_id, job.size, AppKind.SCRIPT, job.kind, gang=True))

    def _end(self, req_id: str, t: float) -> None:
        run = self.running.get(req_id)
        if run is None or run.end != t:
            return  # a move re-timed it: this end is stale
        del self.running[req_id]
        self.hinted.discard(req_id)
        self._open -= 1
        self.events.append(JobEvent(t, "end", run.job.job_id, run.job.size, kind=run.job.kind))
        if self.scheduler.delay_tolerant:  # as the server's deadlines.observe_runtime, on each call's Done
            b = self.state.batch
            b.now = max(b.now, t)
            b.observe(run.job.kind, t - run.started)
        release = self.contention.release if self.contention is not None else 0.0
        retiring = [gid for gid, _, _ in self.tasks_of(run)] if release > 0 and self.retires(run) else []
        for gid in retiring:  # as the server on a retiring rank's Done: never hand it more work
            self.state.granule_disconnected(gid)
        for gid, rid, index in self.tasks_of(run):
            _, actions = self.state.task_done(gid, rid, index, True)
            self.apply(actions)
        if retiring:
            self.later(t + release, lambda: self._retired(retiring))
        self._rebalance()

    def retires(self, run: RunningJob) -> bool:
        """Whether a job's granules end with it (an MPI rank's process does; a call's granule stays)."""
        return True

    def _retired(self, granules: list[str]) -> None:
        """Retired rank processes exited; their workers' fresh granules take their slots."""
        for gid in granules:
            host_id = self._granule_host[gid]
            self.apply(self.state.granule_exited(gid, "exit code 0"))
            self.new_granule(host_id)

    def tasks_of(self, run: RunningJob) -> list[tuple[str, str, int]]:
        """(granule, request, index) of each of a running job's granules, reported done at its end."""
        return [(gid, run.req_id, index) for index, gid in enumerate(run.granules)]

    def granules_needed(self, req_id: str) -> int:
        """How many granules request ``req_id`` needs dispatched before it starts."""
        return self._jobs[req_id].size

    def apply(self, actions: Iterable[Action]) -> None:
        started: list[str] = []
        ended: list[Kill] = []
        for action in actions:
            if isinstance(action, Dispatch):
                got = self._dispatched.setdefault(action.req_id, {})
                got[action.index] = action.granule_id
                if len(got) == self.granules_needed(action.req_id):
                    started.append(action.req_id)
            elif isinstance(action, Hint):
                self.hinted.add(action.req_id)
            elif isinstance(action, Fail):
                job = self._jobs.get(action.req_id)
                if action.req_id in self._lost:
                    continue
                if action.req_id in self.running:
                    self._lose(action.req_id, action)
                elif job is not None and action.index == 0:
                    self._open -= 1
                    self.events.append(JobEvent(self.now, "fail", job.job_id, job.size, kind=job.kind,
                                                detail=f"{action.error_kind}: {action.message}"))
                    self._submit_next(action.req_id)
            elif isinstance(action, Kill) and not action.signal:  # (a pause is no end: planner/pausing.py)
                ended.append(action)
            elif isinstance(action, StopWorker) and self.evictor is not None:
                self.evictor.stopped(action.host_id)
            # The other actions (AppChanged, ...) have no effect on simulated hosts.
        for req_id in started:
            self._start(req_id)
        for kill in ended:
            self._killed(kill)

    def _killed(self, kill: Kill) -> None:
        """A granule's process ends when killed; on a live host its worker starts a fresh one."""
        granule = self.state.granules.get(kill.granule_id)
        host = self.state.hosts.get(kill.host_id)
        if granule is None or host is None or not host.alive:
            return  # its host is gone (evicted): nothing to replace
        self.apply(self.state.granule_exited(kill.granule_id, f"killed: {kill.reason}"))
        self.new_granule(kill.host_id)

    def _lose(self, req_id: str, fail: Fail) -> None:
        """A running job lost ranks (its host was taken back): it is submitted again, from the start."""
        run = self.running.pop(req_id)
        self._rebalance()
        self._lost.add(req_id)
        self.hinted.discard(req_id)
        job = run.job
        attempt = self._attempts[job.job_id] = self._attempts.get(job.job_id, 0) + 1
        self.events.append(JobEvent(self.now, "evicted", job.job_id, job.size, kind=job.kind,
                                    detail=f"{fail.error_kind}: {fail.message}"))
        again = f"job{job.job_id}.r{attempt}"
        self._jobs[again] = job
        self.apply(self.state.submit(again, again, job.size, AppKind.SCRIPT, job.kind, gang=True))

    def host_of(self, granule_id: str) -> str:
        return self._granule_host[granule_id]

    def _start(self, req_id: str) -> None:
        job = self._jobs[req_id]
        by_rank = self._dispatched.pop(req_id)
        self.begin(req_id, job, [by_rank[i] for i in range(job.size)])

    def begin(self, req_id: str, job: Job, granules: list[str]) -> None:
        """``job`` (request ``req_id``) has all its granules: it starts (or thaws) on their hosts."""
        hosts = [self._granule_host[g] for g in granules]
        if req_id in self._frozen:
            self._thaw(req_id, granules, hosts)
            return
        self.decisions.append((req_id, tuple(hosts)))
        counts = counts_of(hosts)
        run = RunningJob(job, req_id, granules, hosts, self.now, self.now, since=self.now)
        self.running[req_id] = run
        run.pace = self._pace(run, self._busy())
        run.end = self.now + run.pace
        self.events.append(JobEvent(self.now, "start", job.job_id, job.size, counts, job.kind))
        self._push(run.end, _END, req_id)
        self._next_point(run)
        self._rebalance()
        self._submit_next(req_id)

    def _submit_next(self, req_id: str) -> None:
        """The blocking submitter (``submit_gap``) goes on once ``req_id`` started (or failed)."""
        if self.submit_gap is None:
            return
        position = self._position.get(req_id)
        if position is None:
            return  # a job submitted again after an eviction: the submitter has moved on
        if position + 1 < len(self._order):
            self._push(self.now + self.submit_gap, _ARRIVE, self._order[position + 1])

    # --- migration (the hook comes with the planner's migration support) ------------------------
    def _next_point(self, run: RunningJob) -> None:
        every = self.scheduler.migrate_every or self.scheduler.fork_every
        if self.migration is None or every is None or every <= 0:
            return
        step = math.floor(run.done / every + 1e-9) + 1
        target = step * every
        if target < 1.0:
            due = self._points[run.req_id] = run.since + (target - run.done) * run.pace
            self._push(due, _POINT, run.req_id)

    def _point(self, req_id: str) -> None:
        run = self.running.get(req_id)
        if run is None or self.migration is None or self._points.get(req_id) != self.now:
            return  # (a point of a job that froze and thawed since: a newer one is due)
        self._progress(run)
        self.migration.at_point(self, run)
        self._next_point(run)

    def _progress(self, run: RunningJob) -> None:
        run.done = min(1.0, run.done + max(0.0, self.now - run.since) / run.pace)
        run.since = max(run.since, self.now)  # (a move's cost may still be running)

    def _busy(self) -> int:
        """Slots running ranks (counted only under a contention model: it is O(running jobs))."""
        if self.contention is None:
            return 0
        return sum(len(r.granules) for r in self.running.values())

    def _pace(self, run: RunningJob, busy: int) -> float:
        """Seconds the whole of ``run`` takes on its split while ``busy`` slots run ranks."""
        solo = self.model.runtime(run.job.kind, [c for _, c in counts_of(run.hosts)])
        return solo if self.contention is None else solo * self.model.slowdown(run.job.kind, busy)

    def _rebalance(self) -> None:
        """The busy slots changed: each running job whose rate changed goes on at its new rate from now
        (its work done so far kept, its end and next point re-timed). A no-op without a contention model."""
        if self.contention is None:
            return
        busy = self._busy()
        over = self.contention.over(busy)
        if over == self._over:
            return  # every running job's rate is what it was (a job that started or moved set its own)
        self._over = over
        for run in self.running.values():
            pace = self._pace(run, busy)
            if pace == run.pace:
                continue
            self._progress(run)
            run.pace = pace
            run.end = run.since + (1.0 - run.done) * pace
            self._push(run.end, _END, run.req_id)
            self._next_point(run)

    def move(self, run: RunningJob, hosts: Sequence[str], granules: Sequence[str]) -> None:
        """The job's ranks now run on ``hosts`` (granules ``granules``): the rest of its work is re-timed."""
        self._progress(run)
        self._resume(run, hosts, granules, "move")

    def _resume(self, run: RunningJob, hosts: Sequence[str], granules: Sequence[str], what: str) -> None:
        run.hosts, run.granules = list(hosts), list(granules)
        counts = counts_of(run.hosts)
        run.pace = self._pace(run, self._busy())
        run.since = self.now + self.scheduler.move_cost  # the move's cost: no progress meanwhile
        run.end = run.since + (1.0 - run.done) * run.pace
        run.version += 1
        self.events.append(JobEvent(self.now, what, run.job.job_id, run.job.size, counts, run.job.kind))
        self._push(run.end, _END, run.req_id)
        self._rebalance()

    def freeze(self, run: RunningJob) -> None:
        """The state froze the job (its ranks' state is stored, their slots free): it stops here."""
        self._progress(run)
        del self.running[run.req_id]
        self.hinted.discard(run.req_id)
        run.version += 1
        self._frozen[run.req_id] = run
        self.events.append(JobEvent(self.now, "freeze", run.job.job_id, run.job.size, kind=run.job.kind))
        self._rebalance()

    def _thaw(self, req_id: str, granules: list[str], hosts: list[str]) -> None:
        """The state placed a frozen job again: every rank resumes from its stored state, in the
        generation the freeze opened (joining it completes the thaw in the state)."""
        run = self._frozen.pop(req_id)
        gen = self.state.requests[req_id].frozen
        self.running[req_id] = run
        self._resume(run, hosts, granules, "thaw")
        for index, gid in enumerate(granules):
            self.apply(self.state.mpi_join(gid, req_id, index, RankAddress(hosts[index], 0, "sim", 0), gen, self.now))
        self._next_point(run)


def simulate(jobs: Sequence[Job], scheduler: Scheduler, hosts: int, slots: int, model: RuntimeModel,
             heartbeat_timeout: float = math.inf) -> SimResult:
    return Simulator(scheduler, hosts, slots, model, heartbeat_timeout).run(jobs)
