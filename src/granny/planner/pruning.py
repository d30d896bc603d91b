"""The I/O side of retention: the server's per-request dicts, the journal, the heap.

retention.py decides what is due (PlannerState runs its passes from ``tick``); this module carries a
pass out on the planner's event loop. The
journal deletes its rows and gives the pages back on its own writer thread, so a prune never
blocks the loop on the disk.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..errors import ErrorKind
from ..tunables import TRIM_INTERVAL
from ..wire import Result, Status, Submit, decode_header
from .journal import Restored
from .retention import APP_TOMBSTONE_FACTOR, Pruned

if TYPE_CHECKING:
    from .conn import Conn
    from .server_protocol import Server

log = logging.getLogger("granny.planner")



def _libc_trim() -> Callable[[], object] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim: Callable[[int], object] = libc.malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None
    return lambda: trim(0)


_trim = _libc_trim()


class _Trim:
    """Pruned records free memory in the middle of the heap, which glibc keeps unless asked: without
    a trim, RSS stays at the high-water mark of the busiest moment (~1 ms per call, so rate-limited)."""

    def __init__(self) -> None:
        self.last = time.monotonic()

    def __call__(self) -> None:
        if _trim is not None and time.monotonic() - self.last >= TRIM_INTERVAL:
            self.last = time.monotonic()
            _trim()


_trimmer = _Trim()


def forget(p: Server, pruned: Pruned) -> None:
    """Carry out a retention pass of the state: drop the server's leftovers of it, queue the journal's part."""
    for rid, n in pruned.requests:
        p.payloads.pop(rid, None)
        p.waiters.pop(rid, None)
        p.stdin.pop(rid, None)
        for index in range(n):
            p.recent.pop((rid, index), None)
    wall, retain = time.time(), p.config.retain
    p.journal.prune([rid for rid, _ in pruned.requests], [a[0] for a in pruned.apps], wall - retain,
                    wall - APP_TOMBSTONE_FACTOR * retain)
    if pruned.requests:
        _trimmer()


def seed_retention(p: Server, restored: Restored) -> None:
    """After a restart: what the journal says finished (or was pruned) before it."""
    live = set()
    for req_id, _, header, _ in restored.requests:
        sub = decode_header(header)
        if isinstance(sub, Submit) and len(restored.finished.get(req_id, ())) < sub.n:
            live.add(req_id)
    now, wall = p.loop.time(), time.time()
    p.retention.remember([r for r in restored.all_requests if r not in live], restored.ended_apps, now)
    for req_id, when in restored.pruned:
        p.retention.remember_pruned(req_id, now - max(0.0, wall - when))


def answer_finished(p: Server, conn: Conn | None, msg: Submit, pruned: bool) -> None:
    """A client resubmitted a request that finished before: its results, or why they are gone."""
    if conn is None:
        return
    have = {row[0] for row in p.journal.query("SELECT idx FROM results WHERE req_id=?", (msg.req_id,))}
    if have:
        p._resend_finished(conn, msg.req_id)
    why = (p.retention.pruned_message(f"request {msg.req_id}") if pruned else
           f"request {msg.req_id} ended before the planner restarted and left no result for this task")
    for index in range(msg.n):
        if index not in have:
            conn.send(Result(req_id=msg.req_id, index=index, status=Status.ERROR,
                             error_kind=ErrorKind.PRUNED if pruned else ErrorKind.LOST, message=why))
