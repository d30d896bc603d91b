"""Retention: which finished work the planner forgets, and when (``--retain``, Config.retain).

Theory of operation
- A request is *finished* when every task is final; PlannerState lists it in ``finished`` and
  :meth:`Retention.collect` stamps it with the time it is given (this module has no clock either).
- A finished request is pruned (dropped from PlannerState, then from the journal: its request,
  result and log rows) once ``retain`` seconds have passed since it was stamped, unless
  - its result has not reached its client (the client was away: it will resubmit and be answered
    from the journal); such a request waits for its client for ``ABANDON_FACTOR * retain`` at most,
    so clients that crash with work pending cannot pin memory for ever, or
  - it belongs to a script app that is still running (its status counts every rank), or
  - it is still referenced by the queue or a granule (``busy``; the next pass looks again).
  An app is pruned once it has ended, ``retain`` has passed since then, and none of its requests is
  left; its final state stays in the journal as a tombstone for ``APP_TOMBSTONE_FACTOR * retain``.
- A pruned request leaves a *tombstone* (req_id -> when) for one more ``retain``, in memory and in
  the journal, so a client that resubmits it after a reconnect or a planner restart is told it was
  pruned instead of running it again. The same applies to requests that were already finished when
  the planner restarted (``remember``): a resubmission is answered from the journal, not re-run.
- Every structure here is bounded by what finishes within about two retention windows.
- PlannerState owns a Retention and runs a pass from its ``tick`` every :func:`prune_interval`,
  while anything is left to look at (:meth:`Retention.next_pass` is one of its deadlines); the pass
  comes out as a :class:`~granny.planner.records.Pruned` action for the driver (journal, payloads).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from enum import Enum
from typing import Protocol

from ..durations import format_duration
from ..tunables import ABANDON_FACTOR, APP_TOMBSTONE_FACTOR
from .lifecycle import AppKind, AppState
from .records import App, Granule, Pruned, Request


class RetainedState(Protocol):
    """What retention reads and changes of :class:`granny.planner.state.PlannerState` (which owns a
    Retention): a Protocol, so that the two modules do not import each other."""

    finished: list[str]
    queue: deque[str]
    granules: dict[str, Granule]
    requests: dict[str, Request]
    apps: dict[str, App]

    def forget(self, req_ids: Iterable[str]) -> None: ...

    def forget_app(self, app_id: str) -> None: ...


__all__ = ["ABANDON_FACTOR", "APP_TOMBSTONE_FACTOR", "Known", "Pruned", "Retention", "prune_interval"]



class Known(Enum):
    """What the planner knows of a request id that is not in PlannerState."""

    JOURNAL = "journal"  # finished before a restart: its results are in the journal
    PRUNED = "pruned"  # finished more than ``retain`` ago and pruned


def prune_interval(retain: float) -> float:
    """How often a pass looks: a quarter of the window, between 250 ms and 30 s."""
    return min(max(retain / 4, 0.25), 30.0)


class Retention:
    """Not thread-safe: the planner's event loop owns it, as it owns PlannerState."""

    def __init__(self, retain: float) -> None:
        self.retain = retain
        self.undelivered: set[str] = set()  # finished requests whose client has not got the results
        self._waiting_since: dict[str, float] = {}  # undelivered and due: when first found so
        self._finished: deque[tuple[float, str]] = deque()  # (stamped, req_id), oldest first
        self._journal_only: set[str] = set()  # finished before a restart, not loaded into PlannerState
        self._apps_ended: dict[str, float] = {}  # app_id -> when it was first seen ended
        self._journal_apps: dict[str, float] = {}  # ended apps known from the journal only
        self._tombs: dict[str, float] = {}  # pruned req_id -> when; insertion order is time order
        self._next: float | None = None  # when the next pass is due (set by the first one)

    def pruned_message(self, what: str) -> str:
        return (f"{what} finished more than {format_duration(self.retain)} ago and was pruned "
                f"(the planner keeps finished work for --retain {format_duration(self.retain)})")

    # --- events in ---------------------------------------------------------------------------
    def collect(self, state: RetainedState, now: float) -> None:
        """Stamp the requests that finished since the last call."""
        if state.finished:
            self._finished.extend((now, rid) for rid in state.finished)
            state.finished.clear()

    def remember(self, req_ids: Iterable[str], app_ids: Iterable[str], now: float) -> None:
        """After a restart: finished requests and ended apps that are only in the journal."""
        for rid in req_ids:
            self._journal_only.add(rid)
            self._finished.append((now, rid))
        for app_id in app_ids:
            self._journal_apps[app_id] = now

    def remember_pruned(self, req_id: str, when: float) -> None:
        """After a restart: a tombstone from the journal (``when`` on this process's clock)."""
        self._tombs[req_id] = when

    def delivered(self, req_id: str) -> None:
        self.undelivered.discard(req_id)
        self._waiting_since.pop(req_id, None)

    # --- questions ---------------------------------------------------------------------------
    def lookup(self, req_id: str) -> Known | None:
        if req_id in self._journal_only:
            return Known.JOURNAL
        if req_id in self._tombs:
            return Known.PRUNED
        return None

    def sizes(self) -> dict[str, int]:
        return {"finished": len(self._finished), "tombstones": len(self._tombs), "undelivered": len(self.undelivered),
                "waiting": len(self._waiting_since),
                "journal_only": len(self._journal_only)}

    # --- the schedule of passes ----------------------------------------------------------------
    def next_pass(self, state: RetainedState) -> float | None:
        """When the next pass is due; None while there is nothing to look at (or before the first tick)."""
        pending = state.finished or self._finished or self._tombs or self._journal_apps or self._apps_ended
        return self._next if pending else None

    def tick(self, state: RetainedState, now: float) -> Pruned | None:
        """Run a pass if one is due at ``now``; the requests in the queue or on a granule are kept."""
        if not math.isfinite(self.retain) or (self._next is not None and now < self._next):
            return None
        self._next = now + prune_interval(self.retain)
        busy = set(state.queue)
        for granule in state.granules.values():
            busy.update(rid for rid, _ in granule.tasks)
        return self.prune(state, now, busy)

    # --- the decision ------------------------------------------------------------------------
    def prune(self, state: RetainedState, now: float, busy: set[str]) -> Pruned:
        """Forget what is due at ``now`` (PlannerState is changed); returns it, for the journal."""
        self.collect(state, now)
        out = Pruned()
        cutoff = now - self.retain
        later: list[tuple[float, str]] = []
        forget: list[str] = []
        while self._finished and self._finished[0][0] <= cutoff:
            _, rid = self._finished.popleft()
            req = state.requests.get(rid)
            if req is None:
                if rid in self._journal_only:
                    self._journal_only.discard(rid)
                    self._tombs[rid] = now
                    out.requests.append((rid, 0))
                continue  # already gone with its app
            app = state.apps.get(req.app_id)
            keep_app = app is not None and app.kind == AppKind.SCRIPT and app.state is AppState.RUNNING
            if rid in self.undelivered and now - self._waiting_since.setdefault(rid, now) >= ABANDON_FACTOR * self.retain:
                self.delivered(rid)  # its client did not come back: no longer worth the memory
            if rid in self.undelivered or rid in busy or keep_app:
                later.append((now, rid))  # looked at again one window from now
                continue
            forget.append(rid)
            self._tombs[rid] = now
            out.requests.append((rid, req.n))
        state.forget(forget)
        self._finished.extend(later)
        for app in list(state.apps.values()):
            if app.state is AppState.RUNNING:
                continue
            ended = self._apps_ended.setdefault(app.app_id, now)
            if ended <= cutoff and not app.requests:
                state.forget_app(app.app_id)
                del self._apps_ended[app.app_id]
                out.apps.append((app.app_id, app.kind, app.name, app.state.value))
        for app_id, ended in list(self._journal_apps.items()):
            if ended <= cutoff:
                del self._journal_apps[app_id]
                out.apps.append((app_id, "", "", ""))  # the journal keeps its kind, name and state
        while self._tombs:
            rid, when = next(iter(self._tombs.items()))
            if when > cutoff:
                break
            del self._tombs[rid]
        return out
