"""Making room: a split world gathers into the room another world's move leaves (under bin-pack).

Theory of operation
- Why: on a saturated cluster (a job waits for every slot that frees) a split world's re-pack at its
  point rarely finds a host with room for it, although the running jobs would nearly always pack with
  no excess link (an exact packing of the running set at every instant of the mpi-migrate traces is
  within 0.3 % of the optimum: benchmarks/links_bound.py). The slots are there, but held by another
  world: one world must move before the other can gather, and both move only at their own points.
- So when a world W that is over its optimum stays at a point, the planner looks for a world V with points,
  on W's hosts or on the roomiest ones, that could move into free slots elsewhere (where bin-pack would
  place it) such that W's re-pack would then have fewer hosts or links (bin-pack's rule, improve_or_stay)
  and W saves more links than V adds. It keeps the best such plan (net links saved, then fewer hosts,
  then the smaller V), holds V's target slots for V, and hints V.
  At V's point V moves there (:func:`mover_decision`); the slots V leaves are held for W
  (:func:`moved`), which is hinted; at W's point its re-pack sees them free (Holds.view) and gathers.
  A world over its optimum is hinted again after it stays, so that it looks again at its next point.
- Held slots idle until the world they are held for reaches its point, and the makespan is what a
  saturated cluster is judged on: so the holds are soft. A queued request that the free slots do not
  hold, but the free and the held ones would, ends every plan and is placed (Holds.decide). A plan
  also ends when V or W ends, and W's room is spent at W's next point whatever it decides.
- Measured (simulator, the original's mpi-migrate traces at 8-32 hosts, points every 1 % of a job):
  granny-migrate's links over the optimum 1.15-1.20 without plans, 1.06-1.09 with them, makespans
  unchanged (docs/evaluation.md, "What changed in session 9").
- Cost: a search reads the hosts of W and the MAKE_ROOM_HOSTS hosts with the most room, the worlds on
  them, and moves them only into the MAKE_ROOM_HOSTS roomiest holes: O(hosts) to find those, like the
  rule itself, and O(MAKE_ROOM_HOSTS) a candidate.
Pure: no I/O, no clock.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

from ..tunables import MAKE_ROOM_HOSTS
from .lifecycle import TaskState
from .policies import links
from .policies.base import HostView, Move, RunningApp
from .policies.binpack import pack
from .policies.packing import fewest_links, minimal_move
from .records import Action, Hint, Host, Request


class _Held(Protocol):  # holds.Holds (a sibling of the state's helpers: not imported)
    @property
    def moving(self) -> dict[str, tuple[str, Counter[str], str]]: ...
    @property
    def room(self) -> dict[str, tuple[str, Counter[str]]]: ...


class _Worlds(Protocol):
    @property
    def points(self) -> set[str]: ...  # worlds with migration points
    @property
    def hinted(self) -> set[str]: ...
    @property
    def inflight(self) -> Mapping[str, object]: ...


class RoomState(Protocol):
    @property
    def hosts(self) -> dict[str, Host]: ...
    @property
    def requests(self) -> dict[str, Request]: ...
    @property
    def holds(self) -> _Held: ...
    @property
    def migrations(self) -> _Worlds: ...


def optimum(n: int, slots: int) -> int:
    """The fewest cross-host links of ``n`` ranks on hosts of ``slots``: full hosts and the rest."""
    full, rest = divmod(n, slots)
    return links([slots] * full + ([rest] if rest else []))


def repack_key(caps: Iterable[int], n: int) -> tuple[int, int]:
    """(hosts, links) of bin-pack's re-pack of ``n`` ranks over capacities ``caps`` (packing.fewest_links,
    the rule itself); (n + 1, 0) if they do not hold it."""
    usable = [(HostView(str(i), cap, cap), cap) for i, cap in enumerate(caps) if cap > 0]
    if sum(cap for _, cap in usable) < n:
        return n + 1, 0
    counts = fewest_links(usable, n, "")
    return len(counts), links(c for _, c in counts)


def _key(counts: Counter[str]) -> tuple[int, int]:
    return len(counts), links(counts.values())


def after_stay(st: RoomState, req: Request, hosts: Sequence[HostView]) -> list[Action]:
    """World ``req`` stays at its point, seeing ``hosts`` (its view: other apps' holds taken; none when no slot
    is free): if it is
    over its optimum, plan a move of another world that makes room for it, and look again at its next
    point. Returns the hints to send."""
    m, holds = st.migrations, st.holds
    here = Counter(t.host_id for t in req.tasks)
    slots = max((st.hosts[h].slots for h in here if h in st.hosts), default=0)
    if not slots or links(here.values()) <= optimum(req.n, slots) or not req.migrate:
        return []
    again: list[Action] = [] if req.req_id in m.hinted else [Hint(req.tasks[0].granule_id, req.req_id)]
    m.hinted.add(req.req_id)
    if req.req_id in holds.room or any(w == req.req_id for _, _, w in holds.moving.values()):
        return again  # a plan for it is under way
    free = {h.host_id: h.free for h in hosts}
    if not any(free.values()):
        return again  # no room anywhere for another world to move into
    now = _key(here)
    some = [(f, h) for h, f in free.items() if f]  # (a saturated cluster: few hosts have room)
    top = [h for _, h in heapq.nlargest(MAKE_ROOM_HOSTS + req.n + 2, [(free[h] + here[h], h) for h in here if h in free]
                                         + [(f + here[h], h) for f, h in some if h not in here])]
    caps = {h: free[h] + here[h] for h in dict.fromkeys([*here, *top]) if h in free}
    near = top[: req.n + 2]  # the re-pack reads only the largest capacities
    roomy = {h: f for f, h in heapq.nlargest(MAKE_ROOM_HOSTS, some)}
    best: tuple[tuple[int, int, int], Request, Counter[str]] | None = None
    for host_id in dict.fromkeys([*here, *top[:MAKE_ROOM_HOSTS]]):
        for mover in _movable_worlds(st, host_id, req.req_id):
            there = Counter(t.host_id for t in mover.tasks)
            if any(h not in free for h in there):
                continue
            target = _fill({h: f for h, f in roomy.items() if h not in there}, mover.n)
            if target is None:
                continue
            cost = _key(target)[1] - _key(there)[1]  # the links the mover would add (0 moving whole to whole)
            for h in there.keys() | target.keys():
                caps.setdefault(h, free[h] + here[h])
            changed = {h: caps[h] + there[h] - target[h] for h in there.keys() | target.keys()}
            after = repack_key([*(caps[h] for h in near if h not in changed), *changed.values()], req.n)
            if after < now and now[1] - after[1] > cost:
                gain = (now[1] - after[1] - cost, now[0] - after[0], -mover.n)
                if best is None or gain > best[0]:
                    best = (gain, mover, target)
    if best is None:
        return again
    _, mover, target = best
    holds.moving[mover.req_id] = (mover.app_id, target, req.req_id)
    m.hinted.add(mover.req_id)
    return again + [Hint(mover.tasks[0].granule_id, mover.req_id)]


def _fill(free: Mapping[str, int], n: int) -> Counter[str] | None:
    """Where bin-pack would place ``n`` new ranks over ``free`` (binpack.pack); None if they do not fit."""
    if sum(free.values()) < n:
        return None
    return Counter(pack([HostView(h, f, f) for h, f in free.items()], n, ""))


def _movable_worlds(st: RoomState, host_id: str, beneficiary: str) -> list[Request]:
    """The worlds with migration points running on ``host_id`` that may move for another."""
    host = st.hosts.get(host_id)
    if host is None:
        return []
    m, holds = st.migrations, st.holds
    seen = dict.fromkeys(req_id for granule in host.granules.values() for req_id, _ in granule.tasks)
    out = []
    for req_id in seen:
        req = st.requests.get(req_id)
        if (req is None or req_id == beneficiary or req_id not in m.points or req_id in m.inflight
                or req_id in holds.moving or req_id in holds.room or not req.migrate or req.n < 1):
            continue
        if all(t.state is TaskState.RUNNING for t in req.tasks):
            out.append(req)
    return out


def mover_decision(st: RoomState, req: Request) -> Move | None:
    """World ``req`` reached its point with a plan: the move to its held target (None: no plan, or the
    plan no longer fits: it ends)."""
    plan = st.holds.moving.get(req.req_id)
    if plan is None:
        return None
    _, target, world = plan
    other = st.requests.get(world)
    if (any(t.state is not TaskState.RUNNING for t in req.tasks) or sum(target.values()) != req.n or other is None
            or any(t.state is not TaskState.RUNNING for t in other.tasks)):
        del st.holds.moving[req.req_id]
        return None
    app = RunningApp(req.req_id, tuple(t.host_id for t in req.tasks), req.tenant, req.migrate)
    return minimal_move(app, tuple(sorted(target.items())), "making room for " + plan[2])


def moved(st: RoomState, req_id: str, sources: Mapping[int, str]) -> list[Action]:
    """World ``req_id``'s planned move is decided (``sources``: rank -> the host it leaves): the slots
    it leaves are held for the world it makes room for, which is hinted."""
    plan = st.holds.moving.pop(req_id, None)
    if plan is None:
        return []
    world = st.requests.get(plan[2])
    if world is None or any(t.state is not TaskState.RUNNING for t in world.tasks):
        return []
    st.holds.room[world.req_id] = (world.app_id, Counter(sources.values()))
    if world.req_id in st.migrations.hinted:
        return []
    st.migrations.hinted.add(world.req_id)
    return [Hint(world.tasks[0].granule_id, world.req_id)]
