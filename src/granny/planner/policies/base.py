"""The policy interface. A policy sees plain data and returns a decision; it does no I/O.

Theory of operation
- A policy is an object with a ``name`` and two pure rules over a :class:`ClusterView` (frozen
  data, built by the planner or a simulator): ``place(view, request)`` answers a new request with a
  :class:`Placement`, :class:`Wait` or :class:`NeverFits`; ``migrate(view, app_id)`` answers "should
  this running app move now?" with a :class:`Move`, :class:`Freeze` or :class:`Stay`.
- ``policy(hosts, request)`` is the older call (a list of :class:`HostView` and a size): it builds a
  view from those hosts and calls ``place``, so drivers that know only hosts keep working.
- A host's ``free`` counts the slots that can take a granule now; ``placements`` says which app
  holds how many of the others. A migration rule first gives the app its own slots back
  (``free + placements[app]`` on each host), re-packs it, and only then compares.
- Cross-host links of an app with per-host counts n_h and N granules: Σ n_h·(N−n_h)/2, the number
  of granule pairs on different hosts (:func:`links`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from ...errors import ConfigError

Counts = tuple[tuple[str, int], ...]  # (host_id, granules) pairs, sorted by host id


@dataclass(frozen=True)
class HostView:
    host_id: str
    slots: int
    free: int  # slots that can take a granule right now
    app_granules: int = 0  # older call only: granules of the requesting app already on this host
    placements: Mapping[str, int] = field(default_factory=dict, hash=False)  # app_id -> its granules here
    evicting: bool = False  # under an eviction notice (a spot VM about to be taken back)
    tenants: frozenset[str] = frozenset()  # tenants of the apps with granules here

    @property
    def used(self) -> int:
        return self.slots - self.free

    def granules_of(self, app_id: str) -> int:
        return self.placements.get(app_id, 0)


@dataclass(frozen=True)
class PlacementRequest:
    app_id: str
    n: int
    tenant: str = ""
    deadline: float | None = None  # on the view's clock (``ClusterView.now``); no policy here uses it yet
    hints: tuple[tuple[str, str], ...] = ()
    hosts: Counts = ()  # a pinned placement, as ``mpirun --host h1:4,h2:4``: (("h1", 4), ("h2", 4))
    migrate: bool = True  # may the app be moved once it runs


@dataclass(frozen=True)
class RunningApp:
    """An app in flight: the host of each of its granules, by granule index."""

    app_id: str
    placement: tuple[str, ...]
    tenant: str = ""
    migrate: bool = True
    interval: float = 0.0  # seconds between its migration points, as last measured (0: not known)

    @property
    def counts(self) -> Counts:
        return counts_of(self.placement)


@dataclass(frozen=True)
class ClusterView:
    hosts: tuple[HostView, ...]
    apps: Mapping[str, RunningApp] = field(default_factory=dict, hash=False)
    queue: tuple[PlacementRequest, ...] = ()  # waiting requests, oldest first
    now: float = 0.0
    # host -> when its eviction notice runs out, on the view's clock (hosts under notice whose deadline
    # the driver did not give count as due now)
    evict_at: Mapping[str, float] = field(default_factory=dict, hash=False)

    def host(self, host_id: str) -> HostView | None:
        # Indexed on first use (a rule may ask once per granule of an app): the first host of that id.
        index: dict[str, HostView] | None = self.__dict__.get("_index")
        if index is None:
            index = {h.host_id: h for h in reversed(self.hosts)}
            object.__setattr__(self, "_index", index)
        return index.get(host_id)


# --- decisions for a new request ---------------------------------------------------------------
@dataclass(frozen=True)
class Placement:
    hosts: tuple[str, ...]  # host of each granule index


@dataclass(frozen=True)
class Wait:
    reason: str


@dataclass(frozen=True)
class NeverFits:
    reason: str


# --- decisions for a running app -----------------------------------------------------------------
@dataclass(frozen=True)
class GranuleMove:
    index: int
    source: str
    target: str


@dataclass(frozen=True)
class Move:
    """Move ``moves`` so that the app's per-host counts become ``counts`` (``placement`` after it)."""

    app_id: str
    counts: Counts
    placement: tuple[str, ...]
    moves: tuple[GranuleMove, ...]
    reason: str = ""


@dataclass(frozen=True)
class Freeze:
    """The app must leave its hosts and there is no room anywhere: snapshot it and wait."""

    app_id: str
    reason: str


@dataclass(frozen=True)
class Stay:
    reason: str


Decision = Placement | Wait | NeverFits
MigrationDecision = Move | Freeze | Stay


class Policy(Protocol):
    name: str

    def place(self, view: ClusterView, request: PlacementRequest) -> Decision: ...

    def migrate(self, view: ClusterView, app_id: str) -> MigrationDecision: ...

    def __call__(self, hosts: Sequence[HostView], request: PlacementRequest) -> Decision: ...


class PolicyBase:
    """What every policy class shares: the older call and a readable repr (subclasses give ``name``,
    ``place`` and ``migrate``)."""

    name = ""

    def place(self, view: ClusterView, request: PlacementRequest) -> Decision:
        raise NotImplementedError

    def __call__(self, hosts: Sequence[HostView], request: PlacementRequest) -> Decision:
        return self.place(legacy_view(hosts, request), request)

    def __repr__(self) -> str:
        return f"<policy {self.name}>"


# --- helpers every policy shares -------------------------------------------------------------------
def counts_of(placement: Iterable[str]) -> Counts:
    return tuple(sorted(Counter(placement).items()))


def links(counts: Iterable[int]) -> int:
    """Cross-host links of an app split into these per-host counts: pairs of granules on different hosts."""
    values = list(counts)
    total = sum(values)
    return sum(n * (total - n) for n in values) // 2


def legacy_view(hosts: Sequence[HostView], request: PlacementRequest) -> ClusterView:
    """The view the older call implies: only the requesting app's granules are known."""
    return ClusterView(tuple(
        h if h.placements or not h.app_granules else
        HostView(h.host_id, h.slots, h.free, h.app_granules, {request.app_id: h.app_granules}, h.evicting, h.tenants)
        for h in hosts))


def build_view(slots: Mapping[str, int], apps: Iterable[RunningApp], evicting: Iterable[str] = (),
               busy: Mapping[str, int] | None = None, queue: tuple[PlacementRequest, ...] = (),
               now: float = 0.0) -> ClusterView:
    """A consistent view from host sizes and running apps: ``free``, ``placements`` and ``tenants``
    are derived. ``busy`` adds slots in use by nothing the view names (a granule being replaced)."""
    apps = list(apps)
    gone = set(evicting)
    hosts = []
    for host_id, size in slots.items():
        here = {a.app_id: n for a in apps if (n := a.placement.count(host_id))}
        tenants = frozenset(a.tenant for a in apps if a.app_id in here)
        free = size - sum(here.values()) - (busy or {}).get(host_id, 0)
        if free < 0:
            raise ConfigError(f"host {host_id} has {size} slots and more granules than that")
        hosts.append(HostView(host_id, size, free, 0, here, host_id in gone, tenants))
    return ClusterView(tuple(hosts), {a.app_id: a for a in apps}, queue, now)
