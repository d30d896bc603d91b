"""Eviction notices: a host that is about to be taken back (a spot VM), with a deadline. Pure.

Theory of operation
- :func:`evict` gives a host a notice that ends ``grace`` seconds from ``now``, as a cloud's spot notice
  does. From then on the host takes no new granules: the policies' view shows it as evicting, with no
  free slot (views_policy.py), whatever the policy. Worlds with migration points are checked at once
  and hinted when their policy moves them off (the spot policy does; see migration.py), so their next
  migration point moves them.
- :func:`restore` lifts a notice before its deadline: the host takes work again. After the deadline it
  only forgets the eviction; the host's capacity comes back when a worker registers for it again (a
  new incarnation, as after a death: :meth:`PlannerState.register_host`).
- At the deadline (a tick: :meth:`Evictions.next_deadline` is one of the state's deadlines, so a
  virtual clock drives it), what still runs on the host is lost as on a dead host
  (:meth:`PlannerState._lose_granule`): a world with a complete checkpoint restarts from it elsewhere,
  a call marked idempotent (``retries``) runs again, and everything else fails with an error naming
  the eviction (``host h2 was evicted (spot notice given 60s before)``; kind ``evicted``, a
  HostDiedError). Nothing can be frozen then: a freeze saves state at a migration point, so the spot
  policy freezes a world at its last point before the deadline. Prefetched calls that had not started
  go back to the queue. The host's granules are killed and
  fenced, the host is no longer alive, and its worker is told to stop (:class:`StopWorker`).
- A host that is dead at its deadline keeps nothing to evict: the notice just ends.
- Notices are journaled by the server (evicting.py); a restarted planner gives a notice back to its host
  when the host registers again (:func:`registered`).
- The worker process that was told to stop is told again if it registers anyway (it missed the order,
  its connection being down at the deadline: :func:`refused`); a new worker process for the host
  brings the host back.
No sockets, threads or clocks: time comes in as ``now``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Protocol, cast

from ..errors import ConfigError, ErrorKind
from .protocols import StateCore
from .records import Action, Granule, Kill, StopWorker

if TYPE_CHECKING:
    from .events import EventLog
    from .liveness import Liveness



@dataclass(frozen=True)
class Notice:
    host_id: str
    given: float  # when the notice came
    grace: float  # how long before the host is taken back
    boot: str = ""  # the worker process that was told to stop (set when the host is taken back)

    @property
    def deadline(self) -> float:
        return self.given + self.grace

    def reason(self) -> str:
        return f"host {self.host_id} was evicted (spot notice given {self.grace:g}s before)"


class EvictionState(StateCore, Protocol):
    """What this module uses of the planner state (PlannerState is one; see protocols.py)."""

    evictions: Evictions
    events: EventLog
    liveness: Liveness

    def mark_evicting(self, host_id: str, evicting: bool = True) -> list[Action]: ...

    def _lose_granule(self, granule: Granule, kind: ErrorKind, why: str) -> list[Action]: ...


class Notices:
    """The eviction side of :class:`~granny.planner.state.PlannerState` (a mixin, to keep state.py small)."""

    def mark_evicting(self, host_id: str, evicting: bool = True) -> list[Action]:
        """A host got (or lost) an eviction notice: policies place no new work there while it has one."""
        st = cast("EvictionState", self)
        if evicting:
            st.evicting.add(host_id)
        else:
            st.evicting.discard(host_id)
        return st.schedule()  # also hints worlds that would now move (see migration.hints)

    def evict(self, host_id: str, now: float, grace: float) -> list[Action]:
        return evict(cast("EvictionState", self), host_id, now, grace)

    def restore_host(self, host_id: str) -> list[Action]:
        return restore(cast("EvictionState", self), host_id)


class Evictions:
    def __init__(self) -> None:
        self.notices: dict[str, Notice] = {}  # host -> its pending notice
        self.evicted: dict[str, Notice] = {}  # host -> the notice that ran out (until restored)
        # host -> a notice a restarted planner read from its journal: it applies when the host registers
        self.restored: dict[str, Notice] = {}

    def next_deadline(self) -> float | None:
        return min((n.deadline for n in self.notices.values()), default=None)

    def due(self, now: float) -> list[Notice]:
        """The notices that ran out by ``now``, oldest deadline first (they leave ``notices``)."""
        out = sorted((n for n in self.notices.values() if n.deadline <= now), key=lambda n: (n.deadline, n.host_id))
        for n in out:
            del self.notices[n.host_id]
        return out

    def evicting_in(self, host_id: str, now: float) -> float | None:
        """Seconds until ``host_id`` is taken back (None: no notice)."""
        n = self.notices.get(host_id)
        return None if n is None else max(0.0, n.deadline - now)


def evict(st: EvictionState, host_id: str, now: float, grace: float) -> list[Action]:
    """Give ``host_id`` a notice ending at ``now + grace`` (0: at once). A second notice replaces the first.
    KeyError for a host never registered; ConfigError for a grace that is negative or not finite."""
    if host_id not in st.hosts:
        raise KeyError(host_id)
    if not math.isfinite(grace) or grace < 0:
        raise ConfigError(f"an eviction's grace period must be 0 or more seconds, got {grace!r}")
    st.evictions.evicted.pop(host_id, None)
    st.evictions.notices[host_id] = Notice(host_id, now, grace)
    st.events.host_notice(host_id, "evicting", f"host {host_id}: eviction notice, taken back in {grace:g}s",
                          {"grace": grace})
    actions = st.mark_evicting(host_id)  # keeps new work off it, and hints worlds that would move
    return actions + tick(st, now) if grace == 0 else actions


def restore(st: EvictionState, host_id: str) -> list[Action]:
    """Lift ``host_id``'s notice (or forget its eviction); KeyError for a host never registered."""
    if host_id not in st.hosts:
        raise KeyError(host_id)
    had = st.evictions.notices.pop(host_id, None) or st.evictions.evicted.pop(host_id, None)
    st.evictions.evicted.pop(host_id, None)
    if had is not None:
        st.events.host_notice(host_id, "restored", f"host {host_id}: eviction notice lifted")
    return st.mark_evicting(host_id, False)  # its free slots may take waiting work at once


def tick(st: EvictionState, now: float) -> list[Action]:
    """Carry out the notices whose deadline passed (see the module docstring)."""
    actions: list[Action] = []
    for notice in st.evictions.due(now):
        st.evicting.discard(notice.host_id)
        host = st.hosts.get(notice.host_id)
        st.evictions.evicted[notice.host_id] = replace(notice, boot=host.boot if host is not None else "")
        actions += _take_back(st, notice, now)
    return actions + st.schedule() if actions else actions


def refused(st: EvictionState, host_id: str, boot: str) -> StopWorker | None:
    """A worker registers for an evicted host: if it is the very process that was told to stop (it missed
    the order: its connection was down at the deadline), it is told again instead of being registered.
    Another process (a new worker for the host) brings the host back."""
    notice = st.evictions.evicted.get(host_id)
    host = st.hosts.get(host_id)
    if notice is None or not notice.boot or boot != notice.boot or host is None or host.alive:
        return None
    return StopWorker(host_id, notice.reason())


def registered(st: EvictionState, host_id: str) -> None:
    """``host_id`` registered: a notice it had before the planner restarted holds again (a deadline
    already past takes the host back at the next tick, as the cloud did)."""
    notice = st.evictions.restored.pop(host_id, None)
    if notice is not None and host_id not in st.evictions.notices:
        st.evictions.notices[host_id] = notice
        st.evicting.add(host_id)


def _take_back(st: EvictionState, notice: Notice, now: float) -> list[Action]:
    host = st.hosts.get(notice.host_id)
    if host is None or not host.alive:
        return []
    why = notice.reason()
    st.events.host_notice(host.host_id, "evicted", why)
    actions: list[Action] = []
    # Gone before its work is handled: whatever that work leads to (a requeued call, a world restarted
    # elsewhere) must not be placed here.
    host.alive = False
    gids = list(host.granules)
    for granule in list(host.granules.values()):
        st.granules.pop(granule.granule_id, None)
        actions += st._lose_granule(granule, ErrorKind.EVICTED, why)
    host.granules.clear()
    # A worker that does not obey the stop (or never hears it) must not run its granules' failed work on.
    st.liveness.fence(host.host_id, host.incarnation, gids)
    kill = f"its host {host.host_id} was evicted"
    return actions + [Kill(host.host_id, gid, kill) for gid in gids] + [StopWorker(host.host_id, why)]
