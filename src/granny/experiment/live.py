"""Live replay: a trace, scaled down, run as real jobs on the namespace testbed (``--mode testbed``).

Theory of operation
- **Scaling.** The original's jobs ran on VMs of 8 cores; ours run on testbed hosts of ``slots``
  slots (4 x 2 on this 2-core machine). A job of S ranks or threads runs ceil(S x slots / 8) of them,
  and the trace's arrival times are multiplied by ``time_scale`` (our job's runtime over the
  original's, from the two runtime models; :func:`time_scale`). Both are written in ``run.json``.
- **Jobs** are the kernels of :mod:`.kernels` (sleep-based work, real communication): an MPI world
  (``submit_mpi``) for the mpi-* traces, an OpenMP-style ``granny.parallel_for`` job for omp-*.
  Each job is its own app (``<tag>-job<N>``), as each simulated job is, since policies place and
  migrate per app.
- **Schedulers** are the planner's own policies (``set-policy``): batch = whole-hosts, slurm =
  first-fit, granny = bin-pack, each with ``migrate=False``; granny-migrate = bin-pack, and the MPI
  kernel reaches a migration point every ``migrate_every`` of its steps (as the simulator's 10%).
  An OpenMP-style job's thread 0 is a gang of one granule (``submit_gang``), which the planner places
  as it places a world, never prefetched behind another job's task; its team is leased from there,
  into the slots the planner held for it (``submit_gang(team=size - 1)``: planner/holds.py).
  granny-elastic = bin-pack, and its OpenMP-style jobs run :func:`.kernels.omp_elastic_job`: the team
  is elastic (``parallel_for(elastic=True)``), so it grows at forks into its host's free slots through
  revocable leases and gives them back when the planner asks (parallel/team.py), as the simulator's
  :class:`granny.sim.elastic.ElasticTeamSimulator` models it.
  Function calls (the dfaas traces' ``fn2``... kinds) are calls of :data:`.kernels.CALLS` that sleep
  their seconds x ``time_scale``: under ``dfaas`` a delay-tolerant one is submitted with its (scaled)
  tolerance, so the planner's batch queue decides when it runs; otherwise, and for the
  latency-sensitive ones, as a gang of one (as the simulator submits them).
- **What happened** comes from the planner: each job's submission (``requests.created``) and end
  (the last ``results.finished`` of its app) from the planner's journal, its moves from the
  journal's ``migration.moved`` events (with how long each took, in the event's ``detail``; and
  freezes/thaws from theirs), and the moment every one of
  its granules runs, with their hosts, from the planner's ``app`` view, polled every ``poll``
  seconds (the journal does not record dispatches). They become the simulator's
  :class:`granny.sim.JobEvent` records, so that :func:`granny.experiment.metrics.compute` reads a live
  run and a simulated one alike. A team's growth and give-backs are the journal's ``app.placed`` and
  ``app.finished`` events of its app's later requests (its leases): ``resize`` events, as simulated.
"""

from __future__ import annotations

import json
import math
import sqlite3
import statistics
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import granny

from ..errors import ConfigError, GrannyError
from ..planner.policies.base import counts_of
from ..sim import Cluster, Job, JobEvent, RuntimeModel, SimResult, optimal_counts
from ..sim.dfaas import FUNCTIONS, is_call
from ..sim.schedulers import MIGRATE_EVERY, SCHEDULERS
from . import kernels

ORIGINAL_SLOTS = 8  # cores of the original's VMs
LIVE_SCHEDULERS = ("batch", "slurm", "granny", "granny-migrate", "granny-elastic", "dfaas")
ELASTIC = "granny-elastic"
DFAAS = "dfaas"
LINKS = {"latency": "5ms", "bandwidth": "100mbit"}  # every pair of testbed hosts, one way
# The original's network-bound LAMMPS (a 9-rank job split 8 + 1 took 2.3x its one-host time); its
# mpi-migrate / spot traces ran a compute-bound one that hardly noticed crossing hosts.
NETWORK_BOUND = ("mpi-locality",)


@dataclass(frozen=True)
class Workload:
    """The kernels' parameters (the calibration measures these very jobs)."""

    steps: int = 20  # MPI steps, and omp regions
    serial: float = 1.0  # seconds of a job's work that do not shrink with more ranks
    work: float = 6.0  # rank-seconds of its work that do
    nbytes: int = 32 * 1024  # MPI: bytes of each all-to-all per pair of ranks and step
    omp_nbytes: int = 64 * 1024  # omp: bytes of the shared array the team writes at every region
    network_rounds: int = 6  # all-to-alls a step of a network-bound job (mpi-locality); the others do 1

    def rounds(self, kind: str) -> int:
        return self.network_rounds if kind in NETWORK_BOUND else 1

    def to_json(self) -> dict[str, Any]:
        return {"steps": self.steps, "serial": self.serial, "work": self.work, "nbytes": self.nbytes,
                "omp_nbytes": self.omp_nbytes, "network_rounds": self.network_rounds}


@dataclass(frozen=True)
class Scaling:
    slots: int  # our hosts' slots (the original's VMs had 8 cores)
    time_scale: float  # our seconds per original second (arrivals)

    def size(self, size: int) -> int:
        return max(1, math.ceil(size * self.slots / ORIGINAL_SLOTS))

    def jobs(self, jobs: Sequence[Job]) -> list[Job]:
        return [Job(j.job_id, j.kind, self.size(j.size), round(j.arrival * self.time_scale, 3),
                    round(j.tolerance * self.time_scale, 3) if j.tolerance > 0 else j.tolerance) for j in jobs]

    def to_json(self) -> dict[str, Any]:
        return {"sizes": f"ceil(size x {self.slots} / {ORIGINAL_SLOTS})", "time_scale": round(self.time_scale, 5)}

    def describe(self) -> str:
        return (f"scaled: sizes ceil(S x {self.slots}/{ORIGINAL_SLOTS}) (the original's 8-core VMs onto {self.slots}-slot "
                f"hosts), arrival times x {self.time_scale:.4f} (our jobs' runtime over the original's)")


def time_scale(jobs: Sequence[Job], slots: int, original: RuntimeModel, ours: RuntimeModel) -> float:
    """Median over the trace's jobs of (our runtime of the scaled job) / (the original's runtime of
    the job), each on its fewest hosts."""
    jobs = [j for j in jobs if not is_call(j)]  # (function calls' seconds are scaled by the result)
    if not jobs:
        return 1.0
    probe = Scaling(slots, 1.0)
    ratios = [ours.runtime(j.kind, optimal_counts(probe.size(j.size), slots))
              / original.runtime(j.kind, optimal_counts(j.size, ORIGINAL_SLOTS)) for j in jobs]
    return statistics.median(ratios)


def is_omp(kind: str) -> bool:
    return kind.startswith("omp")


def schedulers_for(jobs: Sequence[Job]) -> list[str]:
    """The live schedulers worth running on ``jobs``: granny-elastic only differs from granny on
    OpenMP-style jobs, dfaas on delay-tolerant calls."""
    omp = any(is_omp(j.kind) for j in jobs)
    tolerant = any(is_call(j) and j.tolerance != 0 for j in jobs)
    return [n for n in LIVE_SCHEDULERS if (n != ELASTIC or omp) and (n != DFAAS or tolerant)]


def policy_of(scheduler: str) -> str:
    if scheduler not in LIVE_SCHEDULERS:
        raise ConfigError(f"--mode testbed runs {', '.join(LIVE_SCHEDULERS)}; not {scheduler!r}")
    return SCHEDULERS[scheduler][0]


def points_every(scheduler: str, workload: Workload) -> int:
    """Steps between two migration points of the MPI kernel under ``scheduler`` (0: none)."""
    every = MIGRATE_EVERY.get(scheduler)
    return max(1, round(every * workload.steps)) if every else 0


Row = tuple[float, str, str, dict[str, Any]]  # a journal event: at, kind, req_id, data
TEAM_KINDS = ("app.placed", "app.finished", "app.failed", "app.cancelled")


def team_changes(rows: Sequence[Row], base: dict[tuple[str, int], str], size: int) -> list[tuple[float, tuple[tuple[str, int], ...]]]:
    """An OpenMP-style job's team over time, from its app's ``app.placed`` / ``app.finished``... events:
    (when, granules per host) each time a request beyond its first (thread 0) and second (its team of
    ``size - 1``) was placed or ended; ``base`` is where those first ones run. Changes at one instant
    (the planner placed several one-granule leases in one pass) make one."""
    firsts = 1 if size == 1 else 2
    placed: list[str] = []
    grown: dict[str, dict[str, int]] = {}
    out: list[tuple[float, tuple[tuple[str, int], ...]]] = []
    for at, kind, req_id, data in rows:
        if kind == "app.placed" and req_id not in placed:
            placed.append(req_id)
            if len(placed) <= firsts:
                continue
            grown[req_id] = {str(h): int(n) for h, n in dict(data.get("hosts", {})).items()}
        elif kind != "app.placed" and req_id in grown:
            del grown[req_id]
        else:
            continue
        hosts = list(base.values()) + [h for per in grown.values() for h, n in per.items() for _ in range(n)]
        counts = counts_of(hosts)
        if out and out[-1][0] == at:
            out[-1] = (at, counts)
        else:
            out.append((at, counts))
    return out


@dataclass
class _Live:
    job: Job
    app_id: str
    future: Future[Any] | None = None
    client: Any = None
    submitted: float = math.nan  # harness clock (fallback if the journal has no row)
    started: float | None = None
    hosts: dict[tuple[str, int], str] = field(default_factory=dict)  # (req_id, index) -> host at start
    finished: float | None = None
    error: str = ""
    closing: float | None = None  # an elastic job's team began to close (wall clock): its leases end from there


class LiveReplay:
    """Replays scaled jobs with one scheduler on a running testbed's planner (``address``, ``token``);
    ``journal`` is the planner's journal file, read once the jobs are over."""

    def __init__(self, address: str, token: str, journal: Path, scheduler: str, workload: Workload,
                 tag: str, poll: float = 0.1, timeout: float = 900.0, log: Any = None, call_scale: float = 1.0) -> None:
        """``call_scale``: the trace's time scale, which a function call's seconds are multiplied by."""
        self.address, self.token, self.journal = address, token, journal
        self.call_scale = call_scale
        self.scheduler, self.policy = scheduler, policy_of(scheduler)
        self.workload, self.tag, self.poll, self.timeout = workload, tag, poll, timeout
        self.log = log or (lambda msg: None)
        self.host_ids: list[str] = []

    def run(self, jobs: Sequence[Job]) -> SimResult:
        with granny.connect(self.address, self.token) as admin:
            admin.query("set-policy", self.policy)
            cluster = self._wait_idle(admin)
            live = [_Live(j, f"{self.tag}-job{j.job_id}") for j in sorted(jobs, key=lambda j: j.arrival)]
            stop = threading.Event()
            t0 = time.time()
            watcher = threading.Thread(target=self._watch, args=(admin, live, stop), name="replay-watch", daemon=True)
            watcher.start()
            try:
                self._submit_all(live, t0)
                self._wait_all(live, t0)
            finally:
                stop.set()
                watcher.join(timeout=10)
                for item in live:
                    if item.client is not None:
                        item.client.close()
        events = self._events(live, t0)
        ends = [e.t for e in events if e.what in ("end", "fail")]
        return SimResult(cluster, self.scheduler, events, decisions=self._decisions(live), end=max(ends, default=0.0),
                         migrate_every=MIGRATE_EVERY.get(self.scheduler))

    # --- driving the jobs -------------------------------------------------------------------
    def _wait_idle(self, admin: Any) -> Cluster:
        deadline = time.monotonic() + 120
        while True:
            hosts = admin.hosts()
            if hosts and all(h.alive and h.used == 0 and h.idle_granules >= h.slots for h in hosts):
                self.host_ids = [h.host_id for h in hosts]
                return Cluster(len(hosts), hosts[0].slots)
            if time.monotonic() > deadline:
                raise GrannyError(f"the testbed's hosts did not settle (idle, warm pools full): {hosts}")
            time.sleep(0.1)  # the harness waits on the cluster (not a test)

    def _submit_all(self, live: list[_Live], t0: float) -> None:
        w = self.workload
        every = points_every(self.scheduler, w)
        for item in live:
            delay = t0 + item.job.arrival - time.time()
            if delay > 0:
                time.sleep(delay)  # the next arrival
            item.client = granny.connect(self.address, self.token, app_id=item.app_id)
            opts = item.client.options(migrate=every > 0)
            item.submitted = time.time() - t0
            if is_call(item.job):
                fn, seconds = kernels.CALLS[item.job.kind], FUNCTIONS[item.job.kind] * self.call_scale
                if self.scheduler == DFAAS and item.job.tolerance != 0:
                    item.future = item.client.options(delay_tolerance=item.job.tolerance).submit(fn, seconds)
                else:
                    item.future = item.client.submit_gang(fn, 1, (seconds,))
            elif is_omp(item.job.kind):
                # A gang of one, not a plain call: a call may be prefetched behind another job's task on a
                # busy granule (the planner's shortcut for short calls), where it would wait for that job.
                kernel = kernels.omp_elastic_job if self.scheduler == ELASTIC else kernels.omp_job
                item.future = item.client.submit_gang(kernel, 1, (item.job.size, w.steps, w.serial, w.work, w.omp_nbytes),
                                                       team=item.job.size - 1)
            else:
                item.future = opts.submit_mpi(kernels.mpi_job, item.job.size,
                                              (w.steps, w.serial, w.work, w.nbytes, every, w.rounds(item.job.kind)))
            self.log(f"t={item.submitted:6.2f}s submit job {item.job.job_id} ({item.job.kind}, {item.job.size})")

    def _wait_all(self, live: list[_Live], t0: float) -> None:
        futures = {item.future: item for item in live if item.future is not None}
        deadline = time.monotonic() + self.timeout
        pending = set(futures)
        while pending:
            done, pending = wait(pending, timeout=max(0.0, deadline - time.monotonic()), return_when="FIRST_COMPLETED")
            if not done:
                raise GrannyError(f"{len(pending)} jobs still running after {self.timeout:.0f} s")
            for fut in done:
                item = futures[fut]
                item.finished = time.time() - t0
                exc = fut.exception()
                item.error = f"{type(exc).__name__}: {exc}" if exc is not None else ""
                if exc is None and isinstance(out := fut.result(), list) and out and isinstance(out[0], dict):
                    item.closing = out[0].get("closing")
                self.log(f"t={item.finished:6.2f}s job {item.job.job_id} {'FAILED ' + item.error if exc else 'done'}")

    def _watch(self, admin: Any, live: list[_Live], stop: threading.Event) -> None:
        """The planner's view of each job until all its granules run: its start and its hosts."""
        while not stop.wait(self.poll):
            for item in live:
                if item.future is None or item.started is not None:
                    continue
                try:
                    rows = admin.query("app", item.app_id)["granules"]
                except GrannyError:
                    continue
                now = time.time()
                base = list(dict.fromkeys(r["req_id"] for r in rows))[:2]  # thread 0 and its team, not their growth
                active = [r for r in rows if r["state"] in ("running", "succeeded") and r["host_id"]
                          and (r["req_id"] in base or not is_omp(item.job.kind))]
                if len(active) >= item.job.size:
                    item.started = now
                    item.hosts = {(r["req_id"], int(r["index"])): r["host_id"] for r in active}

    # --- what happened, from the planner -----------------------------------------------------
    def _events(self, live: list[_Live], t0: float) -> list[JobEvent]:
        apps = {item.app_id: item for item in live}
        created, finished, moves, teams = self._journal(list(apps))
        events: list[JobEvent] = []
        for item in live:
            j = item.job
            submit = created.get(item.app_id, t0 + item.submitted) - t0
            events.append(JobEvent(submit, "submit", j.job_id, j.size, kind=j.kind))
            if item.started is None:
                events.append(JobEvent(item.finished or submit, "fail", j.job_id, j.size, kind=j.kind,
                                       detail=item.error or "never seen running"))
                continue
            where = dict(item.hosts)
            start = max(submit, item.started - t0)
            events.append(JobEvent(start, "start", j.job_id, j.size, counts_of(where.values()), j.kind))
            end_at = item.closing or finished.get(item.app_id)
            for at, counts in team_changes(teams.get(item.app_id, []), where, j.size):
                if start < at - t0 and (end_at is None or at < end_at):
                    events.append(JobEvent(at - t0, "resize", j.job_id, j.size, counts, j.kind))
            for at, what, req_id, data in moves.get(item.app_id, []):
                if what == "moved":
                    for row in data.get("moves", []):
                        where[(req_id, int(row["index"]))] = str(row["target"])
                    events.append(JobEvent(at - t0, "move", j.job_id, j.size, counts_of(where.values()), j.kind,
                                           detail=f"{float(data.get('seconds', 0.0)):.3f} s"))
                else:
                    events.append(JobEvent(at - t0, what, j.job_id, j.size,
                                           counts_of(where.values()) if what == "thaw" else (), j.kind))
            if item.error:
                events.append(JobEvent(item.finished or submit, "fail", j.job_id, j.size, kind=j.kind, detail=item.error))
            else:
                end = finished.get(item.app_id)
                events.append(JobEvent(end - t0 if end is not None else item.finished or submit, "end", j.job_id,
                                       j.size, kind=j.kind))
        return sorted(events, key=lambda e: e.t)

    def _journal(self, apps: list[str]) -> tuple[dict[str, float], dict[str, float], dict[str, list[Row]],
                                                 dict[str, list[Row]]]:
        """Per app: first submission, last result, its migration events and its requests' placements
        and ends (``app.placed`` / ``app.finished``...), from the planner's journal."""
        marks = ",".join("?" * len(apps))
        kinds = {"migration.moved": "moved", "migration.frozen": "freeze", "migration.thawed": "thaw"}
        deadline = time.monotonic() + 10
        while True:  # the journal commits in batches: wait until every app's last result is in
            db = sqlite3.connect(f"file:{self.journal}?mode=ro", uri=True, timeout=5)
            try:
                created = dict(db.execute(f"SELECT app_id, MIN(created) FROM requests WHERE app_id IN ({marks}) "
                                          "GROUP BY app_id", apps).fetchall())
                finished = dict(db.execute(
                    f"SELECT q.app_id, MAX(r.finished) FROM results r JOIN requests q ON q.req_id = r.req_id "
                    f"WHERE q.app_id IN ({marks}) GROUP BY q.app_id", apps).fetchall())
                rows = db.execute(f"SELECT at, app_id, req_id, kind, data FROM events WHERE app_id IN ({marks}) "
                                  "ORDER BY id", apps).fetchall()
            finally:
                db.close()
            if len(finished) == len(apps) or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        moves: dict[str, list[Row]] = {}
        teams: dict[str, list[Row]] = {}
        for at, app_id, req_id, kind, data in rows:
            if kind in kinds:
                moves.setdefault(app_id, []).append((float(at), kinds[kind], req_id, dict(json.loads(data or "{}"))))
            elif kind in TEAM_KINDS:
                teams.setdefault(app_id, []).append((float(at), kind, req_id, dict(json.loads(data or "{}"))))
        return ({k: float(v) for k, v in created.items()}, {k: float(v) for k, v in finished.items()}, moves, teams)

    def _decisions(self, live: list[_Live]) -> list[tuple[str, tuple[str, ...]]]:
        return [(f"job{item.job.job_id}", tuple(sorted(item.hosts.values()))) for item in live if item.started is not None]
