"""The hosts' placement views, kept between placements: only the hosts that changed are looked at again.

Theory of operation
- Placing the head of the queue needs every live host's :class:`HostView` (free slots, placements,
  tenants). Built from scratch that is O(hosts + granules), a few milliseconds at 1,000 hosts, and
  :meth:`PlannerState.schedule` needs it after every event that may free room, and again after every
  placement. Most events change one host; so the views are kept, and rebuilt host by host.
- What is stale is known without looking: the hosts and granules of a state *watch* (records.py):
  setting a field of either, or adding or removing a granule, puts the host's id in ``dirty``. A
  host whose granule runs a task of a request the state does not know (yet: after a planner
  restart) is rebuilt every time, as its view changes when the request arrives; forgetting requests
  (retention) marks every host stale. Eviction notices are compared with those of the last build.
- The views come out in the order of the state's hosts, as a scratch build lists them (first-fit reads it).
- ``HostViews.check`` (tests turn it on): every build is compared with one from scratch, and a
  difference raises, so a change that escapes the watch is caught where it happens.
Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import ClassVar

from ..errors import GrannyError
from .policies import HostView
from .records import Host, Request
from .views_policy import cluster_view, host_view


class StaleViewError(GrannyError):
    """A kept host view differs from a scratch one: a change to a host escaped the watch (a bug)."""


class Hosts(dict[str, Host]):
    """The state's hosts: a host put here is watched (its changes mark it stale)."""

    def __init__(self, dirty: set[str]) -> None:
        super().__init__()
        self.dirty = dirty
        self.reordered = False

    def __setitem__(self, host_id: str, host: Host) -> None:
        old = self.get(host_id)
        if old is not None and old is not host:
            old.watch(None)
        super().__setitem__(host_id, host)
        host.watch(self.dirty)

    def __delitem__(self, host_id: str) -> None:
        self[host_id].watch(None)
        super().__delitem__(host_id)
        self.dirty.add(host_id)
        self.reordered = True


class Placed(tuple[HostView, ...]):
    """The kept views, with each host's position in them (``pos``): a reader that changes a few hosts'
    views (holds.Holds.view, on every placement pass) patches those, not every host."""

    pos: Mapping[str, int]
    held: Mapping[str, HostView]  # (holds.held_by_id: the hosts whose views a hold changed)


class HostViews:
    check: ClassVar[bool] = False  # compare every build with a scratch one (tests)

    def __init__(self) -> None:
        self.dirty: set[str] = set()
        self.hosts = Hosts(self.dirty)
        self._live: dict[str, HostView] = {}  # the live hosts' views, in the order of ``hosts``
        self._busy: dict[str, int] = {}  # their busy slots
        self._unknown: set[str] = set()  # hosts running a task of a request not known (yet)
        self._evicting: frozenset[str] = frozenset()
        self._views: tuple[HostView, ...] = Placed()
        self._views.pos, self._views.held = {}, {}
        self._views_pos: dict[str, int] = {}
        self._roomy = 0  # live hosts with a slot not busy (see full)
        self.version = 0  # counts the builds that looked at a stale host: equal versions, equal views
        self.changed: set[str] = set()  # hosts rebuilt since a reader last cleared it (the migration hints)

    def stale_all(self) -> None:
        self.dirty.update(self.hosts)

    def views(self, requests: Mapping[str, Request], evicting: set[str]) -> tuple[HostView, ...]:
        """Every live host's view, as ``cluster_view(...).hosts`` gives it."""
        dirty = self.dirty
        if (evicting or self._evicting) and evicting != self._evicting:
            dirty.update(evicting.symmetric_difference(self._evicting))
            self._evicting = frozenset(evicting)
        if self._unknown:
            dirty.update(self._unknown)
        if dirty:
            self._rebuild(requests, evicting)
        if self.check:
            scratch = cluster_view(self.hosts.values(), requests, {}, evicting, with_apps=False).hosts
            if scratch != self._views:
                raise StaleViewError(f"kept host views differ from a scratch build: {self._views} != {scratch}")
        return self._views

    def by_id(self) -> Mapping[str, HostView]:
        """The live hosts' views by id, as the last :meth:`views` built them (read-only)."""
        return self._live

    def full(self, requests: Mapping[str, Request], evicting: set[str]) -> bool:
        """No live host has a slot that is not busy (PlannerState._full), in O(1) once built."""
        self.views(requests, evicting)
        return self._roomy == 0

    def _rebuild(self, requests: Mapping[str, Request], evicting: set[str]) -> None:
        hosts, live, busy_of, unknown_hosts = self.hosts, self._live, self._busy, self._unknown
        reorder = hosts.reordered
        for hid in self.dirty:
            old = live.get(hid)
            if old is not None and busy_of[hid] < old.slots:
                self._roomy -= 1
            host = hosts.get(hid)
            if host is None or not host.alive:
                if old is not None:
                    del live[hid], busy_of[hid]
                unknown_hosts.discard(hid)
                continue
            view, busy, unknown = host_view(host, requests, hid in evicting)
            reorder = reorder or old is None  # a host (re)joined: put it back in its place
            live[hid], busy_of[hid] = view, busy
            if busy < view.slots:
                self._roomy += 1
            if unknown:
                unknown_hosts.add(hid)
            else:
                unknown_hosts.discard(hid)
        if reorder:
            hosts.reordered = False
            self._live = live = {hid: live[hid] for hid in hosts if hid in live}
        self.changed |= self.dirty
        self.dirty.clear()
        self.version += 1
        views = Placed(live.values())
        if len(views) != len(self._views_pos) or reorder:  # (hosts only change places when one comes or goes)
            self._views_pos = {view.host_id: i for i, view in enumerate(views)}
        views.pos, views.held = self._views_pos, {}
        self._views = views


def held_by_id(hosts: tuple[HostView, ...], kept: Mapping[str, HostView], only: Iterable[str]) -> dict[str, HostView]:
    """The views of the hosts ``only`` names (when live) in ``hosts``, the kept views (by id: ``kept``) or
    what holds.Holds.view made of them: O(len(only)) when it says which it changed (:class:`Placed`)."""
    held: Mapping[str, HostView] | None = getattr(hosts, "held", None)
    if held is None:
        wanted = set(only)
        return {h.host_id: h for h in hosts if h.host_id in wanted}
    return {h: held.get(h) or kept[h] for h in only if h in kept}
