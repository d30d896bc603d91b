"""Captured output: every line journaled and streamed once, however often a granule sends it again.

Theory of operation: a granule numbers its output per run of a task (``Log.run``, ``Log.part``) and
sends unacknowledged parts again after a reconnect (:mod:`granny.worker.outbox`). Parts arrive in
order, so the planner keeps the highest part it took per (task, run) and drops anything not above
it. After a planner restart the journal is the memory: the first part of a task restored from the
journal is compared with the highest part the journal holds (journal commits are in order, so that
is a prefix). A client that streams a request's output and reconnects is sent what the journal
holds of it, then the live frames (held back meanwhile); it drops parts it printed already.
"""

from __future__ import annotations

from typing import Protocol

from ..tunables import TRACKED_MAX
from ..wire import Log, Submit
from .journal import Journal


class Owner(Protocol):
    closed: bool

    def send(self, msg: Log) -> None: ...


class Outputs:
    def __init__(self, journal: Journal) -> None:
        self._journal = journal
        self._parts: dict[tuple[str, int, str], int] = {}
        self._restored: set[str] = set()
        self._held: dict[str, list[Log]] = {}  # live frames waiting behind a replay, per request

    def restored(self, req_id: str) -> None:
        """``req_id`` was loaded from the journal: its tasks may have output there already."""
        self._restored.add(req_id)

    def take(self, app_id: str, msg: Log) -> bool:
        """Journal ``msg`` unless it was taken before; True if it is new."""
        if msg.part:
            key = (msg.req_id, msg.index, msg.run)
            last = self._parts.get(key)
            if last is None:
                last = self._journaled(key) if msg.req_id in self._restored else 0
            if msg.part <= last:
                return False
            self._parts[key] = msg.part
            if len(self._parts) > TRACKED_MAX:
                del self._parts[next(iter(self._parts))]
        self._journal.log(app_id, msg.req_id, msg.index, msg.stream, msg.data, msg.run, msg.part)
        return True

    def _journaled(self, key: tuple[str, int, str]) -> int:
        rows = self._journal.query("SELECT MAX(part) FROM logs WHERE req_id=? AND idx=? AND run=?", key)
        return int(rows[0][0] or 0) if rows else 0

    def task_done(self, req_id: str, index: int, run: str) -> None:
        """No more output comes from this run of the task (a Done follows its last Log)."""
        self._parts.pop((req_id, index, run), None)

    def forward(self, owner: Owner, msg: Log) -> None:
        held = self._held.get(msg.req_id)
        if held is not None:
            held.append(msg)
        elif not owner.closed:
            owner.send(msg)

    def resubscribe(self, owner: Owner | None, sub: Submit) -> None:
        """A client resubmitted ``sub``: if it streams the output, replay the journal, then go on live."""
        app_id, req_id = sub.app_id, sub.req_id
        if owner is None or not sub.stream_logs or req_id in self._held:
            return
        self._held[req_id] = []
        # Everything taken so far must be in the journal before it is read back.
        self._journal.call_after_commit(self._replay, owner, app_id, req_id)

    def _replay(self, owner: Owner, app_id: str, req_id: str) -> None:
        held = self._held.pop(req_id, [])
        if owner.closed:
            return
        rows = self._journal.query("SELECT idx, stream, data, run, part FROM logs WHERE app_id=? AND req_id=? "
                                   "ORDER BY id", (app_id, req_id))
        for idx, stream, data, run, part in rows:
            owner.send(Log(req_id=req_id, index=idx, stream=stream, data=data, run=run or "", part=part or 0))
        for msg in held:
            owner.send(msg)

