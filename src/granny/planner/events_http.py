"""``GET /v1/events``: the planner's events as a JSON list (``?since=ID``) or a Server-Sent Events stream.

The stream (``Accept: text/event-stream``, or ``?follow=true``) first replays what came after ``since``
(or the ``Last-Event-ID`` a reconnecting browser sends), then follows live. Each message is
``id: N`` / ``event: KIND`` / ``data: {...}``; a comment line every ``KEEPALIVE`` seconds keeps proxies
from closing an idle stream. A stream whose reader falls far behind is ended (see event_feed.py); the
client reconnects from its last id and loses nothing the journal still keeps.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import msgspec
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from ..tunables import EVENTS_KEEPALIVE as KEEPALIVE
from ..tunables import EVENTS_MAX_LIMIT as MAX_LIMIT
from .http_input import flag, integer

if TYPE_CHECKING:
    from .server import PlannerServer

MAX_ID = 2**62


def sse(event: str, data: Any, event_id: int | None = None) -> bytes:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\n".encode() + b"data: " + msgspec.json.encode(data) + b"\n\n"


SSE_HEADERS = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}


def kinds_of(request: Request) -> tuple[str, ...]:
    raw = request.query_params.get("kind", "")
    return tuple(k for k in raw.split(",") if k)


async def list_or_stream(p: PlannerServer, request: Request) -> Response:
    since = integer(request, "since", 0, MAX_ID)
    limit = integer(request, "limit", 1000, MAX_LIMIT)
    kinds = kinds_of(request)
    follow = flag(request, "follow") or "text/event-stream" in request.headers.get("accept", "")
    if not follow:
        return Response(msgspec.json.encode(await p.feed.since(since, limit, kinds)), media_type="application/json")
    last = request.headers.get("last-event-id", "")
    if last:
        if not last.isdigit() or int(last) > MAX_ID:
            raise HTTPException(400, "Last-Event-ID must be an event id (a whole number)")
        since = int(last)
    return StreamingResponse(follow_events(p, since, kinds), media_type="text/event-stream", headers=SSE_HEADERS)


async def follow_events(p: PlannerServer, since: int, kinds: tuple[str, ...]) -> AsyncIterator[bytes]:
    q = p.feed.subscribe()  # before the replay: nothing falls between the two
    try:
        sent = since
        while True:  # the replay, in pages
            page = await p.feed.since(sent, MAX_LIMIT, kinds)
            for ev in page:
                yield sse(ev["kind"], ev, ev["id"])
            if len(page) < MAX_LIMIT:
                sent = max([sent, *(ev["id"] for ev in page)])
                break
            sent = page[-1]["id"]
        yield b": following\n\n"
        while True:
            try:
                batch = await asyncio.wait_for(q.get(), KEEPALIVE)
            except TimeoutError:
                yield b": keep-alive\n\n"
                continue
            if batch is None:
                return
            for ev in batch:
                if ev["id"] > sent and (not kinds or ev["kind"] in kinds):
                    sent = ev["id"]
                    yield sse(ev["kind"], ev, ev["id"])
    finally:
        p.feed.unsubscribe(q)
