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
  (:func:`moved_away`) and exits.
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
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .lifecycle import GranuleEvent, TaskState
from .policies import Freeze, Move
from .policies.base import GranuleMove
from .records import Action, Fail, Granule, Hint, Kill, MigrateAnswer, MigrationEvent, ResumeRank
from .views_policy import running_keys, started_tasks

if TYPE_CHECKING:
    from .state import PlannerState

HISTORY = 50  # completed migrations kept per world (for `granny status`)


# --- records ------------------------------------------------------------------------------------
@dataclass
class InFlight:
    gen: int
    moves: tuple[GranuleMove, ...]
    started: float
    targets: dict[int, str]  # rank -> the granule reserved for it
    served: set[int] = field(default_factory=set)  # ranks whose old process serves their state


class Migrations:
    def __init__(self) -> None:
        self.points: set[str] = set()  # worlds that reached a migration point
        self.hinted: set[str] = set()
        self.gens: dict[str, int] = {}  # req_id -> generation (0 when absent)
        self.inflight: dict[str, InFlight] = {}
        self.sources: dict[tuple[str, int], str] = {}  # (req_id, rank) -> old granule, until it leaves
        self.history: dict[str, list[dict[str, Any]]] = {}
        self.counts: Counter[str] = Counter()
        self.now = 0.0  # the latest time an event brought (hints have no event time of their own)

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
        self.gens.pop(req_id, None)
        self.inflight.pop(req_id, None)
        kills: list[Action] = []
        for key in [k for k in self.sources if k[0] == req_id]:
            gid = self.sources.pop(key)
            if (granule := granules.get(gid)) is not None:
                kills.append(Kill(granule.host_id, gid, "its world ended while the rank was moving"))
        return kills

    def forget(self, req_id: str) -> None:
        self.history.pop(req_id, None)


def ask(st: PlannerState, granule_id: str, req_id: str, gen: int, ready: bool, why: str, now: float) -> list[Action]:
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
    if gen != m.gen(req_id):
        return stay(f"generation {gen} is not the world's current one ({m.gen(req_id)})")
    m.points.add(req_id)
    m.hinted.discard(req_id)
    if not ready:
        m.counts["refused"] += 1
        text = f"a move is refused while {why}"
        return stay(text) + [MigrationEvent(req.app_id, req_id, "refused", text)]
    decision = st.migration_decision(req.app_id, now)
    if isinstance(decision, Freeze):
        return stay(f"the policy would freeze the app ({decision.reason}); freezing is not implemented yet")
    if not isinstance(decision, Move):
        m.counts["stays"] += 1
        return stay(decision.reason)
    moves = world_moves(st, req_id, decision)
    if not moves:
        m.counts["stays"] += 1
        return stay("the policy moves other requests of the app, not this world")
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
    m.counts["decisions"] += 1
    m.counts["granules_moved"] += len(moves)
    text = f"{describe(moves)} ({decision.reason})" if decision.reason else describe(moves)
    return [MigrateAnswer(granule_id, req_id, new_gen, moves, decision.reason),
            MigrationEvent(req.app_id, req_id, "decided", text, {"gen": new_gen, "moves": _rows(moves)})]


def world_moves(st: PlannerState, req_id: str, decision: Move) -> tuple[GranuleMove, ...]:
    """The decision's moves of ``req_id``'s ranks, renumbered from app-wide granule indexes to ranks."""
    req = st.requests[req_id]
    keys = running_keys(st.apps[req.app_id], st.requests, started_tasks(st.hosts.values()))
    out = []
    for mv in decision.moves:
        if 0 <= mv.index < len(keys) and keys[mv.index][0] == req_id:
            rank = keys[mv.index][1]
            out.append(GranuleMove(rank, req.tasks[rank].host_id, mv.target))
    return tuple(mv for mv in out if mv.source != mv.target)


def served(st: PlannerState, granule_id: str, req_id: str, index: int, gen: int, ip: str, port: int,
           key: bytes) -> list[Action]:
    """The old process of moving rank ``index`` serves its state: the target granule may pull it."""
    m = st.migrations
    flight = m.inflight.get(req_id)
    if flight is None or flight.gen != gen or not m.from_source(req_id, index, granule_id):
        granule = st.granules.get(granule_id)
        return [] if granule is None else [Kill(granule.host_id, granule_id,
                                                f"rank {index} of {req_id} has no move of generation {gen} in progress")]
    flight.served.add(index)
    return [ResumeRank(flight.targets[index], req_id, index, gen, ip, port, key)]


def moved_away(st: PlannerState, granule_id: str, req_id: str, index: int) -> list[Action]:
    """The old process of rank ``index`` handed its state over; it retires, and its slot frees when it exits."""
    key = (req_id, index)
    if not st.migrations.from_source(req_id, index, granule_id):
        return []
    del st.migrations.sources[key]
    granule = st.granules.get(granule_id)
    if granule is not None and key in granule.tasks:
        granule.tasks.remove(key)
        if not granule.tasks:
            granule.to(GranuleEvent.RELEASE)
    return []


def source_lost(st: PlannerState, granule_id: str, key: tuple[str, int], why: str) -> list[Action]:
    """The old process of a moving rank died. Before it served its state, the rank is lost with it."""
    req_id, index = key
    st.migrations.sources.pop(key, None)
    flight = st.migrations.inflight.get(req_id)
    req = st.requests.get(req_id)
    if flight is None or index in flight.served or req is None or req.tasks[index].state is not TaskState.RUNNING:
        return []
    st.migrations.counts["failed"] += 1
    return st.fail_task(req_id, index, Fail(req_id, index, "crashed", f"{why} while rank {index} was moving"))


def world_complete(st: PlannerState, req_id: str, gen: int, now: float) -> list[Action]:
    """Every rank joined generation ``gen``: the move that made it is over."""
    m = st.migrations
    flight = m.inflight.get(req_id)
    if flight is None or flight.gen != gen:
        return []
    del m.inflight[req_id]
    seconds = max(0.0, now - flight.started)
    record = {"gen": gen, "moves": _rows(flight.moves), "seconds": round(seconds, 6), "at": now}
    history = m.history.setdefault(req_id, [])
    history.append(record)
    del history[:-HISTORY]
    m.counts["completed"] += 1
    app_id = st.requests[req_id].app_id
    text = f"{describe(flight.moves)} in {seconds * 1000:.0f} ms"
    return [MigrationEvent(app_id, req_id, "moved", text, record)]


def hints(st: PlannerState) -> list[Action]:
    """Hint the worlds that would gain from moving now (see the module docstring)."""
    m = st.migrations
    candidates = [r for r in m.points if r not in m.hinted and r not in m.inflight]
    if not candidates or (not st.evicting and st._full()):
        return []
    actions: list[Action] = []
    for req_id in candidates:
        req = st.requests.get(req_id)
        if req is None or any(t.state is not TaskState.RUNNING for t in req.tasks):
            continue
        decision = st.migration_decision(req.app_id, m.now)
        if isinstance(decision, Move) and world_moves(st, req_id, decision):
            m.hinted.add(req_id)
            actions.append(Hint(req.tasks[0].granule_id, req_id))
    return actions


def describe(moves: tuple[GranuleMove, ...]) -> str:
    """"ranks 4-7 moved h2 -> h1": one clause per (source, target) pair, ranks as ranges."""
    groups: dict[tuple[str, str], list[int]] = {}
    for mv in moves:
        groups.setdefault((mv.source, mv.target), []).append(mv.index)
    parts = []
    for (src, dst), ranks in groups.items():
        label = "rank" if len(ranks) == 1 else "ranks"
        parts.append(f"{label} {_ranges(sorted(ranks))} moved {src} -> {dst}")
    return ", ".join(parts)


def _ranges(ranks: list[int]) -> str:
    out: list[str] = []
    start = prev = ranks[0]
    for r in [*ranks[1:], -1]:  # -1 closes the last range
        if r == prev + 1:
            prev = r
            continue
        out.append(str(start) if start == prev else f"{start}-{prev}")
        start = prev = r
    return ",".join(out)


def _rows(moves: tuple[GranuleMove, ...]) -> list[dict[str, Any]]:
    return [{"index": mv.index, "source": mv.source, "target": mv.target} for mv in moves]
