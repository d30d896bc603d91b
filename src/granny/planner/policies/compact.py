"""compact: keep hosts completely empty, so that they can be given back; one tenant per host.

New requests go to the fullest hosts first: the fullest host that fits the whole request (best
fit), else, when the partly used hosts cannot hold it, the smallest empty host that can; else the
holes of the partly used hosts, fullest first, then empty hosts, largest first.

Migration: the app gives its own slots back and is re-packed in that order. The move is taken only
if it leaves more hosts completely empty than there are now (a host is empty when none of its slots
is in use), and it moves only the granules those new counts force to move.

Tenants: an app never shares a host with another tenant's apps, neither when placed nor when moved;
a host that runs another tenant's app is not a candidate at all.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from .base import (
    ClusterView,
    Counts,
    Decision,
    HostView,
    MigrationDecision,
    Placement,
    PlacementRequest,
    PolicyBase,
    Stay,
)
from .packing import Capacity, check_size, expand, fill, freed, minimal_move, pinned, runnable


class Compact(PolicyBase):
    name = "compact"

    def place(self, view: ClusterView, request: PlacementRequest) -> Decision:
        if request.hosts:
            return pinned(view, request, lambda h: _others(h, request.tenant))
        ok = [h for h in view.hosts if not _others(h, request.tenant)]
        refused = check_size(view.hosts, request, sum(h.free for h in ok),
                             "free slots on hosts without other tenants' apps")
        if refused is not None:
            return refused
        counts = fullest_first([(h, h.free) for h in ok], request.n, request.app_id, lambda h: h.used)
        return Placement(expand(counts))

    def migrate(self, view: ClusterView, app_id: str) -> MigrationDecision:
        app = runnable(view, app_id)
        if isinstance(app, Stay):
            return app
        caps = freed((h for h in view.hosts if not _others(h, app.tenant)), app_id)
        n = len(app.placement)
        if sum(c for _, c in caps) < n:
            return Stay(f"no room to re-pack app {app_id} on hosts without other tenants' apps")
        target = fullest_first(caps, n, app_id, lambda h: h.used - h.granules_of(app_id))
        new = dict(target)
        before = sum(1 for h in view.hosts if h.used == 0)
        after = sum(1 for h in view.hosts if h.used - h.granules_of(app_id) + new.get(h.host_id, 0) == 0)
        if after > before:
            return minimal_move(app, target, f"empty hosts {before} -> {after}")
        return Stay(f"nothing to gain: re-packing leaves {after} empty host(s), as now")



def fullest_first(caps: Sequence[Capacity], n: int, app_id: str, used: Callable[[HostView], int]) -> Counts:
    """Per-host counts for ``n`` granules, fullest hosts first (the caller checked that they fit).

    ``used`` says how many slots of a host are taken by others: 0 means the host is empty."""
    def mine(h: HostView) -> int:
        return h.granules_of(app_id)

    partly = [(h, c) for h, c in caps if c > 0 and used(h) > 0]
    empty = [(h, c) for h, c in caps if c > 0 and used(h) <= 0]
    smallest_fit = lambda hc: (hc[1], -mine(hc[0]), hc[0].host_id)  # noqa: E731
    fits = [hc for hc in partly if hc[1] >= n]
    if not fits and sum(c for _, c in partly) < n:
        fits = [hc for hc in empty if hc[1] >= n]  # one empty host is used either way: keep the app whole
    if fits:
        return ((min(fits, key=smallest_fit)[0].host_id, n),)
    order = sorted(partly, key=smallest_fit) + sorted(empty, key=lambda hc: (-hc[1], -mine(hc[0]), hc[0].host_id))
    return fill(order, n)


def _others(host: HostView, tenant: str) -> str | None:
    """Why ``host`` cannot take an app of ``tenant``, or None."""
    others = sorted(host.tenants - {tenant})
    if others:
        return f"host {host.host_id} runs apps of another tenant ({', '.join(others)})"
    return None
