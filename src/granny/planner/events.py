"""What the planner saw happen, as data: a host joined or died, an app was queued, placed or ended. Pure.

Theory of operation
- The state records a :class:`Happened` here at the moment it decides (``st.events``); it has no clock,
  so the driver stamps the time when it collects them (:mod:`.event_feed`, which journals them in the
  ``events`` table and streams them to ``GET /v1/events`` and the dashboard).
- Recording is off until a driver turns it on: the simulator and unit tests never collect them, so they
  cannot pile up there.
- A stream of plain function calls (thousands a second) is not a stream of events: a single call is
  recorded only when its app is new, or when it fails. Worlds, gangs and scripts are recorded at every
  step (queued, placed, finished or failed), so are hosts.
- Migration events (:class:`~granny.planner.records.MigrationEvent`, kinds ``migration.*``) are actions
  already; the driver records them here as it carries them out.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .lifecycle import AppKind, TaskState

if TYPE_CHECKING:
    from .records import App, Request

# Every kind the planner records, with what the dashboard marks it as (see ui/app.js).
KINDS = (
    "host.joined", "host.died", "host.evicting", "host.restored", "host.evicted",
    "app.queued", "app.placed", "app.finished", "app.failed", "app.cancelled",
    "migration.decided", "migration.moved", "migration.refused", "migration.freezing", "migration.frozen",
    "migration.thawed", "migration.checkpoint", "migration.checkpoint_failed", "migration.recovering",
    "migration.recovered",
)


@dataclass(frozen=True)
class Happened:
    kind: str  # one of KINDS
    text: str
    app_id: str = ""
    req_id: str = ""
    host_id: str = ""
    data: dict[str, Any] = field(default_factory=dict)


def _world(req: Request, app: App) -> bool:
    """A request worth an event at every step (not one call of a stream of calls)."""
    return req.n > 1 or req.gang or app.kind != AppKind.FUNCTIONS


class EventLog:
    """Owned by the state, like its other records; not thread-safe."""

    def __init__(self) -> None:
        self.on = False  # a driver collects them (see the module docstring)
        self.new: list[Happened] = []
        # Called when the first event of a batch arrives, so a driver can collect it soon.
        self.listener: Callable[[], None] | None = None
        self.watched = False  # someone shows the state live: tell the listener of changes without events too

    def add(self, ev: Happened) -> None:
        if not self.on:
            return
        self.new.append(ev)
        if len(self.new) == 1 and self.listener is not None:
            self.listener()

    def touch(self) -> None:
        """Something changed that is not an event (a plain call placed or finished): a driver showing the
        state live (the dashboard) may want to know, though nothing is recorded."""
        if self.watched and not self.new and self.listener is not None:
            self.listener()

    def take(self) -> list[Happened]:
        out, self.new = self.new, []
        return out

    # --- what the state says -------------------------------------------------------------------
    def host_joined(self, host_id: str, slots: int, incarnation: int) -> None:
        if self.on:
            again = f" again (incarnation {incarnation})" if incarnation > 1 else ""
            self.add(Happened("host.joined", f"host {host_id} joined{again} with {slots} slots", host_id=host_id,
                              data={"slots": slots, "incarnation": incarnation}))

    def host_died(self, host_id: str, why: str) -> None:
        self.add(Happened("host.died", why, host_id=host_id))

    def host_notice(self, host_id: str, kind: str, text: str, data: dict[str, Any] | None = None) -> None:
        """``kind``: evicting, restored or evicted."""
        self.add(Happened(f"host.{kind}", text, host_id=host_id, data=data or {}))

    def queued(self, req: Request, app: App, new_app: bool) -> None:
        if self.on and (new_app or _world(req, app)):
            what = f"{req.n} granules" if req.n > 1 else "1 granule"
            self.add(Happened("app.queued", f"app {app.app_id} ({app.kind}) queued {what}", app.app_id, req.req_id,
                              data={"n": req.n, "kind": app.kind, "name": app.name}))

    def placed(self, req: Request, app: App, hosts: tuple[str, ...]) -> None:
        if self.on and not _world(req, app):
            self.touch()
        elif self.on:
            per: dict[str, int] = {}
            for h in hosts:
                per[h] = per.get(h, 0) + 1
            where = ", ".join(f"{h}×{n}" for h, n in sorted(per.items()))
            self.add(Happened("app.placed", f"app {app.app_id}: {len(hosts)} granules placed on {where}",
                              app.app_id, req.req_id, data={"hosts": per}))

    def ended(self, req: Request, app: App) -> None:
        """``req`` just became final."""
        if not self.on:
            return
        if not _world(req, app) and req.tasks[0].state is not TaskState.FAILED:  # one call (n == 1) ended well
            self.touch()
            return
        states = [t.state for t in req.tasks]
        failed = sum(1 for s in states if s is TaskState.FAILED)
        if failed:
            kind, text = "app.failed", f"app {app.app_id}: {failed} of {req.n} granules failed"
        elif all(s is TaskState.SUCCEEDED for s in states):
            kind, text = "app.finished", f"app {app.app_id}: all {req.n} granules finished"
        else:
            kind, text = "app.cancelled", f"app {app.app_id}: cancelled"
        self.add(Happened(kind, text, app.app_id, req.req_id, data={"n": req.n, "failed": failed}))
