"""The migration hints under bin-pack, incrementally: only the worlds that could move now are looked at.

Theory of operation
- The hints (migration.hints) run after every event that may free room: at 1,000 hosts that is about
  a hundred thousand passes a run, and asking about every world with migration points each time made
  the pass O(worlds): granny-migrate took minutes at that size. Under bin-pack a world that stayed at
  its last check can only move once (a) a host it runs on changed, or (b) some other host got at least
  its *need* free slots: the fewest free slots one more host must have for bin-pack to move the world
  (:func:`need`; bin-pack's re-pack only improves with larger capacities, so a world that stays with
  its current hosts stays while no other host reaches that). A world whole on one host never moves.
- So each world that stays is recorded with its hosts and its need (:class:`HintIndex`), and a pass
  looks only at the worlds not recorded (new, or asked since) and those that (a) or (b) make due: it
  reads the hosts rebuilt since the last pass (``HostViews.changed``), O(changed hosts + due worlds x
  n log n) a pass, where n is a world's size. Free slot counts are kept in buckets (free -> hosts), so
  the largest free values (gather.would_move) come without a scan of the cluster.
- The check itself is gather.would_move, exact for bin-pack; the hints then ask the rule only for the
  worlds it passes, as before. ``tests/unit/planner/test_hint_index.py`` compares the hinted worlds with
  asking the rule about every world, on random event sequences.
Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from .gather import would_move
from .policies.base import HostView

NEVER = 1 << 30  # the need of a world that no single host's room moves (on one host, or may not move)
VIRTUAL = "\x00"  # a host that is not there: "one more host with this many free slots"


def need(placement: Sequence[str], hosts: Mapping[str, HostView], largest: Sequence[tuple[int, str]],
         most: int) -> int:
    """The fewest free slots (up to ``most``) that one more host must have for bin-pack to move a world on
    ``placement``; NEVER if none does (call it for a world that stays now)."""
    if len(set(placement)) < 2:
        return NEVER
    for free in range(1, most + 1):
        if would_move(placement, hosts, [*largest, (free, VIRTUAL)]):
            return free
    return NEVER


@dataclass
class Record:
    hosts: frozenset[str]
    need: int


class HintIndex:
    def __init__(self) -> None:
        self.records: dict[str, Record] = {}  # world -> what its last check saw (it stayed)
        self.on_host: dict[str, set[str]] = {}  # host -> recorded worlds on it
        self.by_need: dict[int, set[str]] = {}  # need -> recorded worlds
        self.free: dict[str, int] = {}  # host -> its free slots, as the last pass saw them
        self.buckets: dict[int, dict[str, None]] = {}  # free slots -> hosts with that many (insertion-ordered)
        self.slots: dict[str, int] = {}  # live host -> its slots
        self.sizes: dict[int, int] = {}  # slots -> how many live hosts have that many

    def record(self, world: str, placement: Iterable[str], need: int) -> None:
        self.forget(world)
        hosts = frozenset(placement)
        self.records[world] = Record(hosts, need)
        if need < NEVER:  # a world that never moves by room is never due again (until forgotten)
            for h in hosts:
                self.on_host.setdefault(h, set()).add(world)
            self.by_need.setdefault(need, set()).add(world)

    def forget(self, world: str) -> None:
        rec = self.records.pop(world, None)
        if rec is None or rec.need >= NEVER:
            return
        for h in rec.hosts:
            if (on := self.on_host.get(h)) is not None:
                on.discard(world)
        self.by_need[rec.need].discard(world)

    def due(self, changed: Iterable[str], hosts: Mapping[str, HostView]) -> set[str]:
        """The recorded worlds the ``changed`` hosts (now as ``hosts`` show them) may make move, and take
        in those hosts' free slots."""
        out: set[str] = set()
        rise = 0
        for h in changed:
            view = hosts.get(h)
            new = view.free if view is not None else 0
            old = self.free.get(h, 0)
            if new != old:
                self._move(h, old, new)
            if (on := self.on_host.get(h)) is not None:
                out |= on
            if new > old:
                rise = max(rise, new)
        if rise:
            for level, worlds in self.by_need.items():
                if level <= rise:
                    out |= worlds
        return out

    def most_slots(self, changed: Iterable[str], hosts: Mapping[str, HostView]) -> int:
        """The most slots a live host has (no world needs more free than that), kept up with the hosts that changed."""
        for h in changed:
            view = hosts.get(h)
            new = view.slots if view is not None else 0
            old = self.slots.get(h, 0)
            if new == old:
                continue
            if old:
                self.sizes[old] -= 1
                if not self.sizes[old]:
                    del self.sizes[old]
            if new:
                self.slots[h] = new
                self.sizes[new] = self.sizes.get(new, 0) + 1
            else:
                self.slots.pop(h, None)
        return max(self.sizes, default=0)

    def largest(self, k: int) -> list[tuple[int, str]]:
        """At least ``k`` of the largest (free slots, host) values (fewer if fewer hosts have room)."""
        out: list[tuple[int, str]] = []
        for free in sorted(self.buckets, reverse=True):
            for h in self.buckets[free]:
                out.append((free, h))
                if len(out) >= k:
                    return out
        return out

    def _move(self, host: str, old: int, new: int) -> None:
        if old > 0:
            bucket = self.buckets[old]
            del bucket[host]
            if not bucket:
                del self.buckets[old]
        if new > 0:
            self.buckets.setdefault(new, {})[host] = None
            self.free[host] = new
        else:
            self.free.pop(host, None)


def due_worlds(index: HintIndex, changed: set[str], hosts: Mapping[str, HostView], waiting: set[str]) -> list[str]:
    """The worlds a pass of the hints must look at: of ``waiting`` (worlds with points, neither hinted nor
    moving), those not recorded and those the hosts ``changed`` since the last pass make due."""
    due = index.due(changed, hosts) & waiting
    return sorted(due | (waiting - index.records.keys()))


def check(index: HintIndex, world: str, placement: tuple[str, ...], migrate: bool, hosts: Mapping[str, HostView],
          largest: Sequence[tuple[int, str]], most: int) -> bool:
    """Whether bin-pack may move ``world`` now (then ask the rule); if not, it is recorded with its need."""
    if not migrate or any(h not in hosts for h in placement):
        index.record(world, placement, NEVER)
        return False
    k = 2 * len(placement)
    if len(set(placement)) > 1 and would_move(placement, hosts, largest[:k]):
        index.forget(world)
        return True
    index.record(world, placement, need(placement, hosts, largest[:k], most))
    return False
