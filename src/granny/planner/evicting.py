"""The planner server's side of eviction notices: the RPC queries, the HTTP API's calls, and StopWorker.

The rules are the pure state's (:mod:`granny.planner.eviction`); this module turns requests into its
events and carries out its StopWorker: the worker is told why, and its connection is closed. A notice
without a grace period gets ``Config.eviction_grace`` (``granny planner --eviction-grace``).
"""

from __future__ import annotations

import json
import logging
import time
from typing import TYPE_CHECKING, Any

from ..durations import parse_duration
from ..errors import ConfigError, GrannyError
from ..wire import Query, Reply
from ..wire import StopWorker as StopWorkerMsg
from . import views
from .eviction import Notice
from .records import StopWorker

if TYPE_CHECKING:
    from .conn import Conn
    from .server_protocol import Server

log = logging.getLogger("granny.planner")

# "evict": arg "HOST" (the default grace), "HOST:GRACE" (e.g. h2:30s, h2:0) or "HOST:off" (= "restore" HOST).
QUERIES = ("evict", "restore")
NOTICE = "eviction."  # journal setting per host under notice: "<deadline, wall clock>:<grace>" ("": none)


def evict(p: Server, host_id: str, grace: float | None = None) -> dict[str, Any]:
    """Give ``host_id`` an eviction notice; its row (see views.host). KeyError: no such host."""
    grace = p.config.eviction_grace if grace is None else grace
    actions = p.state.evict(host_id, p.loop.time(), grace)
    p.journal.setting(NOTICE + host_id, f"{time.time() + grace!r}:{grace!r}")  # wall clock: it outlives the loop's
    log.warning("host %s: eviction notice, taken back in %gs", host_id, grace)
    p.apply(actions)
    return views.host(p, host_id)


def restore(p: Server, host_id: str) -> dict[str, Any]:
    """Lift ``host_id``'s notice (or forget its eviction); its row. KeyError: no such host."""
    actions = p.state.restore_host(host_id)
    p.journal.setting(NOTICE + host_id, "")
    log.info("host %s: eviction notice lifted", host_id)
    p.apply(actions)
    return views.host(p, host_id)


def answer(p: Server, conn: Conn, msg: Query) -> None:
    host_id, _, grace = msg.arg.partition(":")
    try:
        if msg.what == "restore" or grace == "off":
            row = restore(p, host_id)
        else:
            row = evict(p, host_id, _grace(grace) if grace else None)
    except KeyError:
        conn.send(Reply(qid=msg.qid, data=b"null", error=f"no such host: {host_id!r}"))
        return
    except GrannyError as exc:
        conn.send(Reply(qid=msg.qid, data=b"null", error=str(exc)))
        return
    # Answered once the journal holds the notice (or its end): a planner killed after the answer keeps it.
    p.journal.call_after_commit(conn.send, Reply(qid=msg.qid, data=json.dumps(row).encode()))


def _grace(raw: str) -> float:
    """``60``, ``60s``, ``2m`` or ``0`` (at once)."""
    if raw.strip() in ("0", "0s", "0.0"):
        return 0.0
    try:
        return parse_duration(raw, "the grace period")
    except ConfigError:
        raise ConfigError(f"the grace period {raw!r} is not a duration (try 60s, 2m or 0)") from None


def restore_notices(p: Server, settings: dict[str, str]) -> None:
    """A restarted planner: the notices it had given hold again once their hosts register (see
    eviction.registered); those whose deadline passed while it was away are forgotten."""
    wall, now = time.time(), p.loop.time()
    for key, value in settings.items():
        if not key.startswith(NOTICE) or not value:
            continue
        host_id = key[len(NOTICE):]
        at_s, _, grace_s = value.partition(":")
        at, grace = float(at_s), float(grace_s)
        if at <= wall:
            p.journal.setting(key, "")
            continue
        p.state.evictions.restored[host_id] = Notice(host_id, now + (at - wall) - grace, grace)
        log.warning("host %s: its eviction notice still holds, taken back in %.1fs", host_id, at - wall)


def stop_worker(p: Server, action: StopWorker) -> None:
    log.warning("%s: stopping its worker", action.reason)
    p.journal.setting(NOTICE + action.host_id, "")
    worker = p.workers.pop(action.host_id, None)
    if worker is not None:  # the Kills of its granules went first, on the same connection
        worker.send(StopWorkerMsg(reason=action.reason))
        worker.close()
