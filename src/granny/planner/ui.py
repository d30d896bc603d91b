"""The web dashboard under ``/ui/``: a login form, a session cookie, static files, its JSON and its live stream.

Theory of operation
- The token is posted once, in a form body (never in a URL), and traded for a random session id in an
  HTTP-only, ``SameSite=Strict`` cookie scoped to ``/ui`` (``Secure`` when the planner serves TLS). The
  planner keeps the ids in memory: a restart logs everyone out. The dashboard only reads, so the one
  state-changing request a forged page could send is a logout.
- Pages are plain HTML, CSS and ES modules (``planner/ui/``), read once at start-up and served with a
  strict Content-Security-Policy: no inline script, nothing from another origin.
- ``/ui/api/stream`` is a Server-Sent Events stream: one ``snapshot`` first (the grid, apps, queue,
  timelines and the last hour's events), then on every planner event the ``events`` and a fresh
  ``state``, at most every ``MIN_GAP`` seconds, and a ``state`` every ``PUSH_EVERY`` seconds even when
  nothing happened (slots used by plain function calls change without events). A ``state`` carries
  the apps table only when it was rebuilt since that page got it. The page never polls.
"""

from __future__ import annotations

import asyncio
import hmac
import secrets
import time
from collections.abc import AsyncIterator
from importlib import resources
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import msgspec
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from ..errors import PrunedError
from ..tunables import APPS_EVERY, FRESH, MAX_SESSIONS, MIN_GAP, PUSH_EVERY, SESSION_TTL
from . import ui_views
from .event_feed import sample
from .events_http import SSE_HEADERS, sse
from .http_input import read_body

if TYPE_CHECKING:
    from .server import PlannerServer

COOKIE = "granny_session"
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
STATIC = {"app.js": "text/javascript", "charts.js": "text/javascript", "grid.js": "text/javascript",
          "style.css": "text/css", "favicon.svg": "image/svg+xml"}


class Sessions:
    """Session ids and their expiry (the loop's clock). Owned by the event loop."""

    def __init__(self, ttl: float = SESSION_TTL, limit: int = MAX_SESSIONS) -> None:
        self.ttl, self.limit = ttl, limit
        self.ids: dict[str, float] = {}

    def new(self, now: float) -> str:
        self.ids = {k: v for k, v in self.ids.items() if v > now}
        while len(self.ids) >= self.limit:  # the oldest login goes first
            del self.ids[next(iter(self.ids))]
        sid = secrets.token_urlsafe(32)
        self.ids[sid] = now + self.ttl
        return sid

    def valid(self, sid: str, now: float) -> bool:
        return bool(sid) and self.ids.get(sid, 0.0) > now

    def end(self, sid: str) -> None:
        self.ids.pop(sid, None)


class Board:
    """What every dashboard shows, built at most every FRESH seconds and shared. The apps table (the
    costly part: ~15 ms at 1,000 apps) is rebuilt at most every APPS_EVERY seconds, unless events came."""

    def __init__(self, p: PlannerServer) -> None:
        self.p = p
        self.ages = ui_views.Ages()
        self._built = self.apps_built = float("-inf")
        self._state: dict[str, Any] = {}
        self._apps: list[dict[str, Any]] = []

    def state(self, events: bool = True) -> dict[str, Any]:
        """The grid, queue and summary; ``apps``: the apps table, and ``apps_built``: when it was built."""
        now = self.p.loop.time()
        if now - self.apps_built >= (FRESH if events else APPS_EVERY):
            self._apps, self.apps_built = ui_views.apps(self.p, self.ages, time.time()), now
            self._built = float("-inf")
        if now - self._built >= FRESH:
            self._state = {"at": time.time(), "summary": ui_views.summary(self.p), "hosts": ui_views.grid(self.p),
                           "apps": self._apps, "queue": ui_views.queue(self.p),
                           "current": sample(self.p)}  # the timelines' latest point, drawn until the next sample
            self._built = now
        return self._state

    def snapshot(self) -> dict[str, Any]:
        return {**self.state(), "samples": list(self.p.feed.samples), "marks": self.p.feed.last_hour(),
                "last_id": self.p.feed.last_id}


def _page(name: str) -> bytes:
    return resources.files("granny.planner").joinpath("ui", name).read_bytes()


def routes(p: PlannerServer) -> list[Route]:
    sessions = Sessions()
    board = Board(p)
    token = p.token.encode()
    secure = "; Secure" if p.config.tls_cert else ""
    files = {name: _page(name) for name in STATIC}
    index, login = _page("index.html"), _page("login.html")
    headers = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
               "Cache-Control": "no-store", "X-Frame-Options": "DENY"}

    def signed_in(request: Request) -> bool:
        return sessions.valid(request.cookies.get(COOKIE, ""), p.loop.time())

    def html(body: bytes, status: int = 200) -> Response:
        return Response(body, status, media_type="text/html; charset=utf-8", headers=headers)

    def denied() -> Response:
        return Response(msgspec.json.encode({"error": "not signed in: post the token to /ui/login"}), 401,
                        media_type="application/json", headers=headers)

    async def home(request: Request) -> Response:
        if request.url.path == "/ui":
            return RedirectResponse("/ui/", 308)
        return html(index) if signed_in(request) else html(login)

    async def do_login(request: Request) -> Response:
        form = parse_qs((await read_body(request, 4096)).decode("utf-8", "replace"))
        given = (form.get("token") or [""])[0].strip().encode()
        if not hmac.compare_digest(given, token):
            return html(login.replace(b'<p class="error" hidden>', b'<p class="error">'), 401)
        sid = sessions.new(p.loop.time())
        out = RedirectResponse("/ui/", 303, headers=headers)
        out.headers.append("Set-Cookie", f"{COOKIE}={sid}; HttpOnly; SameSite=Strict; Path=/ui; "
                                         f"Max-Age={int(SESSION_TTL)}{secure}")
        return out

    async def do_logout(request: Request) -> Response:
        sessions.end(request.cookies.get(COOKIE, ""))
        out = RedirectResponse("/ui/", 303, headers=headers)
        out.headers.append("Set-Cookie", f"{COOKIE}=; HttpOnly; SameSite=Strict; Path=/ui; Max-Age=0{secure}")
        return out

    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in files:
            return Response(b"not found", 404, media_type="text/plain")
        return Response(files[name], media_type=STATIC[name], headers={**headers, "Cache-Control": "no-cache"})

    async def snapshot(request: Request) -> Response:
        if not signed_in(request):
            return denied()
        return Response(msgspec.json.encode(board.snapshot()), media_type="application/json", headers=headers)

    async def app_detail(request: Request) -> Response:
        if not signed_in(request):
            return denied()
        try:
            body = ui_views.app_detail(p, request.path_params["app_id"])
        except (KeyError, PrunedError) as exc:
            return Response(msgspec.json.encode({"error": f"no app: {exc}"}), 404, media_type="application/json")
        return Response(msgspec.json.encode(body), media_type="application/json", headers=headers)

    async def stream(request: Request) -> Response:
        if not signed_in(request):
            return denied()
        return StreamingResponse(_follow(p, board), media_type="text/event-stream", headers={**headers, **SSE_HEADERS})

    return [
        Route("/ui", home, methods=["GET"]),
        Route("/ui/", home, methods=["GET"]),
        Route("/ui/login", do_login, methods=["POST"]),
        Route("/ui/logout", do_logout, methods=["POST"]),
        Route("/ui/static/{name}", static, methods=["GET"]),
        Route("/ui/api/snapshot", snapshot, methods=["GET"]),
        Route("/ui/api/apps/{app_id}", app_detail, methods=["GET"]),
        Route("/ui/api/stream", stream, methods=["GET"]),
    ]


async def _follow(p: PlannerServer, board: Board) -> AsyncIterator[bytes]:
    q = p.feed.subscribe()
    loop = p.loop
    try:
        yield sse("snapshot", board.snapshot())
        last_sample = p.feed.samples[-1]["t"] if p.feed.samples else 0.0
        pushed, apps_sent = loop.time(), board.apps_built
        while True:
            try:
                batch = await asyncio.wait_for(q.get(), PUSH_EVERY)
            except TimeoutError:
                batch = []
            else:
                wait = MIN_GAP - (loop.time() - pushed)
                if wait > 0:
                    await asyncio.sleep(wait)  # a burst of changes: one push for all of it
            if batch is None:
                return
            while not q.empty():
                more = q.get_nowait()
                if more is None:
                    return
                batch += more
            if batch:
                yield sse("events", batch)
            fresh = [s for s in p.feed.samples if s["t"] > last_sample]
            if fresh:
                last_sample = fresh[-1]["t"]
            state = board.state(events=bool(batch))
            if board.apps_built == apps_sent:  # this page has that apps table already
                state = {k: v for k, v in state.items() if k != "apps"}
            apps_sent = board.apps_built
            yield sse("state", {**state, "samples": fresh})
            pushed = loop.time()
    finally:
        p.feed.unsubscribe(q)
