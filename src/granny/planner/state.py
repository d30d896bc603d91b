"""The planner's state machine: events in, actions out.

Theory of operation
- Hosts register with a slot count and heartbeat; :meth:`PlannerState.tick` declares a host dead when
  its last heartbeat is older than the timeout, and fails the tasks running there. It comes back as
  a new *incarnation*; the granules of the dead one are *fenced* (see :mod:`.liveness`).
- A *request* asks for ``n`` granules with one payload; ``n > 1`` is gang-placed (all or nothing).
  Requests wait in one FIFO queue, oldest first; the head blocks those behind it, so a large gang is
  never starved by a stream of small ones.
- Slot use is derived, never stored: a host's free capacity is ``min(slots - busy, idle granules)``,
  so a host whose crashed granule is still being replaced simply has less room for a moment.
- Prefetch: a granule busy with a short-request task (a function call, ``n == 1``) may be handed
  one more such task while the queue is not empty, so it never idles for a planner round trip
  between calls. A prefetched task has not started; if its granule dies it goes back to the front
  of the queue instead of failing, and cancelling it sends a Skip instead of killing the granule.
- A granule whose code waits on calls it submitted itself (chaining) reports itself *waiting*: its
  slot stops counting as used, work prefetched behind it is taken back, and its host is asked for
  a spare granule when none is idle, so parents waiting on children can never use up every slot.
- A task is finished exactly once. A second report for a finished task (a duplicate after a planner
  restart, a result racing a cancel) is ignored, which is what makes re-dispatch safe. A report for
  a task that is queued (journaled work a granule finished while the planner restarted) is recorded
  instead of running the task again.
- A request that becomes final is listed in ``finished``; the driver collects that list (retention.py
  stamps it with the time and later calls :meth:`PlannerState.forget`), so memory stays bounded.
- It also owns what waits on time or on other peers: the restart grace (grace.py, restart.py), the MPI rendezvous
  (rendezvous.py), granules whose host has not registered yet (the driver holds their frames until a
  ReplayFrames), retention passes (retention.py) and eviction notices (eviction.py). :meth:`PlannerState.next_deadline` says when
  :meth:`PlannerState.tick` is due next, so that a virtual clock can drive the state.
- What happened (a host joined or died, an app was queued, placed or ended) is recorded as data in
  ``events`` (events.py) when a driver collects it; the server journals and streams it.
This module has no sockets, threads or clocks: time comes in as ``now`` and every effect goes out as
an action for a driver to carry out: the server (server.py), or the simulator (granny.sim) on a virtual clock.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from ..errors import ErrorKind
from . import batch, eviction, fusion, holds, leases, migration
from .batch import BatchEvents
from .batch_queue import Batch
from .capacity import HostViews
from .events import EventLog
from .grace import Grace
from .lifecycle import (
    APP_TRANSITIONS,
    TASK_FINAL,
    TASK_TRANSITIONS,
    AppEvent,
    AppKind,
    AppState,
    GranuleEvent,
    GranuleState,
    TaskEvent,
    TaskState,
    transition,
)
from .liveness import Liveness
from .migration import MigrationPoints, Migrations
from .policies import NeverFits, Placement, Policy, binpack
from .policies.base import ClusterView, Decision
from .records import (
    Action,
    App,
    AppChanged,
    Dispatch,
    Fail,
    ForgetHost,
    GraceEnded,
    Granule,
    HoldFrames,
    Host,
    JoinRefused,
    Kill,
    Pruned,
    RankAddress,
    ReplayFrames,
    Request,
    Revoke,
    Skip,
    SpawnGranules,
    StopWorker,
    Task,
    WorldReady,
)
from .rendezvous import Rendezvous
from .restart import Restarts
from .retention import Retention
from .views_policy import pins_down, request_for

__all__ = ["Action", "App", "AppChanged", "Dispatch", "Fail", "ForgetHost", "GraceEnded", "Granule", "HoldFrames", "Host",
           "JoinRefused", "Kill", "PlannerState", "Pruned", "RankAddress", "ReplayFrames", "Request", "Revoke", "Skip",
           "SpawnGranules", "StopWorker", "Task", "WorldReady"]


class PlannerState(Restarts, MigrationPoints, BatchEvents, eviction.Notices):
    def __init__(self, heartbeat_timeout: float, policy: Policy = binpack, retain: float = float("inf")) -> None:
        self.heartbeat_timeout = heartbeat_timeout
        self.policy = policy
        self.views = HostViews()  # the hosts' placement views, rebuilt only where they changed
        self.hosts: dict[str, Host] = self.views.hosts
        self.granules: dict[str, Granule] = {}
        self.requests: dict[str, Request] = {}
        self.apps: dict[str, App] = {}
        self.queue: deque[str] = deque()
        # The head request the last placement pass had to leave waiting; until an event frees
        # capacity, a new request behind it cannot go first, so submit() need not try again.
        self._stalled_on = ""
        self._revoked_for: set[str] = set()  # queued requests that already asked leases to shrink
        self._leases: dict[str, None] = {}  # elastic teams' requests that may give granules back (ordered: deterministic)
        # Requests that became final since the server last collected them; it stamps them with the time
        # (see retention.py), so this module needs no clock.
        self.finished: list[str] = []
        self.liveness = Liveness(heartbeat_timeout)
        self.rendezvous = Rendezvous()  # MPI worlds whose ranks are still joining
        self.grace = Grace()  # after a restart: restored work waits for its granules and clients
        self.retention = Retention(retain)  # when finished work is forgotten (never, by default)
        # Granules whose host is not registered (yet): granule id -> (host id, task it claims to run)
        self.unregistered: dict[str, tuple[str, tuple[str, int] | None]] = {}
        self.evicting: set[str] = set()  # hosts under an eviction notice (policies keep new work off them)
        self.evictions = eviction.Evictions()  # their deadlines (see eviction.py)
        self.migrations = Migrations()  # worlds with migration points, moves in flight (see migration.py)
        self.batch = Batch()  # delay-tolerant calls waiting for free slots, earliest deadline first (batch.py)
        self.events, self.holds = EventLog(), holds.Holds()  # what happened (events.py); slots held for teams (holds.py)

    # --- hosts and granules -----------------------------------------------------------------
    def register_host(self, host_id: str, slots: int, now: float, boot: str = "") -> list[Action]:
        """A worker registered. ``boot`` names its process: a new one ends the host's incarnation."""
        if self.evictions.evicted and (stop := eviction.refused(self, host_id, boot)) is not None:
            return [stop]  # the worker of an evicted host, which missed the order to stop
        host = self.hosts.get(host_id)
        actions: list[Action] = []
        restarted = host is not None and bool(boot and host.boot and boot != host.boot)
        if host is not None and host.alive and restarted:
            why = f"the worker of host {host_id} restarted; its granules, and the tasks they ran, died with it"
            actions += self._host_died(host, why, fence=False)
        if host is None or not host.alive:
            incarnation = 1 if host is None else host.incarnation + 1
            self.hosts[host_id] = Host(host_id, slots, now, incarnation=incarnation, boot=boot)
            self.events.host_joined(host_id, slots, incarnation)
            if restarted:  # granule ids start again in a new worker process: old fences would hit new granules
                self.liveness.unfence_host(host_id)
            # Its worker may not have heard the Kills sent when it was declared dead: send them again.
            actions += [Kill(host_id, gid, reason) for gid, reason in self.liveness.fenced_on(host_id)]
        else:
            host.slots, host.last_seen, host.boot = slots, now, boot or host.boot
        eviction.registered(self, host_id)
        actions += self.schedule()
        # Granules that connected before their host registered: known now, then their frames are handled.
        waited = [(gid, busy) for gid, (hid, busy) in self.unregistered.items() if hid == host_id]
        for gid, busy in waited:
            del self.unregistered[gid]
            actions += self.granule_connected(host_id, gid, busy)
        return actions + [ReplayFrames(gid) for gid, _ in waited]

    def heartbeat(self, host_id: str, now: float) -> list[Action]:
        """A host's worker is alive. A host that is not registered (declared dead) is told to register."""
        host = self.hosts.get(host_id)
        if host is not None and host.alive:
            host.last_seen = now
            return []
        return [ForgetHost(host_id, self.liveness.forgotten(host_id, host is not None))]

    def granule_hello(self, host_id: str, granule_id: str, busy: tuple[str, int] | None) -> list[Action]:
        """A granule connected. Until its host registers (again), it waits and its frames are held."""
        host = self.hosts.get(host_id)
        if host is None or not host.alive:
            self.unregistered[granule_id] = (host_id, busy)
            return [HoldFrames(granule_id)]
        return self.granule_connected(host_id, granule_id, busy)

    def granule_connected(self, host_id: str, granule_id: str, busy: tuple[str, int] | None) -> list[Action]:
        host = self.hosts.get(host_id)
        if host is None or not host.alive:
            return [Kill(host_id, granule_id, "its host is not registered")]
        fenced = self.liveness.fence_reason(granule_id)
        if fenced:
            return [Kill(host_id, granule_id, fenced)]
        granule = Granule(granule_id, host_id)
        old = self.granules.get(granule_id)
        if old is not None and old.state is GranuleState.BUSY:
            # Still running (or cancelled and awaiting its Kill): it must not look idle.
            granule.state, granule.tasks = GranuleState.BUSY, old.tasks
        elif busy is not None:
            req = self.requests.get(busy[0])
            task = req.tasks[busy[1]] if req is not None and 0 <= busy[1] < req.n else None
            if task is not None and task.state is TaskState.QUEUED:
                # Work journaled before a planner restart that this granule is still running.
                task.state = transition(TASK_TRANSITIONS, task.state, TaskEvent.DISPATCH, busy[0])
                task.granule_id, task.host_id = granule_id, host_id
                granule.state, granule.tasks = GranuleState.BUSY, [busy]
        host.granules[granule_id] = granule
        self.granules[granule_id] = granule
        host.spawning = max(0, host.spawning - 1)
        return self.schedule()

    def granule_waiting(self, granule_id: str, waiting: bool) -> list[Action]:
        """A granule started (or stopped) waiting on calls it submitted; see the module docstring."""
        granule = self.granules.get(granule_id)
        if granule is None or granule.waiting == waiting:
            return []
        granule.waiting = waiting
        if not waiting:
            return []  # its slot is taken back; the host may be oversubscribed for a moment
        actions: list[Action] = []
        for key in granule.tasks[1:]:
            actions += self._unprefetch(granule, key)
        host = self.hosts[granule.host_id]
        if self.queue and not host.idle() and host.spawning == 0:
            host.spawning += 1
            actions.append(SpawnGranules(host.host_id, 1))
        return actions + self.schedule()

    def granule_disconnected(self, granule_id: str) -> None:
        self.unregistered.pop(granule_id, None)
        if (granule := self.granules.get(granule_id)) is not None:
            granule.connected = False

    def granule_exited(self, granule_id: str, cause: str) -> list[Action]:
        self.liveness.unfence(granule_id)
        self.unregistered.pop(granule_id, None)  # its exit may be reported before its connection drops
        granule = self.granules.pop(granule_id, None)
        if granule is None:
            return []
        host = self.hosts.get(granule.host_id)
        if host is not None:
            host.granules.pop(granule_id, None)
        msg = f"granule {granule_id} on host {granule.host_id} died: {cause}"
        actions = self._lose_granule(granule, ErrorKind.CRASHED, msg)
        return actions + ([] if self.holds.quiet_exit(granule_id) else self.schedule())

    def _lose_granule(self, granule: Granule, kind: ErrorKind, why: str) -> list[Action]:
        """The running task fails; prefetched ones never started, so they go back to the queue."""
        actions: list[Action] = []
        running, waiting = (granule.tasks, []) if fusion.lost(self, granule) else (granule.tasks[:1], granule.tasks[1:])
        granule.tasks = []
        for req_id, index in running:
            req = self.requests[req_id]
            if req.tasks[index].granule_id != granule.granule_id:  # its rank moved away
                actions += migration.source_lost(self, granule.granule_id, (req_id, index), why)
                continue
            if req.checkpoint and req.gang and req.tasks[index].state is TaskState.RUNNING:
                actions += migration.recover(self, req_id, why)  # the world restarts from its checkpoint
                continue
            if req.retries and kind in (ErrorKind.HOST_DIED, ErrorKind.EVICTED) and req.tasks[index].state is TaskState.RUNNING:
                req.retries, req.reruns = req.retries - 1, req.reruns + 1  # idempotent: run it again elsewhere
                waiting.insert(0, (req_id, index))  # requeued below, first in line
                continue
            actions += self._finish(req_id, index, TaskEvent.FAIL, Fail(req_id, index, kind, why, granule.host_id))
        for req_id, index in reversed(waiting):
            task = self.requests[req_id].tasks[index]
            if task.state is TaskState.RUNNING:
                task.state = transition(TASK_TRANSITIONS, task.state, TaskEvent.REQUEUE, req_id)
                task.granule_id = task.host_id = ""
                self.queue.appendleft(req_id)
        granule.to(GranuleEvent.EXIT)
        if self.migrations.sources:
            self.migrations.left(granule.granule_id)
        return actions

    def tick(self, now: float) -> list[Action]:
        """End the restart grace when it is due; declare dead the hosts not heard from for the timeout.

        Call it at :meth:`next_deadline` at the latest. That includes a tick every ``heartbeat_timeout / 4``
        while hosts are alive: a longer gap between two ticks is taken for the planner's own stall (see
        :meth:`Liveness.stalled`), and the hosts get a fresh grace period instead of being blamed for
        heartbeats the planner did not read."""
        actions: list[Action] = self._end_grace() if self.grace.due(now) else []
        if pruned := self.retention.tick(self, now):
            actions.append(pruned)
        actions += eviction.tick(self, now) if self.evictions.notices else []
        actions += self.batch_tick(now) if self.batch.ticking() else []
        if self.liveness.stalled(now):
            for host in self.hosts.values():
                if host.alive:
                    host.last_seen = max(host.last_seen, now)
            return actions
        died = False
        for host in self.hosts.values():
            if host.alive and now >= host.last_seen + self.heartbeat_timeout:
                died = True  # capacity shrank: queued requests may now never fit
                actions += self._host_died(host, f"host {host.host_id} stopped sending heartbeats and was "
                                                 f"declared dead after {self.heartbeat_timeout:g}s")
        return actions + self.schedule() if died else actions

    def next_deadline(self) -> float | None:
        """When :meth:`tick` must run next (None: no need until another event), so that a virtual clock
        can drive this state: a host's heartbeat expiry, the end of the restart grace, or the regular
        tick that tells a stall of the planner from dead hosts (while any host is alive), a retention pass or an eviction.
        Tick once when the clock starts: the regular deadlines count from the first tick."""
        live, inf = (h for h in self.hosts.values() if h.alive), float("inf")  # no timeout (a simulation): no expiry
        times = [h.last_seen + self.heartbeat_timeout for h in live] if self.heartbeat_timeout < inf else [inf] * any(live)
        if times and (cadence := self.liveness.next_tick()) is not None:
            times.append(cadence)
        if self.grace.until is not None:
            times.append(self.grace.until)
        if (prune := self.retention.next_pass(self)) is not None:
            times.append(prune)
        if (evict := self.evictions.next_deadline()) is not None:
            times.append(evict)
        if (due := self.batch.next_deadline()) is not None:  # a delay-tolerant call's latest start
            times.append(due)
        return min(times, default=None)

    def _host_died(self, host: Host, why: str, fence: bool = True) -> list[Action]:
        host.alive = False
        self.events.host_died(host.host_id, why)
        gids = list(host.granules)
        actions: list[Action] = []
        for granule in list(host.granules.values()):
            self.granules.pop(granule.granule_id, None)
            actions += self._lose_granule(granule, ErrorKind.HOST_DIED, why)
        host.granules.clear()
        if not fence:  # its worker is registering again right now (see register_host)
            return actions
        # If only its worker paused, its granules run on; their work was failed, so they must go.
        reason = self.liveness.fence(host.host_id, host.incarnation, gids)
        return actions + [Kill(host.host_id, gid, reason) for gid in gids] + [ForgetHost(host.host_id, why)]

    # --- requests ---------------------------------------------------------------------------
    def submit(self, req_id: str, app_id: str, n: int, app_kind: AppKind = AppKind.FUNCTIONS, name: str = "",
               prefetch: bool = False, gang: bool = False, lease: bool = False, tenant: str = "",
               hosts: tuple[tuple[str, int], ...] = (), migrate: bool = True, retries: int = 0,
               tolerance: float = 0.0, key: str = "", now: float = 0.0, restartable: bool = False, fuse: bool = False, team: int = 0) -> list[Action]:
        """``tenant``, ``hosts`` (a pinned placement) and ``migrate`` go to the policy with the request;
        ``retries``: an idempotent call runs again elsewhere (at most that many times) if its host dies;
        ``tolerance`` != 0: a delay-tolerant call of function ``key``, submitted at ``now`` (batch.py); ``team``: holds.py."""
        if req_id in self.requests:
            return []  # a client resubmitting after a reconnect: already known
        app = self.apps.get(app_id)
        if app is None:
            app = self.apps[app_id] = App(app_id, app_kind, name, tenant=tenant)
        app.migrate = app.migrate and migrate
        app.requests.append(req_id)
        self.grace.held.pop(req_id, None)  # its client resubmitted it
        self.requests[req_id] = Request(req_id, app_id, n, [Task() for _ in range(n)], prefetch and n == 1 and not gang,
                                        gang, lease, tenant, tuple(hosts), migrate, retries=0 if gang else retries)
        self.events.queued(self.requests[req_id], app, len(app.requests) == 1)
        if lease:
            self._leases[req_id] = None
        if tolerance and not gang and not lease:
            # Nothing waits behind a delay-tolerant call on its granule: latency-sensitive work gets a free
            # slot, or (restartable) the call's own.
            self.requests[req_id].restartable, self.requests[req_id].prefetch = restartable, False
            return batch.submit(self, req_id, key, tolerance, now, fuse) + self.schedule()
        self.holds.enqueue(self.queue, self.requests[req_id], team)
        if self._stalled_on and self.queue[0] == self._stalled_on:
            return []  # the head still cannot be placed and nothing was freed: FIFO says wait
        return self.schedule()

    def task_done(self, granule_id: str, req_id: str, index: int, ok: bool) -> tuple[bool, list[Action]]:
        """A granule reported. Returns (accepted, actions); a duplicate report is not accepted, nor one
        from a granule of a dead host's incarnation (it may have started work requeued since)."""
        if self.liveness.fence_reason(granule_id):
            return False, []
        if self.migrations.from_source(req_id, index, granule_id):  # a moving rank's old process
            accepted, actions = migration.source_reported(self, granule_id, req_id, index)
            return accepted, actions + self.schedule()
        granule = self.granules.get(granule_id)
        if granule is not None and (req_id, index) in granule.tasks:
            granule.drop((req_id, index))
            if not granule.tasks:
                granule.to(GranuleEvent.RELEASE)
        req = self.requests.get(req_id)
        task = req.tasks[index] if req is not None and 0 <= index < req.n else None
        if task is not None and task.state is TaskState.QUEUED and granule is not None:
            # It ran, but nobody here dispatched it: journaled work a granule finished while the
            # planner restarted (or a prefetched task whose Skip came too late). Record it, do not rerun it.
            task.state = transition(TASK_TRANSITIONS, task.state, TaskEvent.DISPATCH, req_id)
            task.granule_id, task.host_id = granule_id, granule.host_id
        if task is None or task.state is not TaskState.RUNNING:
            return False, self.schedule()
        actions = self._finish(req_id, index, TaskEvent.SUCCEED if ok else TaskEvent.FAIL, None)
        retiring = granule_id if granule is not None and not granule.connected else ""  # (its process exits next)
        wait = self.holds.rank_ended(self.requests[req_id], task.host_id, retiring)  # a world's slots come back together
        return True, actions + ([] if wait else self.schedule())

    def mpi_join(self, granule_id: str, req_id: str, index: int, address: RankAddress, gen: int = 0,
                 now: float = 0.0) -> list[Action]:
        """Rank ``index`` of an MPI world says where it listens (see rendezvous.py), for its generation ``gen``."""
        actions = self.rendezvous.join(granule_id, req_id, self.requests.get(req_id), index, address, gen,
                                       self.migrations.gen(req_id))
        if actions and isinstance(actions[0], WorldReady) and gen:
            actions += migration.world_complete(self, req_id, gen, now)
        return actions

    def fail_task(self, req_id: str, index: int, fail: Fail | None) -> list[Action]:
        """End a running task with ``fail`` (None: its granule reported the failure), and its gang with it."""
        return self._finish(req_id, index, TaskEvent.FAIL, fail)

    def cancel(self, req_id: str = "", app_id: str = "") -> list[Action]:
        actions = self._cancel([req_id] if req_id else list(self.apps[app_id].requests) if app_id in self.apps else [])
        if app_id in self.apps and self.apps[app_id].state is AppState.RUNNING:
            self.apps[app_id].state = transition(APP_TRANSITIONS, AppState.RUNNING, AppEvent.CANCEL, app_id)
            actions.append(AppChanged(app_id, AppState.CANCELLED))
        return actions + self.schedule()

    def close_app(self, app_id: str) -> list[Action]:
        """The client of an app closed it: what it has not got yet is cancelled, and the app ends (a functions
        app as succeeded; a script still running, as cancelled: it cannot finish any more)."""
        app = self.apps.get(app_id)
        if app is None or app.kind == AppKind.SCRIPT:
            return self.cancel(app_id=app_id) if app is not None and app.state is AppState.RUNNING else []
        actions = self._cancel(list(app.requests))  # all of them before placing anything: none is dispatched
        if app.state is AppState.RUNNING:
            app.state = transition(APP_TRANSITIONS, app.state, AppEvent.CLOSE, app_id)
            actions.append(AppChanged(app_id, app.state))
        return actions + self.schedule()

    def _cancel(self, req_ids: list[str]) -> list[Action]:
        actions: list[Action] = []
        for rid in req_ids:
            req = self.requests.get(rid)
            for index, task in enumerate(req.tasks if req else []):
                if task.state not in TASK_FINAL:
                    actions += self._finish(rid, index, TaskEvent.CANCEL, Fail(rid, index, ErrorKind.CANCELLED, "cancelled"))
        return actions

    def _finish(self, req_id: str, index: int, event: TaskEvent, fail: Fail | None, cascade: bool = True) -> list[Action]:
        req = self.requests[req_id]
        task = req.tasks[index]
        was_running = task.state is TaskState.RUNNING
        task.state = transition(TASK_TRANSITIONS, task.state, event, f"task {req_id}[{index}]")
        actions: list[Action] = [fail] if fail is not None else []
        if req.final():  # exactly one transition makes a request final, whatever cascades follow
            self.finished.append(req_id)
            self.events.ended(req, self.apps[req.app_id])
            self.rendezvous.drop(req_id)
            if self.batch.known:
                actions += batch.ended(self, req_id)
            if self.migrations.points or self.migrations.sources:
                actions += self.migrations.drop(req_id, self.granules)
        if was_running and event is TaskEvent.CANCEL:
            granule = self.granules.get(task.granule_id)
            if granule is not None and granule.granule_id in self.batch.fused:  # the others run on
                actions += fusion.cancel(self, granule, (req_id, index))
            elif granule is not None and granule.task == (req_id, index):
                # The granule stays busy until it is really gone; its exit frees the slot.
                actions.append(Kill(granule.host_id, granule.granule_id, "cancelled"))
                granule.tasks = [t for t in granule.tasks if t != (req_id, index)]
                for other in list(granule.tasks):  # prefetched behind it: they must not die with it
                    actions += self._unprefetch(granule, other)
            elif granule is not None and (req_id, index) in granule.tasks:
                actions += self._unprefetch(granule, (req_id, index), requeue=False)
        app = self.apps[req.app_id]
        if req.gang and cascade and event is not TaskEvent.SUCCEED and event is not TaskEvent.CANCEL:
            for i, peer in enumerate(req.tasks):
                if peer.state not in TASK_FINAL:
                    actions += self._finish(req_id, i, TaskEvent.CANCEL, Fail(
                        req_id, i, ErrorKind.CANCELLED, f"granule {index} of this gang failed"), cascade=False)
        if app.state is AppState.RUNNING and app.kind == AppKind.SCRIPT:
            if event is not TaskEvent.SUCCEED and event is not TaskEvent.CANCEL:
                app.state = transition(APP_TRANSITIONS, app.state, AppEvent.TASK_FAILED, app.app_id)
                actions.append(AppChanged(app.app_id, app.state))
                if cascade:
                    actions += self._abort_rest(app)  # like mpirun: one failed rank ends the job
            elif all(self.requests[r].final() for r in app.requests) and all(
                t.state is TaskState.SUCCEEDED for r in app.requests for t in self.requests[r].tasks
            ):
                app.state = transition(APP_TRANSITIONS, app.state, AppEvent.ALL_SUCCEEDED, app.app_id)
                actions.append(AppChanged(app.app_id, app.state))
        return actions

    def _abort_rest(self, app: App) -> list[Action]:
        actions: list[Action] = []
        for rid in app.requests:
            for index, task in enumerate(self.requests[rid].tasks):
                if task.state not in TASK_FINAL:
                    actions += self._finish(rid, index, TaskEvent.CANCEL,
                                            Fail(rid, index, ErrorKind.CANCELLED, "another granule of this app failed"))
        return actions

    def _unprefetch(self, granule: Granule, key: tuple[str, int], requeue: bool = True) -> list[Action]:
        """Take a not-yet-started task back from a granule (Skip), and queue it again if still wanted."""
        if key in granule.tasks:
            granule.drop(key)
        actions: list[Action] = [Skip(granule.granule_id, *key)]
        task = self.requests[key[0]].tasks[key[1]]
        if requeue and task.state is TaskState.RUNNING:
            task.state = transition(TASK_TRANSITIONS, task.state, TaskEvent.REQUEUE, key[0])
            task.granule_id = task.host_id = ""
            self.queue.appendleft(key[0])
        return actions

    def forget(self, req_ids: Iterable[str]) -> None:
        """Drop finished requests (retention.py decides which); their apps keep per-state counts."""
        touched: dict[str, App] = {}
        for rid in req_ids:
            req = self.requests.pop(rid)
            self._revoked_for.discard(rid)
            self.rendezvous.drop(rid)
            self.migrations.forget(rid)
            self._leases.pop(rid, None)
            app = self.apps.get(req.app_id)
            if app is not None:
                touched[app.app_id] = app
                for t in req.tasks:
                    app.pruned[t.state.value] = app.pruned.get(t.state.value, 0) + 1
        for app in touched.values():
            app.requests = [r for r in app.requests if r in self.requests]
        self.views.stale_all()  # a granule may still name a forgotten request

    def forget_app(self, app_id: str) -> None:
        app = self.apps.pop(app_id)
        for rid in app.requests:
            self.requests.pop(rid, None)
        self.views.stale_all()

    # --- placement --------------------------------------------------------------------------
    def schedule(self) -> list[Action]:
        actions: list[Action] = []
        self._stalled_on = ""
        # What the policy sees changes only when a request is placed: prefetching takes no free
        # slot. Until then, requests share the view, the policy's decision for the same request
        # (it is a pure function), and whether any slot is free at all.
        view = None
        decisions: dict[tuple[str, int, str, tuple[tuple[str, int], ...], bool], Decision] = {}
        full: bool | None = None
        while self.queue:
            req = self.requests[self.queue[0]]
            pending = [i for i, t in enumerate(req.tasks) if t.state is TaskState.QUEUED]
            if not pending:
                self.queue.popleft()
                continue
            if view is None:
                view, decisions = ClusterView(self.views.views(self.requests, self.evicting)), {}
            request = request_for(req, len(pending) + self.holds.extra(req))
            key = (req.app_id, request.n, request.tenant, request.hosts, request.migrate)
            decision = decisions.get(key)
            if decision is None:
                decision = decisions[key] = pins_down(request, self.hosts) or self.holds.decide(self.policy, view, req, request, self.requests)
            if isinstance(decision, NeverFits):
                self.queue.popleft()
                for i in pending:
                    actions += self._finish(req.req_id, i, TaskEvent.FAIL,
                                            Fail(req.req_id, i, ErrorKind.NEVER_FITS, decision.reason), cascade=False)
                continue
            if not isinstance(decision, Placement):
                taken = batch.preempt_for(self, req, len(pending)) if self.batch.known else []  # before prefetch: sooner
                if req.prefetch and not taken:
                    if full is None:
                        full = self._full()
                    if full and self._prefetch(req, actions):
                        continue
                self._stalled_on = req.req_id
                actions += taken or leases.revoke_for(self, req, len(pending))
                break
            self.queue.popleft()
            view, full = None, None
            actions += self.assign(req, pending, self.holds.placed(req, pending, decision.hosts))
        if (self.batch.waiting or self.batch.paused) and not self.queue:  # delay-tolerant calls take the slots left free
            actions += batch.place(self)
        if self.migrations.points:
            actions += migration.hints(self)
        return actions

    def delay_tolerant(self, req_id: str) -> bool:  # waits or runs apart from the FIFO queue (batch.py)
        return req_id in self.batch.known or req_id in self.batch.restored

    def assign(self, req: Request, pending: list[int], hosts: tuple[str, ...]) -> list[Action]:
        """Start ``req``'s ``pending`` tasks on idle granules of ``hosts`` (one host per task)."""
        actions: list[Action] = []
        for index, host_id in zip(pending, hosts, strict=True):
            granule = self.hosts[host_id].idle()[0]
            granule.to(GranuleEvent.ASSIGN)
            granule.tasks = [(req.req_id, index)]
            task = req.tasks[index]
            task.state = transition(TASK_TRANSITIONS, task.state, TaskEvent.DISPATCH, req.req_id)
            task.granule_id, task.host_id = granule.granule_id, host_id
            actions.append(Dispatch(granule.granule_id, req.req_id, index, thaw=req.frozen))
        self.events.placed(req, self.apps[req.app_id], hosts)
        return actions

    def _full(self) -> bool:
        """No live host has a slot free. Short of that, a free slot whose granule is still starting
        (or being replaced) is worth waiting for, rather than queueing behind a busy granule."""
        return self.views.full(self.requests, self.evicting)

    def _prefetch(self, req: Request, actions: list[Action]) -> bool:
        """Queue ``req`` behind a running short call (only when the cluster is full: see _full)."""
        for host in self.hosts.values():
            if not host.alive or host.host_id in self.evicting:  # (a notice: no new work, not even queued)
                continue
            for granule in host.granules.values():
                if (granule.connected and granule.state is GranuleState.BUSY and len(granule.tasks) == 1
                        and not granule.waiting and self.requests[granule.tasks[0][0]].prefetch):
                    self.queue.popleft()
                    task = req.tasks[0]
                    task.state = transition(TASK_TRANSITIONS, task.state, TaskEvent.DISPATCH, req.req_id)
                    task.granule_id, task.host_id = granule.granule_id, host.host_id
                    granule.tasks.append((req.req_id, 0))
                    actions.append(Dispatch(granule.granule_id, req.req_id, 0, prefetched=True))
                    return True
        return False

    # --- views ------------------------------------------------------------------------------
    def capacity(self) -> int:
        return sum(h.slots for h in self.hosts.values() if h.alive)
