"""Read-only JSON views of the planner, shared by the HTTP API and RPC queries."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError, PrunedError
from . import batch, selection
from .lifecycle import TaskState
from .policies import Freeze, Move

if TYPE_CHECKING:
    from .server_protocol import Server


def hosts(p: Server) -> list[dict[str, Any]]:
    return [host(p, h) for h in p.state.hosts]


def host(p: Server, host_id: str) -> dict[str, Any]:
    """One host's row; ``evicting_in``: seconds left of its eviction notice (None: none); ``evicted``: it
    was taken back at the end of one (and no worker registered for it since)."""
    h = p.state.hosts[host_id]
    now = p.loop.time()
    left = p.state.evictions.evicting_in(host_id, now)
    return {"host_id": h.host_id, "slots": h.slots, "used": h.busy(), "idle_granules": len(h.idle()),
            "alive": h.alive, "last_heartbeat_age": round(now - h.last_seen, 3), "incarnation": h.incarnation,
            "evicting_in": None if left is None else round(left, 3),
            "evicted": not h.alive and host_id in p.state.evictions.evicted}


def _counts(p: Server, app_id: str) -> dict[str, int]:
    a = p.state.apps[app_id]
    counts = {s.value: a.pruned.get(s.value, 0) for s in TaskState}  # pruned requests still count
    for rid in a.requests:
        for t in p.state.requests[rid].tasks:
            counts[t.state.value] += 1
    return counts


def apps(p: Server) -> list[dict[str, Any]]:
    out = [{"app_id": a.app_id, "kind": a.kind, "name": a.name, "state": _state(p, a.app_id), "tasks": _counts(p, a.app_id)}
           for a in p.state.apps.values()]
    known = set(p.state.apps)
    for app_id, kind, name, state in p.journal.query("SELECT app_id, kind, name, state FROM apps ORDER BY created"):
        if app_id not in known:
            out.append({"app_id": app_id, "kind": kind, "name": name, "state": state, "tasks": {}})
    return out


def app(p: Server, app_id: str) -> dict[str, Any]:
    a = p.state.apps.get(app_id)
    if a is None:
        rows = p.journal.query("SELECT kind, name, state FROM apps WHERE app_id=?", (app_id,))
        if not rows:
            _raise_if_pruned(p, app_id)
            raise KeyError(app_id)
        return {"app_id": app_id, "kind": rows[0][0], "name": rows[0][1], "state": rows[0][2], "tasks": {},
                "granules": []}
    granules = [
        {"req_id": rid, "index": i, "state": t.state.value, "host_id": t.host_id, "granule_id": t.granule_id,
         **batch.describe(p.state, rid)}  # a delay-tolerant call's deadline and slack
        for rid in a.requests[-200:] for i, t in enumerate(p.state.requests[rid].tasks)
    ]
    return {"app_id": a.app_id, "kind": a.kind, "name": a.name, "state": _state(p, app_id),
            "tasks": _counts(p, app_id), "granules": granules, "migrations": migrations(p, app_id)}


def _state(p: Server, app_id: str) -> str:
    """The app's state; a running app with a frozen world (its state stored, waiting for room) is "frozen"."""
    a = p.state.apps[app_id]
    reqs = [p.state.requests[r] for r in a.requests if r in p.state.requests]
    if a.state.value == "running" and any(r.frozen and not any(t.state is TaskState.RUNNING for t in r.tasks)
                                          for r in reqs):  # (a thawed call keeps its frozen generation until it ends)
        return "frozen"
    return a.state.value


def migrations(p: Server, app_id: str) -> list[dict[str, Any]]:
    """The app's completed migrations, oldest first (journaled events: they outlive a planner restart)."""
    rows = p.journal.query("SELECT at, req_id, text, data FROM events WHERE app_id=? AND kind='migration.moved' "
                           "ORDER BY id", (app_id,))
    out = [{**json.loads(r[3]), "at": r[0], "req_id": r[1], "text": r[2]} for r in rows]
    # The journal is written in batches: a move that just ended may not be committed yet, but the
    # planner remembers the recent ones of the requests it still has.
    seen = {(m["req_id"], m.get("gen")) for m in out}
    app = p.state.apps.get(app_id)
    for rid in app.requests if app is not None else []:
        for rec in p.state.migrations.history.get(rid, []):
            if (rid, rec["gen"]) not in seen:
                out.append({**{k: v for k, v in rec.items() if k != "at"}, "req_id": rid})  # "at": journal time only
    return out


def counters(p: Server) -> dict[str, Any]:
    """What the planner counted since it started (migration decisions, moves, refusals ...)."""
    return {"migration": dict(p.state.migrations.counts), "batch": dict(p.state.batch.counts)}


def queue(p: Server) -> list[dict[str, Any]]:
    out = []
    position = 0
    for rid in p.state.queue:
        req = p.state.requests[rid]
        waiting = sum(1 for t in req.tasks if t.state is TaskState.QUEUED)
        if not waiting:
            continue  # finished or placed; dropped from the queue lazily
        out.append({"position": position, "req_id": rid, "app_id": req.app_id, "granules": waiting})
        position += 1
        if position >= 1000:
            break
    return out


def _raise_if_pruned(p: Server, app_id: str) -> None:
    rows = p.journal.query("SELECT state FROM pruned_apps WHERE app_id=?", (app_id,))
    if rows:
        raise PrunedError(f"{p.retention.pruned_message(f'app {app_id}')}; it {rows[0][0]}")


def logs(p: Server, app_id: str, after: int = 0) -> list[dict[str, Any]]:
    if app_id not in p.state.apps:
        _raise_if_pruned(p, app_id)
    rows = p.journal.query("SELECT id, req_id, idx, stream, data FROM logs WHERE app_id=? AND id>? ORDER BY id",
                           (app_id, after))
    return [{"id": r[0], "req_id": r[1], "index": r[2], "stream": r[3], "data": r[4]} for r in rows]


def migration(p: Server, app_id: str) -> dict[str, Any]:
    """What the policy would do with a running app now (nothing acts on it yet)."""
    if app_id not in p.state.apps:
        _raise_if_pruned(p, app_id)
        raise KeyError(app_id)
    d = p.state.migration_decision(app_id, p.loop.time())
    if isinstance(d, Move):
        return {"decision": "move", "reason": d.reason, "counts": [list(c) for c in d.counts],
                "moves": [{"index": m.index, "source": m.source, "target": m.target} for m in d.moves]}
    return {"decision": "freeze" if isinstance(d, Freeze) else "stay", "reason": d.reason}


def query(p: Server, what: str, arg: str) -> Any:
    if what == "hosts":
        return hosts(p)
    if what == "apps":
        return apps(p)
    if what == "queue":
        return queue(p)
    if what == "waiting":  # how many requests wait for slots (up to 1,000), for granules: they may not see which
        return len(queue(p))
    if what == "app":
        return app(p, arg)
    if what == "logs":
        return logs(p, arg)
    if what == "migration":
        return migration(p, arg)
    if what == "counters":
        return counters(p)
    if what == "policy":
        return selection.describe(p.state.policy)
    raise ConfigError(f"unknown query {what!r}")
