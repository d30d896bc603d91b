"""Migration of running MPI worlds at their migration points: the planner's side, pure.

Theory of operation (the granule's side is :mod:`granny.migration`)
- A world's rank 0 asks at a migration point (:func:`ask`) when the planner hinted that the world would
  gain, and at its first point, which registers the world as one that has migration points. The policy's
  migration rule runs then, on the cluster as it is (:meth:`PlannerState.migration_decision`); its moves
  that concern this world are the order. For each moving rank an idle granule on the target host is
  reserved at once: the task is now assigned to it, while the old granule keeps its slot until its
  process ends (a rank briefly holds two slots, as it really does).
- The world's *generation* counts its migrations. The order names the next one; every rank, staying or
  moved, joins the rendezvous of that generation, whose table rebuilds the data planes. A move is over
  when the new generation's world is complete: then its duration is known and it is recorded.
- A moving rank's old process serves its packed state and says where (:func:`served`): the target
  granule is then sent the Run that pulls it. Once served, the old process reports the rank moved
  (:func:`moved_away`) and exits; until it exits, nothing it reports ends the rank's task.
- Failure: an old process that dies before it served its state takes the rank with it (the task fails,
  and with it the world, as any rank's death does). Later failures are the new granule's: a pull that
  fails fails its task. Cancelling a world also kills old processes still serving.
- Hints (:func:`hints`): after events that may free room, each world that has migration points, is not
  hinted yet and has no move in flight is checked with the policy; one that would move gets a hint.
  Nothing is checked while no host has a free slot or an eviction notice: a move needs somewhere to go.
Pure: no sockets, threads or clocks; ``now`` comes in as an argument.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol, cast

from ..errors import ErrorKind
from ..tunables import MIGRATION_HISTORY as HISTORY
from ..tunables import SPOT_MARGIN
from . import freezing, gather, hint_index, make_room
from .capacity import held_by_id
from .lifecycle import TASK_TRANSITIONS, GranuleEvent, GranuleState, TaskEvent, TaskState, transition
from .migration_text import describe
from .migration_text import rows as _rows
from .policies import (
    BinPack,
    ClusterView,
    Compact,
    FirstFit,
    Freeze,
    MigrationDecision,
    Move,
    Spot,
    Stay,
    WholeHosts,
)
from .policies.base import GranuleMove
from .protocols import StateCore
from .records import (
    Action,
    DropState,
    Fail,
    Granule,
    Hint,
    Kill,
    MigrateAnswer,
    MigrationEvent,
    Request,
    ResumeRank,
    StoreState,
)
from .views_policy import cluster_view, migration_view, queue_of, world_view

if TYPE_CHECKING:
    from .batch_queue import Batch
    from .eviction import Evictions

# Policies whose migration rule reads only the view's hosts and the app it is asked about (see hints)
HOSTS_ONLY = (BinPack, Compact, FirstFit, Spot, WholeHosts)


class MigrationState(StateCore, Protocol):
    """What this module uses of the planner state (PlannerState is one; see protocols.py)."""

    migrations: Migrations
    evictions: Evictions
    batch: Batch

    def fail_task(self, req_id: str, index: int, fail: Fail | None) -> list[Action]: ...

    def world_decision(self, req_id: str, now: float = 0.0, cold: bool = False) -> MigrationDecision: ...

    def _full(self) -> bool: ...

    def delay_tolerant(self, req_id: str) -> bool: ...


# --- records ------------------------------------------------------------------------------------
@dataclass
class InFlight:
    gen: int
    moves: tuple[GranuleMove, ...]
    started: float
    targets: dict[int, str]  # rank -> the granule reserved for it
    served: set[int] = field(default_factory=set)  # ranks whose old process serves their state
    freeze: bool = False  # every rank's state goes to the planner's store, and the world waits for room
    stored: set[int] = field(default_factory=set)  # freeze: ranks whose state is in the store


class Migrations:
    def __init__(self) -> None:
        self.points: set[str] = set()  # worlds that reached a migration point
        self.hinted: set[str] = set()
        self.gens: dict[str, int] = {}  # req_id -> generation (0 when absent)
        self.inflight: dict[str, InFlight] = {}
        self.sources: dict[tuple[str, int], str] = {}  # (req_id, rank) -> old granule, until it leaves
        self.history: dict[str, list[dict[str, Any]]] = {}
        self.counts: Counter[str] = Counter()
        self.frozen_at: dict[str, float] = {}  # req_id -> when its world froze
        self.checkpoints: dict[str, int] = {}  # req_id -> the last checkpoint number given out
        self.saving: dict[str, tuple[int, set[int]]] = {}  # req_id -> checkpoint being saved, ranks stored
        self.now = 0.0  # the latest time an event brought (hints have no event time of their own)
        # world -> what its last check saw (see hints): while that is unchanged, it still would not move
        self.quiet: dict[str, tuple[int, tuple[str, ...], str, bool]] = {}
        self.intervals: dict[str, float] = {}  # req_id -> seconds between its points, as rank 0 last measured
        self.index = hint_index.HintIndex()  # bin-pack: the worlds that stayed, and what would move them

    def gen(self, req_id: str) -> int:
        return self.gens.get(req_id, 0)

    def from_source(self, req_id: str, index: int, granule_id: str) -> bool:
        """``granule_id`` is the old process of a rank that moved away: its last output and its
        report are still its own."""
        return self.sources.get((req_id, index)) == granule_id

    def drop(self, req_id: str, granules: Mapping[str, Granule]) -> list[Action]:
        """The world ended (or is forgotten): old processes still serving it are stopped."""
        self.points.discard(req_id)
        self.hinted.discard(req_id)
        self.index.forget(req_id)
        self.quiet.pop(req_id, None)
        self.intervals.pop(req_id, None)
        self.gens.pop(req_id, None)
        self.inflight.pop(req_id, None)
        self.frozen_at.pop(req_id, None)
        self.checkpoints.pop(req_id, None)
        self.saving.pop(req_id, None)
        kills: list[Action] = [DropState(req_id)]
        for key in [k for k in self.sources if k[0] == req_id]:
            gid = self.sources.pop(key)
            if (granule := granules.get(gid)) is not None:
                kills.append(Kill(granule.host_id, gid, "its world ended while the rank was moving"))
        return kills

    def left(self, granule_id: str) -> None:
        """An old process exited: it no longer speaks for any rank."""
        for key in [k for k, gid in self.sources.items() if gid == granule_id]:
            del self.sources[key]

    def forget(self, req_id: str) -> None:
        self.history.pop(req_id, None)


class MigrationPoints:
    """The migration events of :class:`~granny.planner.state.PlannerState` (a mixin, to keep state.py small)."""

    def _st(self) -> MigrationState:
        return cast("MigrationState", self)

    def migrate_ask(self, granule_id: str, req_id: str, gen: int, ready: bool, why: str, now: float,
                    checkpoint: bool = False, interval: float = 0.0) -> list[Action]:
        """Rank 0 of a world at a migration point asks whether to move (see :func:`ask`); ``interval``:
        seconds since its previous point (0: not known)."""
        req = self._st().requests.get(req_id)
        if req is not None and not req.gang:  # a plain call: frozen or not (freezing.py)
            why = freezing.asked(self._st(), granule_id, req_id, interval)
            return freeze(self._st(), granule_id, req_id, "latency-sensitive work takes its slot", now) if not why else [
                MigrateAnswer(granule_id, req_id, self._st().migrations.gen(req_id), (), why)]
        if interval > 0 and req_id in self._st().requests:
            self._st().migrations.intervals[req_id] = interval
        return ask(self._st(), granule_id, req_id, gen, ready, why, now, checkpoint)

    def migrate_served(self, granule_id: str, req_id: str, index: int, gen: int, ip: str, port: int,
                       key: bytes, checkpoint: int = 0) -> list[Action]:
        if checkpoint:
            return checkpoint_served(self._st(), granule_id, req_id, index, checkpoint, ip, port, key)
        return served(self._st(), granule_id, req_id, index, gen, ip, port, key)

    def state_stored(self, req_id: str, index: int, slot: str, error: str, now: float) -> list[Action]:
        """A rank's state reached the planner's store (or ``error``): see :func:`stored`."""
        if slot.startswith("c"):
            return checkpoint_stored(self._st(), req_id, index, int(slot[1:]), error, now)
        return stored(self._st(), req_id, index, int(slot[1:]), error, now) + self._st().schedule()

    def moved_away(self, granule_id: str, req_id: str, index: int) -> list[Action]:
        return moved_away(self._st(), granule_id, req_id, index) + self._st().schedule()

    def migration_decision(self, app_id: str, now: float = 0.0) -> MigrationDecision:
        """What the policy would do with ``app_id`` now (read-only: nothing acts on it yet)."""
        st = self._st()
        app = st.apps.get(app_id)
        if app is None:
            return Stay(f"app {app_id} is not known")
        if not app.migrate:
            return Stay(f"app {app_id} was submitted with migrate=False")
        view = migration_view(st.hosts.values(), st.requests, st.apps, st.evicting, st.queue, app_id, now)
        return st.policy.migrate(st.holds.view(view, app_id, st.requests), app_id)  # not into a team's held slots

    def world_decision(self, req_id: str, now: float = 0.0, cold: bool = False) -> MigrationDecision:
        """The policy's migration rule for one MPI world (its moves' indexes are ranks); ``cold``: as if
        every free slot's granule were ready (see views_policy.cluster_view)."""
        st = self._st()
        if req_id in st.holds.moving and not cold and (move := make_room.mover_decision(st, st.requests[req_id])):
            return move  # it moves to make room for a split world (make_room.py)
        if type(st.policy) is BinPack and not cold:  # bin-pack's rule reads the hosts and the world: the kept views
            view = st.holds.view(ClusterView(st.views.views(st.requests, st.evicting), {}, (), now), st.requests[req_id].app_id, st.requests)
            here = tuple(t.host_id for t in st.requests[req_id].tasks)
            by_id = held_by_id(view.hosts, st.views.by_id(), here)  # (its own hosts as holds leave them)
            if all(h in by_id for h in here) and not gather.would_move(here, by_id, gather.largest_free(
                    view.hosts, 2 * len(here))):  # (exact: gather.py) the rule would say Stay; in O(hosts), not more
                return Stay("nothing to gain: bin-pack's re-pack would use as many hosts and links")
        else:
            view = st.holds.view(cluster_view(st.hosts.values(), st.requests, st.apps, st.evicting,
                                              queue_of(st.queue, st.requests), now, cold=cold), st.requests[req_id].app_id, st.requests)
        view = replace(view, evict_at={n.host_id: n.deadline for n in st.evictions.notices.values()})  # (holds: once)
        interval = st.migrations.intervals.get(req_id, 0.0)
        return st.policy.migrate(world_view(view, st.requests[req_id], st.apps, interval), req_id)


def ask(st: MigrationState, granule_id: str, req_id: str, gen: int, ready: bool, why: str, now: float,
        checkpoint: bool = False) -> list[Action]:
    m = st.migrations
    m.now = max(m.now, now)
    m.counts["asks"] += 1
    req = st.requests.get(req_id)

    def stay(reason: str) -> list[Action]:
        return [MigrateAnswer(granule_id, req_id, m.gen(req_id), (), reason)]

    if req is None or not req.gang or req.tasks[0].granule_id != granule_id:
        return stay(f"granule {granule_id} is not rank 0 of a running world {req_id}")
    if any(t.state is not TaskState.RUNNING for t in req.tasks):
        return stay("not every rank of the world is running")
    if req_id in m.inflight:
        return stay("a migration of this world is still in progress")
    if gen > m.gen(req_id):
        m.gens[req_id] = gen  # moved before this planner restarted (generations are not journaled)
    elif gen != m.gen(req_id):
        return stay(f"generation {gen} is not the world's current one ({m.gen(req_id)})")
    m.points.add(req_id)
    m.hinted.discard(req_id)
    m.index.forget(req_id)  # (checked afresh at the next pass: a hint it had from elsewhere hid changes from the index)
    if not ready:
        m.counts["refused"] += 1
        text = f"a move is refused while {why}"
        return stay(text) + [MigrationEvent(req.app_id, req_id, "refused", text)]
    decision = st.world_decision(req_id, now)
    st.holds.room.pop(req_id, None)  # room made for it is spent at this point, whatever it decides
    if isinstance(decision, Freeze):
        # Slots held by ranks that just moved, or whose granule is still starting, are room in a moment:
        # wait for it rather than freeze (a hint comes when it is there).
        freeing = any((g := st.granules.get(gid)) is not None and g.host_id not in st.evicting
                      for gid in m.sources.values())
        if (freeing or not isinstance(st.world_decision(req_id, now, cold=True), Freeze)) and not _last_point(st, req, now):
            m.counts["stays"] += 1
            return stay(f"{decision.reason}; room is being freed, so not freezing yet") + _ask_again(st, req)
        return freeze(st, granule_id, req_id, decision.reason, now)
    if not isinstance(decision, Move):
        m.counts["stays"] += 1
        if checkpoint and req_id not in m.saving:  # a checkpoint was due: every rank saves its state
            ckpt = m.checkpoints.get(req_id, 0) + 1
            m.checkpoints[req_id] = ckpt
            m.saving[req_id] = (ckpt, set())
            return [MigrateAnswer(granule_id, req_id, m.gen(req_id), (), decision.reason, checkpoint=ckpt)]
        if isinstance(st.policy, BinPack):  # a split world may gather once another moves out of its way
            hosts = () if st._full() else st.holds.view(ClusterView(  # (full: no room to make)
                st.views.views(st.requests, st.evicting)), req.app_id, st.requests).hosts
            return stay(decision.reason) + make_room.after_stay(st, req, hosts)
        return stay(decision.reason) + _ask_again(st, req)
    moves = tuple(mv for mv in decision.moves if mv.source != mv.target)
    targets: dict[int, str] = {}
    for mv in moves:  # every target slot is reserved before any rank leaves
        idle = [g for g in st.hosts[mv.target].idle() if g.granule_id not in targets.values()]
        if not idle:
            m.counts["stays"] += 1
            return stay(f"host {mv.target} has no idle granule to take rank {mv.index} yet")
        targets[mv.index] = idle[0].granule_id
    new_gen = m.gen(req_id) + 1
    for mv in moves:
        task = req.tasks[mv.index]
        m.sources[(req_id, mv.index)] = task.granule_id
        granule = st.granules[targets[mv.index]]
        granule.to(GranuleEvent.ASSIGN)
        granule.tasks = [(req_id, mv.index)]
        task.granule_id, task.host_id = granule.granule_id, mv.target
    m.gens[req_id] = new_gen
    m.inflight[req_id] = InFlight(new_gen, moves, now, targets)
    made = make_room.moved(st, req_id, {mv.index: mv.source for mv in moves}) if req_id in st.holds.moving else []
    m.counts["decisions"] += 1
    m.counts["granules_moved"] += len(moves)
    text = f"{describe(moves)} ({decision.reason})" if decision.reason else describe(moves)
    return [MigrateAnswer(granule_id, req_id, new_gen, moves, decision.reason),
            MigrationEvent(req.app_id, req_id, "decided", text, {"gen": new_gen, "moves": _rows(moves)}), *made]


def _last_point(st: MigrationState, req: Request, now: float) -> bool:
    """The world's next point may come too late for a host it is on, which is under a notice: it must not
    wait for room that is being freed (it freezes now, or it would be lost at the deadline)."""
    margin = st.policy.margin if isinstance(st.policy, Spot) else SPOT_MARGIN
    pace = 2 * st.migrations.intervals.get(req.req_id, 0.0) + margin
    due = [n.deadline for t in req.tasks if (n := st.evictions.notices.get(t.host_id)) is not None]
    return bool(due) and min(due) - now <= pace


def _ask_again(st: MigrationState, req: Request) -> list[Action]:
    """A world that stays on a host under an eviction notice is hinted at once, so that it asks again at
    its next point: the spot policy keeps it there until its last point before the deadline. (The other
    policies never move a world off such a host: asking at every point would only slow it down.)"""
    if not isinstance(st.policy, Spot) or not any(t.host_id in st.evicting for t in req.tasks):
        return []
    st.migrations.hinted.add(req.req_id)
    return [Hint(req.tasks[0].granule_id, req.req_id)]


def freeze(st: MigrationState, granule_id: str, req_id: str, reason: str, now: float) -> list[Action]:
    """Every rank saves its state to the planner's store and ends; the world waits for room (see stored)."""
    m = st.migrations
    req = st.requests[req_id]
    new_gen = m.gen(req_id) + 1
    for i, task in enumerate(req.tasks):
        m.sources[(req_id, i)] = task.granule_id
    m.gens[req_id] = new_gen
    m.inflight[req_id] = InFlight(new_gen, (), now, {}, freeze=True)
    counted(st, req)["freezes"] += 1
    text = f"freezing all {req.n} ranks ({reason})" if req.gang else f"freezing the call ({reason})"
    return [MigrateAnswer(granule_id, req_id, new_gen, (), reason, freeze=True),
            MigrationEvent(req.app_id, req_id, "freezing", text, {"gen": new_gen})]


def counted(st: MigrationState, req: Request) -> Counter[str]:
    """Where a freeze is counted: an MPI world's (or a gang's) with the migrations, a plain delay-tolerant
    call's with the batch queue's counts (freezing.py), so that each kind has its own counters."""
    return st.migrations.counts if req.gang else st.batch.counts


def stored(st: MigrationState, req_id: str, index: int, gen: int, error: str, now: float) -> list[Action]:
    """A freezing rank's state is in the store (or could not be fetched: ``error``). Once every rank's is,
    the world is frozen: its tasks wait in the queue, first in line, and thaw when it can be placed."""
    m = st.migrations
    flight = m.inflight.get(req_id)
    req = st.requests.get(req_id)
    if flight is None or not flight.freeze or flight.gen != gen or req is None:
        return []
    if error:
        counted(st, req)["freeze_failed" if not req.gang else "failed"] += 1
        return st.fail_task(req_id, index, Fail(req_id, index, ErrorKind.LOST, f"rank {index} could not be frozen: {error}"))
    flight.stored.add(index)
    if len(flight.stored) < req.n:
        return []
    del m.inflight[req_id]
    for i, task in enumerate(req.tasks):
        if task.state is TaskState.RUNNING:
            task.state = transition(TASK_TRANSITIONS, task.state, TaskEvent.REQUEUE, req_id)
            task.granule_id = task.host_id = ""
    req.frozen = gen
    m.frozen_at[req_id] = now
    if st.delay_tolerant(req_id):  # a plain call: back in the batch queue, with its deadline
        freezing.requeue(st, req_id, now)
    else:
        if req_id in st.queue:
            st.queue.remove(req_id)
        st.queue.appendleft(req_id)  # ahead of newer work: it thaws as soon as it fits
    counted(st, req)["frozen"] += 1
    seconds = now - flight.started
    what = f"the state of all {req.n} ranks is" if req.gang else "the call's state is"
    text = f"frozen: {what} stored ({seconds * 1000:.0f} ms); it thaws when it fits"
    data: dict[str, object] = {"gen": gen, "seconds": round(seconds, 6)}
    if (d := st.batch.known.get(req_id)) is not None:
        data["ran"] = d.ran  # what it ran so far: journaled with its freeze (deadlines.py)
    return [MigrationEvent(req.app_id, req_id, "frozen", text, data)]


def checkpoint_served(st: MigrationState, granule_id: str, req_id: str, index: int, ckpt: int, ip: str, port: int,
                      key: bytes) -> list[Action]:
    """A rank serves its state for checkpoint ``ckpt``: fetch it into the store (the rank waits, then goes on)."""
    saving = st.migrations.saving.get(req_id)
    req = st.requests.get(req_id)
    if saving is None or saving[0] != ckpt or req is None or req.tasks[index].granule_id != granule_id:
        return []  # not asked for (the rank's serve times out and it goes on)
    return [StoreState(req_id, index, f"c{ckpt}", ip, port, key)]


def checkpoint_stored(st: MigrationState, req_id: str, index: int, ckpt: int, error: str, now: float) -> list[Action]:
    """A rank's part of checkpoint ``ckpt`` is in the store; with every rank's, it is the world's latest."""
    m = st.migrations
    saving = m.saving.get(req_id)
    req = st.requests.get(req_id)
    if saving is None or saving[0] != ckpt or req is None:
        return [DropState(req_id, f"c{ckpt}")]
    if error:  # this checkpoint is lost; the world goes on, and the previous one stays the latest
        del m.saving[req_id]
        m.counts["checkpoints_failed"] += 1
        return [DropState(req_id, f"c{ckpt}"), MigrationEvent(req.app_id, req_id, "checkpoint_failed",
                                                              f"checkpoint {ckpt} failed: {error}")]
    saving[1].add(index)
    if len(saving[1]) < req.n:
        return []
    del m.saving[req_id]
    old, req.checkpoint = req.checkpoint, ckpt
    m.counts["checkpoints"] += 1
    actions: list[Action] = [MigrationEvent(req.app_id, req_id, "checkpoint", f"checkpoint {ckpt} of all {req.n} ranks saved",
                                            {"checkpoint": ckpt})]
    return actions + ([DropState(req_id, f"c{old}")] if old else [])


def recover(st: MigrationState, req_id: str, why: str) -> list[Action]:
    """A rank of a world with a checkpoint was lost with its host: restart every rank from the latest
    checkpoint, as a thaw (the world waits first in line for room, then all ranks resume in a new
    generation). The surviving ranks' granules are stopped: their world is gone."""
    m = st.migrations
    req = st.requests[req_id]
    actions: list[Action] = []
    for i, task in enumerate(req.tasks):
        if task.state is not TaskState.RUNNING:
            continue
        granule = st.granules.get(task.granule_id)
        if granule is not None and (req_id, i) in granule.tasks:
            granule.drop((req_id, i))  # its exit is not this task's end any more
            if granule.state is GranuleState.BUSY and st.hosts[granule.host_id].alive:
                actions.append(Kill(granule.host_id, granule.granule_id, f"its world restarts from a checkpoint: {why}"))
        task.state = transition(TASK_TRANSITIONS, task.state, TaskEvent.REQUEUE, req_id)
        task.granule_id = task.host_id = ""
    m.inflight.pop(req_id, None)
    m.saving.pop(req_id, None)
    m.hinted.discard(req_id)
    m.index.forget(req_id)  # (checked afresh at the next pass: a hint it had from elsewhere hid changes from the index)
    new_gen = m.gen(req_id) + 1
    m.gens[req_id] = new_gen
    req.frozen, req.thaw_from = new_gen, f"c{req.checkpoint}"
    m.frozen_at[req_id] = m.now
    if req_id in st.queue:
        st.queue.remove(req_id)
    st.queue.appendleft(req_id)
    m.counts["recoveries"] += 1
    text = f"{why}: restarting all {req.n} ranks from checkpoint {req.checkpoint}"
    return actions + [MigrationEvent(req.app_id, req_id, "recovering", text, {"checkpoint": req.checkpoint,
                                                                              "gen": new_gen})]


def served(st: MigrationState, granule_id: str, req_id: str, index: int, gen: int, ip: str, port: int,
           key: bytes) -> list[Action]:
    """The old process of moving rank ``index`` serves its state: the target granule may pull it."""
    m = st.migrations
    flight = m.inflight.get(req_id)
    if flight is None or flight.gen != gen or not m.from_source(req_id, index, granule_id):
        granule = st.granules.get(granule_id)
        return [] if granule is None else [Kill(granule.host_id, granule_id,
                                                f"rank {index} of {req_id} has no move of generation {gen} in progress")]
    flight.served.add(index)
    if flight.freeze:
        return [StoreState(req_id, index, f"g{gen}", ip, port, key)]
    return [ResumeRank(flight.targets[index], req_id, index, gen, ip, port, key)]


def moved_away(st: MigrationState, granule_id: str, req_id: str, index: int) -> list[Action]:
    """The old process of rank ``index`` handed its state over; it retires, and its slot frees when it exits."""
    key = (req_id, index)
    if not st.migrations.from_source(req_id, index, granule_id):
        return []
    # Still known as the rank's old process until it exits: a stray report from it is never the task's end.
    granule = st.granules.get(granule_id)
    if granule is not None and key in granule.tasks:
        granule.drop(key)
        if not granule.tasks:
            granule.to(GranuleEvent.RELEASE)
    return []


def source_lost(st: MigrationState, granule_id: str, key: tuple[str, int], why: str) -> list[Action]:
    """The old process of a moving rank died. Before it served its state, the rank is lost with it."""
    req_id, index = key
    st.migrations.sources.pop(key, None)
    if not _unserved(st, req_id, index):
        return []
    st.migrations.counts["failed"] += 1
    _unreserve(st, req_id, index)
    return st.fail_task(req_id, index, Fail(req_id, index, ErrorKind.CRASHED, f"{why} while rank {index} was moving"))


def source_reported(st: MigrationState, granule_id: str, req_id: str, index: int) -> tuple[bool, list[Action]]:
    """The old process of a moving rank reported the task's end (not a move: that is :func:`moved_away`).
    Before it served its state, the rank ended there (packing its state failed, say): its report, with the
    real reason, ends the task. After, the rank runs on elsewhere and the report is not the task's."""
    if not _unserved(st, req_id, index):
        return False, []
    st.migrations.counts["failed"] += 1
    del st.migrations.sources[(req_id, index)]
    _unreserve(st, req_id, index)
    old = st.granules.get(granule_id)
    if old is not None and (req_id, index) in old.tasks:
        old.drop((req_id, index))
        if not old.tasks:
            old.to(GranuleEvent.RELEASE)
    return True, st.fail_task(req_id, index, None)


def _unserved(st: MigrationState, req_id: str, index: int) -> bool:
    flight = st.migrations.inflight.get(req_id)
    req = st.requests.get(req_id)
    return (flight is not None and index not in flight.served and req is not None
            and req.tasks[index].state is TaskState.RUNNING)


def _unreserve(st: MigrationState, req_id: str, index: int) -> None:
    """Give back the granule reserved for a rank that will never arrive (it was sent nothing)."""
    flight = st.migrations.inflight[req_id]
    granule = st.granules.get(flight.targets.get(index, ""))
    if granule is not None and (req_id, index) in granule.tasks:
        granule.drop((req_id, index))
        if not granule.tasks:
            granule.to(GranuleEvent.RELEASE)


def world_complete(st: MigrationState, req_id: str, gen: int, now: float) -> list[Action]:
    """Every rank joined generation ``gen``: the move (or the thaw) that made it is over."""
    m = st.migrations
    req = st.requests[req_id]
    if req.frozen == gen:
        source, req.frozen, req.thaw_from = req.thaw_from, 0, ""
        frozen_at = m.frozen_at.pop(req_id, now)
        data = {"gen": gen, "frozen_s": round(now - frozen_at, 6)}
        if source:  # restarted from a checkpoint after a host died; the checkpoint stays the latest
            m.counts["recovered"] += 1
            text = f"recovered: all {req.n} ranks run again from checkpoint {source[1:]}, {now - frozen_at:.1f} s after"
            return [MigrationEvent(req.app_id, req_id, "recovered", text, data)]
        m.counts["thawed"] += 1
        text = f"thawed: all {req.n} ranks run again after {now - frozen_at:.1f} s frozen"
        return [MigrationEvent(req.app_id, req_id, "thawed", text, data), DropState(req_id, f"g{gen}")]
    flight = m.inflight.get(req_id)
    if flight is None or flight.gen != gen:
        return []
    del m.inflight[req_id]
    seconds = max(0.0, now - flight.started)
    text = f"{describe(flight.moves)} in {seconds * 1000:.0f} ms"
    record = {"gen": gen, "moves": _rows(flight.moves), "seconds": round(seconds, 6), "at": now}
    history = m.history.setdefault(req_id, [])
    history.append({**record, "text": text})
    del history[:-HISTORY]
    m.counts["completed"] += 1
    app_id = st.requests[req_id].app_id
    return [MigrationEvent(app_id, req_id, "moved", text, record)]


def hints(st: MigrationState) -> list[Action]:
    """Hint the worlds that would gain from moving now (see the module docstring)."""
    m = st.migrations
    waiting = m.points - m.hinted - m.inflight.keys()
    if not waiting or (not st.evicting and st._full()):
        return []
    st.views.views(st.requests, st.evicting)  # (builds the kept views: changed, by_id)
    binpack = type(st.policy) is BinPack
    if binpack:  # only the worlds that could move now (hint_index.py)
        changed, st.views.changed = st.views.changed, set()
        by_id = st.views.by_id()
        candidates = hint_index.due_worlds(m.index, changed, by_id, waiting)
        most = m.index.most_slots(changed, by_id)
        largest = m.index.largest(2 * max((len(st.requests[r].tasks) for r in candidates if r in st.requests), default=0))
    else:
        candidates = sorted(waiting)
    # A built-in rule reads only the hosts' views and the world itself: while neither changed since a
    # world's last check said it stays, checking it again would say so again.
    reuse = type(st.policy) in HOSTS_ONLY
    actions: list[Action] = []
    view = None  # nothing changes between candidates: one view of the cluster serves them all
    for req_id in candidates:
        req = st.requests.get(req_id)
        if req is None or any(t.state is not TaskState.RUNNING for t in req.tasks):
            continue
        app = st.apps.get(req.app_id)
        seen = (st.views.version, tuple(t.host_id for t in req.tasks), app.tenant if app else req.tenant, req.migrate)
        if binpack and not hint_index.check(m.index, req_id, seen[1], req.migrate, by_id, largest, most):
            continue  # bin-pack would say Stay: recorded, and looked at again once room could move it
        if binpack:  # the check is exact (tests/unit/planner/test_gather.py): bin-pack would move it
            m.hinted.add(req_id)
            actions.append(Hint(req.tasks[0].granule_id, req_id))
            continue
        if reuse and m.quiet.get(req_id) == seen:
            continue
        if view is None:
            view = cluster_view(st.hosts.values(), st.requests, st.apps, st.evicting, queue_of(st.queue, st.requests),
                                m.now)
        decision = st.policy.migrate(world_view(view, req, st.apps), req_id)  # as world_decision, view shared
        if isinstance(decision, Freeze) or (isinstance(decision, Move) and decision.moves):
            m.hinted.add(req_id)
            m.quiet.pop(req_id, None)
            actions.append(Hint(req.tasks[0].granule_id, req_id))
        elif reuse:
            m.quiet[req_id] = seen
    return actions
