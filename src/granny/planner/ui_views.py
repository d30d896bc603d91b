"""The dashboard's JSON: the hosts × slots grid, apps and calls, the queue with its reasons, one app's detail.

Read from the planner's state at the moment the page (or its event stream) asks; nothing here is kept
between two calls except when each app was first seen (its age), which the journal knows too.
Sizes are bounded: at most ``MAX_APPS`` apps (the running ones first) and ``MAX_QUEUE`` queue rows.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import TYPE_CHECKING, Any

from ..tunables import UI_MAX_APPS as MAX_APPS
from ..tunables import UI_MAX_ENDED as MAX_ENDED
from ..tunables import UI_MAX_QUEUE as MAX_QUEUE
from ..wire import Result, Status, decode_header
from . import batch, views
from .lifecycle import AppKind, GranuleState, TaskState

if TYPE_CHECKING:
    from .server import PlannerServer



class Ages:
    """When each app was created (wall clock), from the journal once, then remembered."""

    def __init__(self) -> None:
        self.created: dict[str, float] = {}

    def of(self, p: PlannerServer, app_ids: list[str], now: float) -> dict[str, float]:
        missing = [a for a in app_ids if a not in self.created]
        for i in range(0, len(missing), 500):
            chunk = missing[i:i + 500]
            rows = p.journal.query(f"SELECT app_id, created FROM apps WHERE app_id IN ({','.join('?' * len(chunk))})",
                                   tuple(chunk))
            self.created.update({r[0]: float(r[1]) for r in rows if r[1] is not None})
        for a in missing:  # not committed yet: it is new
            self.created.setdefault(a, now)
        if len(self.created) > 2 * len(app_ids) + 1000:  # apps the planner forgot (retention)
            self.created = {a: self.created[a] for a in app_ids}
        return self.created


def grid(p: PlannerServer) -> list[dict[str, Any]]:
    """Each host with one entry per slot: the app whose granule holds it, or None (free)."""
    st = p.state
    now = p.loop.time()
    out = []
    for h in st.hosts.values():
        held: list[str | None] = []
        for g in h.granules.values():
            if g.state is GranuleState.BUSY and not g.waiting and g.tasks:
                req = st.requests.get(g.tasks[0][0])
                held.append(req.app_id if req is not None else "?")
        held.sort(key=lambda a: a or "")
        held += [None] * max(0, h.slots - len(held))
        left = st.evictions.evicting_in(h.host_id, now)
        out.append({"host_id": h.host_id, "alive": h.alive, "slots": held if h.alive else [None] * h.slots,
                    "evicting_in": None if left is None else round(left, 1),
                    "evicted": h.host_id in st.evictions.evicted, "incarnation": h.incarnation})
    return out


def apps(p: PlannerServer, ages: Ages, wall: float) -> list[dict[str, Any]]:
    st = p.state
    rows = []
    created = ages.of(p, list(st.apps), wall)
    for a in st.apps.values():
        counts: Counter[str] = Counter(a.pruned)
        hosts: set[str] = set()
        deadline: float | None = None
        for rid in a.requests:
            req = st.requests[rid]
            for t in req.tasks:
                counts[t.state.value] += 1
                if t.state is TaskState.RUNNING:
                    hosts.add(t.host_id)
            d = st.batch.known.get(rid)
            if d is not None and math.isfinite(d.deadline):
                left = d.deadline - st.batch.now
                deadline = left if deadline is None else min(deadline, left)
        state = views._state(p, a.app_id)
        if state == "running" and not counts["running"]:
            # Nothing placed yet: queued. A client's calls, all ended (the client may send more): done.
            state = "queued" if counts["queued"] else "done" if a.kind == AppKind.FUNCTIONS else state
        rows.append({"app_id": a.app_id, "kind": a.kind, "name": a.name, "state": _shown(state),
                     "size": sum(counts.values()), "calls": dict(counts), "hosts": sorted(hosts),
                     "age": round(wall - created.get(a.app_id, wall), 1),
                     "deadline_in": None if deadline is None else round(deadline, 1)})
    rows.sort(key=lambda r: (r["state"] not in ("running", "queued", "frozen"), r["age"]))
    rows = rows[:MAX_APPS]
    known = set(st.apps)
    for app_id, kind, name, state, made in p.journal.query(
            "SELECT app_id, kind, name, state, created FROM apps WHERE state != 'running' "
            "ORDER BY updated DESC LIMIT ?", (MAX_ENDED,)):
        if app_id not in known:
            rows.append({"app_id": app_id, "kind": kind, "name": name, "state": _shown(state), "size": 0, "calls": {},
                         "hosts": [], "age": round(wall - (made or wall), 1), "deadline_in": None})
    return rows


def _shown(state: str) -> str:
    """The dashboard's five states: queued, running, frozen, done, failed (cancelled counts as failed)."""
    return {"succeeded": "done", "cancelled": "failed"}.get(state, state)


def queue(p: PlannerServer) -> list[dict[str, Any]]:
    """What waits, and why: the FIFO head waits for slots, the rest wait behind it; delay-tolerant calls
    wait for idle slots until their deadline."""
    st = p.state
    free = sum(max(0, h.slots - h.busy()) for h in st.hosts.values() if h.alive and h.host_id not in st.evicting)
    out: list[dict[str, Any]] = []
    head = ""
    for rid in st.queue:
        req = st.requests.get(rid)
        if req is None:
            continue
        waiting = sum(1 for t in req.tasks if t.state is TaskState.QUEUED)
        if not waiting:
            continue
        if not head:
            head = rid
            why = f"waiting for {waiting} slot{'s' if waiting != 1 else ''} ({free} free)"
        else:
            why = f"behind {st.requests[head].app_id} (first in, first out)"
        out.append({"req_id": rid, "app_id": req.app_id, "granules": waiting, "why": why})
        if len(out) >= MAX_QUEUE:
            return out
    for d in st.batch.waiting[:MAX_QUEUE - len(out)]:
        info = batch.describe(st, d.req_id)
        left = info.get("deadline_in")
        why = f"deadline in {left:.0f} s; runs in an idle slot" if isinstance(left, float) else "runs whenever a slot is idle"
        req = st.requests.get(d.req_id)
        out.append({"req_id": d.req_id, "app_id": req.app_id if req else "", "granules": 1, "why": why})
    return out


def summary(p: PlannerServer) -> dict[str, Any]:
    st = p.state
    alive = [h for h in st.hosts.values() if h.alive]
    busy = sum(h.busy() for h in alive)
    slots = sum(h.slots for h in alive)
    return {"hosts": len(alive), "hosts_known": len(st.hosts), "slots": slots, "busy": busy,
            "policy": st.policy.name,
            "apps_running": sum(1 for a in st.apps.values() if a.state.value == "running")}


def app_detail(p: PlannerServer, app_id: str) -> dict[str, Any]:
    """One app: its granules, last logs, migrations, errors and events. KeyError: unknown."""
    out = views.app(p, app_id)
    out["state"] = _shown(out["state"])
    logs = p.journal.query("SELECT id, req_id, idx, stream, data FROM logs WHERE app_id=? ORDER BY id DESC LIMIT 200",
                           (app_id,))
    out["logs"] = [{"id": r[0], "req_id": r[1], "index": r[2], "stream": r[3], "data": r[4]} for r in reversed(logs)]
    errors = []
    for rid in sorted({g["req_id"] for g in out["granules"]}):
        for idx, header in p.journal.query("SELECT idx, header FROM results WHERE req_id=?", (rid,)):
            res = decode_header(header)
            if isinstance(res, Result) and res.status is not Status.OK:
                errors.append({"req_id": rid, "index": idx, "kind": res.error_kind, "message": res.message})
    out["errors"] = errors[:100]
    out["events"] = [{"at": r[0], "kind": r[1], "text": r[2]} for r in p.journal.query(
        "SELECT at, kind, text FROM events WHERE app_id=? ORDER BY id DESC LIMIT 100", (app_id,))]
    return out
