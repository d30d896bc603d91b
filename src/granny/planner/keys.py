"""Idempotency keys: a call submitted under a key that was used before is answered, not run again.

Theory of operation: the client turns the key into the request id (``Submit.keyed``), and the
planner already treats a known request id as the same call (a resubmission). What this adds: a
keyed id the planner no longer holds in memory (finished before a restart, or pruned) is looked up
in the journal's results, and when two callers wait on one key at once, the earlier one is not
forgotten when the later one becomes the request's owner. (So a keyed call gives its result to
the planner, never straight to one client's result lane.)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from ..errors import ErrorKind
from ..wire import Result, Status, Submit
from ..wire.framing import Buffer
from .journal import Journal


class Caller(Protocol):
    closed: bool

    def send(self, msg: Result, segments: Sequence[Buffer] = ()) -> None: ...


class KeyedCalls:
    def __init__(self, journal: Journal) -> None:
        self._journal = journal
        self._waiters: dict[str, list[Caller]] = {}

    def finished_before(self, msg: Submit) -> bool:
        """A keyed call not in memory: did an earlier planner finish it?"""
        rows = self._journal.query("SELECT count(*) FROM results WHERE req_id=?", (msg.req_id,))
        return bool(rows) and rows[0][0] >= msg.n

    def join(self, msg: Submit, earlier: Caller | None, later: Caller | None) -> None:
        """``later`` resubmits ``msg``, which ``earlier`` still waits on: if keyed, both get its outcome."""
        if msg.keyed and earlier is not None and not earlier.closed and earlier is not later:
            self._waiters.setdefault(msg.req_id, []).append(earlier)

    def deliver(self, res: Result, body: memoryview | bytes) -> None:
        if not self._waiters:
            return
        for waiter in self._waiters.pop(res.req_id, []):
            if waiter.closed:
                continue
            if len(body) == res.size:
                waiter.send(res, [body] if len(body) else [])
            else:  # a large value sent to the other caller only (it is not journaled either)
                waiter.send(Result(req_id=res.req_id, index=res.index, status=Status.ERROR, error_kind=ErrorKind.LOST,
                                   message="the result of this keyed call went to another client waiting on the "
                                           "same key; submit it again to read it", host_id=res.host_id))
