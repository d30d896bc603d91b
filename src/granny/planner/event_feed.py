"""The planner's events at its I/O edge: stamped, journaled, kept for a while, and fanned out to streams.

Theory of operation
- The pure state records :class:`~.events.Happened` in ``state.events``; its listener (set here) asks the
  loop to :meth:`EventFeed.flush` soon, once per batch, so one burst of events costs one wake-up. A flush
  stamps each event with the wall clock and the next id, queues it for the journal's ``events`` table
  (one table: the migration rows that ``granny status`` shows are events too), keeps the latest in
  memory and hands the batch to every subscriber (``GET /v1/events`` streams, the dashboard).
- Ids are this planner's: the next one follows the largest in the journal, so ``?since=ID`` works across
  a restart. The journal keeps at most ``Config.events_max`` of them; older rows are deleted in passes
  (one every ``min(PRUNE_EVERY, events_max)`` events, so there are never twice as many).
- A subscriber that does not keep up (its queue is full) is dropped, and its stream ends: the client
  reconnects with ``since`` and catches up from the journal. The planner never buffers without bound.
- The timelines of the dashboard (busy and idle slots, cross-host links, queue length) are sampled
  here every ``SAMPLE_EVERY`` seconds for the last hour. They live in memory only: a restarted planner
  starts a new hour.
Everything runs on the planner's event loop; nothing here is thread-safe.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter, deque
from typing import TYPE_CHECKING, Any, Protocol

from ..tunables import EVENTS_KEEP as KEEP
from ..tunables import EVENTS_PRUNE_EVERY as PRUNE_EVERY
from ..tunables import EVENTS_QUEUE_MAX as QUEUE_MAX
from ..tunables import SAMPLE_EVERY
from .events import Happened
from .lifecycle import TaskState
from .policies.base import links

if TYPE_CHECKING:
    from ..config import Config
    from .journal import Journal
    from .records import MigrationEvent
    from .state import PlannerState

SAMPLES = int(3600 / SAMPLE_EVERY)  # one hour


class FeedHost(Protocol):
    """What the feed uses of the server (server_protocol.Server names the feed, so it cannot be that)."""

    config: Config
    state: PlannerState
    journal: Journal
    loop: asyncio.AbstractEventLoop

    async def committed(self) -> None:
        """Returns once the rows queued for the journal are in it."""
        ...


class EventFeed:
    def __init__(self, p: FeedHost) -> None:
        self.p = p
        self.keep = p.config.events_max
        rows = p.journal.query("SELECT MAX(id) FROM events")
        self.last_id = int(rows[0][0] or 0)
        self.recent: deque[dict[str, Any]] = deque(maxlen=min(KEEP, self.keep))
        self.counts: Counter[str] = Counter()  # events by kind since the planner started (/metrics)
        self.subscribers: set[asyncio.Queue[list[dict[str, Any]] | None]] = set()
        self.samples: deque[dict[str, float]] = deque(maxlen=SAMPLES)
        self._due = False
        self._since_prune = 0
        p.state.events.on = True
        p.state.events.listener = self._wake
        self._sampler = p.loop.call_soon(self._sample)

    def _wake(self) -> None:
        if not self._due:
            self._due = True
            self.p.loop.call_soon(self.flush)

    def migration(self, ev: MigrationEvent) -> None:
        """A migration action the server carries out (kinds ``migration.*``; see migrating.py)."""
        self.p.state.events.add(Happened(f"migration.{ev.kind}", ev.text, ev.app_id, ev.req_id, data=ev.data))

    def flush(self) -> None:
        self._due = False
        batch = self.p.state.events.take()
        now = time.time()
        out = []
        for ev in batch:
            self.last_id += 1
            row = {"id": self.last_id, "at": now, "kind": ev.kind, "text": ev.text, "app_id": ev.app_id,
                   "req_id": ev.req_id, "host_id": ev.host_id, "data": ev.data}
            out.append(row)
            self.counts[ev.kind] += 1
            self.p.journal.event(ev.app_id, ev.req_id, ev.kind, ev.text, _with_host(ev), event_id=self.last_id, at=now)
        self.recent.extend(out)  # (an empty batch still tells the dashboards that something changed)
        self._since_prune += len(out)
        if self._since_prune >= min(PRUNE_EVERY, self.keep):
            self._since_prune = 0
            self.p.journal.drop_events(self.last_id - self.keep)
        for q in list(self.subscribers):
            if q.qsize() >= QUEUE_MAX:
                self.unsubscribe(q)
                q.put_nowait(None)  # too slow: its stream ends, and it catches up with ?since=
            else:
                q.put_nowait(out)

    def subscribe(self) -> asyncio.Queue[list[dict[str, Any]] | None]:
        q: asyncio.Queue[list[dict[str, Any]] | None] = asyncio.Queue()
        self.subscribers.add(q)
        self.p.state.events.watched = True
        return q

    def unsubscribe(self, q: asyncio.Queue[list[dict[str, Any]] | None]) -> None:
        self.subscribers.discard(q)
        self.p.state.events.watched = bool(self.subscribers)

    async def since(self, after: int, limit: int = 1000, kinds: tuple[str, ...] = ()) -> list[dict[str, Any]]:
        """Events with an id above ``after``, oldest first (at most ``limit``), from memory or the journal."""
        self.flush()
        if self.recent and self.recent[0]["id"] <= after + 1:
            out = [e for e in self.recent if e["id"] > after and (not kinds or e["kind"] in kinds)]
            return out[:limit]
        await self.p.committed()  # rows queued for the journal are in it
        sql = "SELECT id, at, kind, text, app_id, req_id, data FROM events WHERE id>?"
        args: tuple[Any, ...] = (after,)
        if kinds:
            sql += f" AND kind IN ({','.join('?' * len(kinds))})"
            args += kinds
        rows = self.p.journal.query(sql + " ORDER BY id LIMIT ?", (*args, limit))
        return [_row(r) for r in rows]

    def last_hour(self) -> list[dict[str, Any]]:
        """Events of the last hour kept in memory that the timelines mark (hosts and migrations)."""
        cut = time.time() - 3600
        return [e for e in self.recent if e["at"] >= cut and not e["kind"].startswith("app.")]

    def _sample(self) -> None:
        self._sampler = self.p.loop.call_later(SAMPLE_EVERY, self._sample)
        self.samples.append(sample(self.p))

    def close(self) -> None:
        self._sampler.cancel()
        for q in self.subscribers:
            q.put_nowait(None)
        self.subscribers.clear()


def sample(p: FeedHost) -> dict[str, float]:
    """One point of the timelines: busy and idle slots, cross-host links, requests waiting."""
    st = p.state
    busy = idle = 0
    for h in st.hosts.values():
        if h.alive:
            used = h.busy()
            busy += used
            idle += max(0, h.slots - used)
    total_links = 0
    for req in st.requests.values():
        if req.n > 1:
            per: Counter[str] = Counter(t.host_id for t in req.tasks if t.state is TaskState.RUNNING)
            total_links += links(per.values())
    waiting = sum(1 for r in st.queue if r in st.requests and not st.requests[r].final()) + len(st.batch.waiting)
    return {"t": round(time.time(), 3), "busy": busy, "idle": idle, "links": total_links, "queue": waiting}


def _with_host(ev: Happened) -> dict[str, Any]:
    return {**ev.data, "host_id": ev.host_id} if ev.host_id else ev.data


def _row(r: tuple[Any, ...]) -> dict[str, Any]:
    data = json.loads(r[6]) if r[6] else {}
    host = data.pop("host_id", "") if isinstance(data, dict) else ""
    return {"id": r[0], "at": r[1], "kind": r[2], "text": r[3], "app_id": r[4] or "", "req_id": r[5] or "",
            "host_id": host, "data": data}
