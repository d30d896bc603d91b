"""spot: bin-pack that stays off hosts under an eviction notice (spot VMs about to be taken back).

New requests are bin-packed on the hosts without a notice; they wait while those lack room. Only a
request larger than every host together, evicting ones included, never fits: an evicted spot VM is
usually replaced, so its slots count as capacity that comes back.

Migration: an app with granules on an evicting host uses that host for as long as it safely can. It
stays (and is asked again at its next point) while its next point but one still comes before the
notice runs out (``MARGIN`` to spare), if leaving now would freeze it: the host takes no new work, so
its slots would idle through the rest of the grace while the app waited frozen. At its last point
before the deadline (or at once, when the deadline or the app's pace between points is not known, or
when the other hosts have room for it) it is re-packed (bin-pack, largest capacity first) on
the other hosts if they have room for all of it, whatever that does to hosts and links; if they do
not, the decision is Freeze. An app clear of evicting hosts follows bin-pack's migration rule on the
hosts without a notice.

``spot-late`` (``Spot(late=True)``, ``granny policy set spot-late``) is the same policy with one
option: an app on an evicting host stays until its last point before the deadline *even when the other
hosts have room for it now*. The host under notice takes no new work, so whatever leaves it early leaves
its slots idle for the rest of the grace, and takes room on the other hosts that queued work (or a
frozen app waiting for its whole size) could have used meanwhile. The price: at its last point the room
it would have moved to may be gone, and it freezes instead of moving. On the original's spot trace,
replayed on the testbed, this shortened the makespan under evictions (docs/spot.md). Its margin is
``LATE_MARGIN``: a move or a freeze of the trace's worlds took 0.02-0.4 s live, well inside it.
"""

from __future__ import annotations

from ...tunables import SPOT_LATE_MARGIN as LATE_MARGIN
from ...tunables import SPOT_MARGIN as MARGIN
from .base import (
    ClusterView,
    Decision,
    Freeze,
    HostView,
    MigrationDecision,
    Placement,
    PlacementRequest,
    PolicyBase,
    Stay,
)
from .binpack import migrate_within, pack
from .packing import check_size, fewest_links, freed, minimal_move, pinned, runnable


class Spot(PolicyBase):
    name = "spot"

    def __init__(self, late: bool = False, margin: float | None = None) -> None:
        self.late = late
        self.margin = margin if margin is not None else LATE_MARGIN if late else MARGIN
        if late:
            self.name = "spot-late"

    def place(self, view: ClusterView, request: PlacementRequest) -> Decision:
        if request.hosts:
            return pinned(view, request, _evicting)
        safe = [h for h in view.hosts if not h.evicting]
        refused = check_size(view.hosts, request, sum(h.free for h in safe), "free slots on hosts without an eviction notice")
        return refused if refused is not None else Placement(pack(safe, request.n, request.app_id))

    def migrate(self, view: ClusterView, app_id: str) -> MigrationDecision:
        app = runnable(view, app_id)
        if isinstance(app, Stay):
            return app
        safe = [h for h in view.hosts if not h.evicting]
        leaving = sorted({h for h in app.placement if not any(s.host_id == h for s in safe)})
        if not leaving:
            return migrate_within(safe, app)
        caps = freed(safe, app_id)
        n = len(app.placement)
        room = sum(c for _, c in caps)
        left = min(view.evict_at.get(h, view.now) for h in leaving) - view.now
        if app.interval > 0 and left > 2 * app.interval + self.margin and (room < n or self.late):
            return Stay(f"uses evicting host(s) {', '.join(leaving)} until its last migration point before the "
                        f"notice runs out in {left:.1f}s (a point every {app.interval:.2f}s)")
        if room < n:
            return Freeze(app_id, f"host(s) {', '.join(leaving)} are being evicted and the other hosts have room "
                                  f"for {room} of the app's {n} granules")
        return minimal_move(app, fewest_links(caps, n, app_id), f"leaving evicting host(s) {', '.join(leaving)}")



def _evicting(host: HostView) -> str | None:
    return f"pinned host {host.host_id} is under an eviction notice" if host.evicting else None
