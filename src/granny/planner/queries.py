"""The RPC queries that the server does not answer from :func:`views.query` at once: those that change
something (``policy set``, ``evict``, ``restore``) or wait (``events``)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..tunables import EVENTS_PAGE, EVENTS_WAIT
from ..wire import Query, Reply
from . import evicting, selection

if TYPE_CHECKING:
    from .conn import Conn
    from .server_protocol import Server



def events(p: Server, conn: Conn, msg: Query) -> None:
    """``events``, arg ``SINCE`` or ``SINCE:wait``: the events after id SINCE (at most EVENTS_PAGE), oldest
    first. With ``:wait``, an empty answer waits for the next event (at most EVENTS_WAIT seconds): a long
    poll, which is how ``granny events --follow`` follows without asking again and again."""
    since, _, wait = msg.arg.partition(":")
    if not since.isdigit() or len(since) > 19 or wait not in ("", "wait"):
        conn.send(Reply(qid=msg.qid, data=b"null", error=f"events: bad argument {msg.arg!r} (SINCE or SINCE:wait)"))
        return
    p.loop.create_task(_events(p, conn, msg.qid, int(since), wait == "wait"))


async def _events(p: Server, conn: Conn, qid: int, since: int, wait: bool) -> None:
    q = p.feed.subscribe()  # before the first read: nothing falls between the two
    try:
        rows = await p.feed.since(since, EVENTS_PAGE)
        deadline = p.loop.time() + EVENTS_WAIT
        while wait and not rows and not conn.closed and (left := deadline - p.loop.time()) > 0:
            try:
                if await asyncio.wait_for(q.get(), left) is None:
                    break
            except TimeoutError:
                break
            rows = await p.feed.since(since, EVENTS_PAGE)
    finally:
        p.feed.unsubscribe(q)
    conn.send(Reply(qid=qid, data=json.dumps(rows).encode()))


ANSWERS: dict[str, Callable[[Server, Conn, Query], None]] = {
    selection.SET_QUERY: selection.answer_set,
    **dict.fromkeys(evicting.QUERIES, evicting.answer),
    "events": events,
}
