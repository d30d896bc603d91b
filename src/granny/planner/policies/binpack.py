"""bin-pack (the default): fewest hosts, then fewest cross-host links, then the tightest fit.

New requests: hosts that already run the app come first (keeping an app together cuts links). A
request that fits in one host goes to the one with the fewest free slots that holds it (best fit:
the large holes stay for large requests and for split worlds to gather into). Otherwise hosts by
free slots, largest first: filling the largest hosts first uses the fewest hosts, and a split into
fewer, larger parts also has the fewest cross-host links between granules; the last, partial part
goes to the smallest hole that holds it (same counts, so as few hosts and links).

``bin-pack-reserve`` (``BinPack(reserve=0.05)``) keeps a share of the cluster free for split worlds
to gather into at their migration points: a request that bin-pack could only place on more hosts, or
with more cross-host links, than it would need on an empty cluster waits while placing it would
leave fewer than ``reserve`` of all slots free (unless nothing else runs). A request bin-pack places
as well as it could on an empty cluster is never held. The original's harness kept 5% of the cluster
free for its granny-migrate runs of the mpi-locality traces ("slack CPUs to help de-fragment"); this
is that rule, in the planner, for the placements it can improve. Migration is bin-pack's.

Migration: the app gives its own slots back and is re-packed by largest capacity first, which is
optimal for both hosts and links (see :func:`.packing.fewest_links`); its current placement is one
of the candidates, so the result is never worse. The move is taken only if it uses fewer hosts, or
as many hosts with fewer links, and it moves only the granules those new counts force to move.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

from ...errors import ConfigError
from .base import (
    ClusterView,
    Decision,
    HostView,
    MigrationDecision,
    Placement,
    PlacementRequest,
    PolicyBase,
    RunningApp,
    Stay,
    Wait,
    links,
)
from .packing import check_size, describe, fewest_links, freed, improve_or_stay, pinned, runnable

RESERVE = 0.05  # bin-pack-reserve's share of the slots kept free (the original's harness: 5%)


class BinPack(PolicyBase):
    name = "bin-pack"

    def __init__(self, reserve: float = 0.0) -> None:
        if not 0.0 <= reserve < 1.0:
            raise ConfigError(f"bin-pack's reserve is a share of the cluster's slots in [0, 1), got {reserve}")
        self.reserve = reserve
        if reserve:
            self.name = "bin-pack-reserve"

    def place(self, view: ClusterView, request: PlacementRequest) -> Decision:
        if request.hosts:
            return pinned(view, request)
        refused = check_size(view.hosts, request, sum(h.free for h in view.hosts))
        if refused is not None:
            return refused
        hosts = pack(view.hosts, request.n, request.app_id)
        why = held_back(view.hosts, hosts, self.reserve) if self.reserve else None
        return Wait(why) if why else Placement(hosts)

    def migrate(self, view: ClusterView, app_id: str) -> MigrationDecision:
        app = runnable(view, app_id)
        return app if isinstance(app, Stay) else migrate_within(view.hosts, app)



def pack(hosts: Sequence[HostView], n: int, app_id: str) -> tuple[str, ...]:
    """The host of each of ``n`` new granules; the caller checked that they fit in the free slots."""
    # Prefer a single host that fits the whole request: zero cross-host links. Of those, the one
    # with the fewest free slots (best fit): the larger holes stay whole for a larger request, or
    # for a split world to gather into at its next migration point.
    whole = [h for h in hosts if h.free >= n]
    if whole:
        best = max(whole, key=lambda h: (h.granules_of(app_id) > 0, -h.free, h.host_id))
        return (best.host_id,) * n
    # Fewest hosts first: largest free first is optimal for the count. Keeping the app together
    # only breaks ties, i.e. it is used when it needs no more hosts than that.
    by_free = _largest_then_best_fit(hosts, n, app_id)
    if not any(h.granules_of(app_id) for h in hosts):
        return tuple(by_free)
    with_app = _greedy(sorted(hosts, key=lambda h: (h.granules_of(app_id) > 0, h.free, h.host_id), reverse=True), n)
    return tuple(with_app if len(set(with_app)) <= len(set(by_free)) else by_free)


def held_back(hosts: Sequence[HostView], placement: tuple[str, ...], reserve: float) -> str | None:
    """Why ``placement`` (bin-pack's, of a new request) should wait for room, under ``reserve``; None if not."""
    n = len(placement)
    total, free = sum(h.slots for h in hosts), sum(h.free for h in hosts)
    keep = int(total * reserve)
    if free - n >= keep or not any(h.placements or h.app_granules for h in hosts):
        return None
    now = links(Counter(placement).values())
    best = fewest_links([(h, h.slots) for h in hosts], n, "")
    if now <= links(c for _, c in best):
        return None
    return (f"keeping {keep} of {total} slots free for split worlds to gather into: placed now, the {n} granules "
            f"would have {now} cross-host links on {len(set(placement))} hosts ({describe(best)} at best)")


def _largest_then_best_fit(hosts: Sequence[HostView], n: int, app_id: str) -> list[str]:
    """The largest holes first, and the last, partial part in the smallest hole that holds it: the
    same per-host counts as filling largest first (so as few hosts and links), one large hole less used."""
    out: list[str] = []
    left = n
    chosen: set[str] = set()
    for host in sorted(hosts, key=lambda h: (h.free, h.host_id), reverse=True):
        if host.free >= left:
            break
        out.extend([host.host_id] * host.free)
        chosen.add(host.host_id)
        left -= host.free
    last = max((h for h in hosts if h.free >= left and h.host_id not in chosen),
               key=lambda h: (h.granules_of(app_id) > 0, -h.free, h.host_id))
    return out + [last.host_id] * left


def migrate_within(hosts: Iterable[HostView], app: RunningApp) -> MigrationDecision:
    """bin-pack's migration rule for ``app`` over ``hosts`` (which include every host it runs on)."""
    return improve_or_stay(app, fewest_links(freed(hosts, app.app_id), len(app.placement), app.app_id))


def _greedy(order: Sequence[HostView], n: int) -> list[str]:
    out: list[str] = []
    for host in order:
        take = min(host.free, n - len(out))
        out.extend([host.host_id] * take)
        if len(out) == n:
            break
    return out


binpack = BinPack()
