"""The planner's HTTP/JSON API (Starlette on uvicorn, in the planner's own event loop).

Every endpoint needs ``Authorization: Bearer <token>``. Bodies are size-limited and validated by
msgspec schemas (:mod:`.http_input`), which also produce the OpenAPI document (:mod:`.openapi`).
Errors are ``{"error": "..."}`` with a 4xx status; a 5xx is a bug. Nothing slow runs on the event
loop: a registered function's source is compiled in a child process (:mod:`.compiler`).
"""

from __future__ import annotations

import asyncio
import hmac
from typing import Any

import msgspec
import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .. import serde
from ..errors import ConfigError, ConflictError, ErrorKind, PrunedError
from ..tunables import MAX_WAIT_TIMEOUT as MAX_TIMEOUT
from . import events_http, evicting, metrics, selection, ui, views
from .compiler import SourceChecker
from .http_input import decode, flag, integer, number, read_body, too_large
from .openapi import (
    MAX_LOG_ID,
    CallState,
    CallView,
    EvictBody,
    FunctionSpec,
    InvokeBody,
    PolicyChoice,
    openapi_spec,
)
from .retention import Known
from .server import PlannerServer

__all__ = ["build_app", "openapi_spec", "start_http"]


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(msgspec.json.encode(data), status_code=status, media_type="application/json", headers=headers)


def _err(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return _json({"error": message}, status, headers)


def build_app(p: PlannerServer) -> Starlette:
    checker = SourceChecker(timeout=p.config.compile_timeout)
    max_body = p.config.http_max_body
    max_source = p.config.http_max_source

    async def call_view(call_id: str) -> CallView:
        found = p.call_result(call_id)
        if found is None and p.is_final(call_id):
            await p.committed()  # a result too large for the recent cache is read from the journal
            found = p.call_result(call_id)
        states = p.task_states(call_id)
        if states is None and found is None:
            gone = p.retention.lookup(call_id) is Known.PRUNED
            raise HTTPException(404, p.retention.pruned_message(f"call {call_id!r}") if gone else f"no call {call_id!r}")
        if found is None:
            return CallView(call_id, (states or ["queued"])[0])  # type: ignore[arg-type]
        res, payload = found
        if res.status.value == "ok":
            # The granule encoded the result as JSON; pass it through rather than decode and re-encode it.
            return CallView(call_id, "succeeded", result=msgspec.Raw(bytes(serde.unframe(payload)[0])) if payload else None)
        state: CallState = "cancelled" if res.error_kind == ErrorKind.CANCELLED else "failed"
        return CallView(call_id, state, error=res.message, error_kind=res.error_kind, traceback=res.traceback)

    async def register(request: Request) -> Response:
        replace = flag(request, "replace")
        spec: FunctionSpec = decode(await read_body(request, max_body), FunctionSpec)
        if bool(spec.source) == bool(spec.module):
            raise HTTPException(422, "give exactly one of 'source' (Python code) or 'module' (an importable module)")
        if spec.name in p.functions and not replace:  # refuse before paying for a compile
            raise HTTPException(409, f"a function named {spec.name!r} is already registered; "
                                     "pass ?replace=true to replace it")
        if spec.source:
            size = len(spec.source.encode("utf-8", "surrogatepass"))
            if size > max_source:
                raise too_large("a function source", size, max_source)
            problem = await checker.check(f"<function {spec.name}>", spec.source)
            if problem is not None:
                raise HTTPException(400, f"source does not compile: {problem}")
        try:
            p.register_function(spec.name, msgspec.to_builtins(spec), replace=replace)
        except ConflictError as exc:  # registered by another request while this one compiled
            raise HTTPException(409, str(exc)) from None
        await p.committed()
        return _json({"name": spec.name, "entry": spec.entry}, 201)

    async def functions(request: Request) -> Response:
        if request.method == "POST":
            return await register(request)
        return _json(sorted(p.functions))

    async def invoke(request: Request) -> Response:
        name = request.path_params["name"]
        wait = flag(request, "wait")
        timeout = number(request, "timeout", 60.0, MAX_TIMEOUT)
        if name not in p.functions:
            raise HTTPException(404, f"no function named {name!r}; register it with POST /v1/functions")
        body: InvokeBody = decode(await read_body(request, max_body), InvokeBody)
        call_id = p.invoke(name, msgspec.json.encode(body.input), body.delay_tolerance)
        del body
        refused = p.call_result(call_id)
        if refused is not None and refused[0].error_kind == ErrorKind.DEADLINE:  # refused at once: say so, do not queue
            raise HTTPException(422, refused[0].message)
        await p.committed()  # accepted means journaled: a planner crash now loses nothing
        if not wait:
            return _json({"call_id": call_id, "state": "queued"}, 202)
        try:
            await p.wait_call(call_id, timeout)
        except TimeoutError:
            return _json(await call_view(call_id), 202)
        return _json(await call_view(call_id))

    async def get_call(request: Request) -> Response:
        return _json(await call_view(request.path_params["call_id"]))

    async def list_hosts(request: Request) -> Response:
        return _json(views.hosts(p))

    async def evict_host(request: Request) -> Response:
        host_id = request.path_params["host_id"]
        body: EvictBody = decode(await read_body(request, max_body), EvictBody)
        try:
            return _json(evicting.evict(p, host_id, body.grace))
        except KeyError:
            raise HTTPException(404, f"no host {host_id!r}") from None

    async def restore_host(request: Request) -> Response:
        host_id = request.path_params["host_id"]
        try:
            return _json(evicting.restore(p, host_id))
        except KeyError:
            raise HTTPException(404, f"no host {host_id!r}") from None

    async def list_apps(request: Request) -> Response:
        return _json(views.apps(p))

    async def get_app(request: Request) -> Response:
        try:
            return _json(views.app(p, request.path_params["app_id"]))
        except PrunedError as exc:
            raise HTTPException(404, str(exc)) from None
        except KeyError:
            raise HTTPException(404, f"no app {request.path_params['app_id']!r}") from None

    async def app_logs(request: Request) -> Response:
        after = integer(request, "after", 0, MAX_LOG_ID)
        try:
            return _json(views.logs(p, request.path_params["app_id"], after))
        except PrunedError as exc:
            raise HTTPException(404, str(exc)) from None

    async def cancel_app(request: Request) -> Response:
        app_id = request.path_params["app_id"]
        if app_id not in p.state.apps:
            raise HTTPException(404, f"no running app {app_id!r}")
        p.cancel(app_id=app_id)
        return _json({"app_id": app_id, "state": p.state.apps[app_id].state.value})

    async def list_queue(request: Request) -> Response:
        return _json(views.queue(p))

    async def policy(request: Request) -> Response:
        if request.method == "PUT":
            choice: PolicyChoice = decode(await read_body(request, max_body), PolicyChoice)
            try:
                p.set_policy(choice.name)
            except ConfigError as exc:
                raise HTTPException(400, str(exc)) from None
            await p.committed()  # answered once journaled: a planner restart keeps it
        return _json(selection.describe(p.state.policy))

    async def openapi(request: Request) -> Response:
        return _json(openapi_spec())

    async def prometheus(request: Request) -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST

        return Response(metrics.render(p), media_type=CONTENT_TYPE_LATEST)

    async def events(request: Request) -> Response:
        return await events_http.list_or_stream(p, request)

    # One Route per path, so that a 405 lists every method of the path in its Allow header.
    routes = [
        Route("/v1/functions", functions, methods=["GET", "POST"]),
        Route("/v1/functions/{name}/invoke", invoke, methods=["POST"]),
        Route("/v1/calls/{call_id}", get_call, methods=["GET"]),
        Route("/v1/hosts", list_hosts, methods=["GET"]),
        Route("/v1/hosts/{host_id}/evict", evict_host, methods=["POST"]),
        Route("/v1/hosts/{host_id}/restore", restore_host, methods=["POST"]),
        Route("/v1/apps", list_apps, methods=["GET"]),
        Route("/v1/apps/{app_id}", get_app, methods=["GET"]),
        Route("/v1/apps/{app_id}/logs", app_logs, methods=["GET"]),
        Route("/v1/apps/{app_id}/cancel", cancel_app, methods=["POST"]),
        Route("/v1/queue", list_queue, methods=["GET"]),
        Route("/v1/policy", policy, methods=["GET", "PUT"]),
        Route("/openapi.json", openapi, methods=["GET"]),
        Route("/metrics", prometheus, methods=["GET"]),
        Route("/v1/events", events, methods=["GET"]),
        *ui.routes(p),  # the dashboard: signed in by its own session cookie (see ui.py)
    ]

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return _err(exc.status_code, str(exc.detail), dict(exc.headers or {}))

    async def internal_error(request: Request, exc: Exception) -> Response:
        return _err(500, f"internal error: {type(exc).__name__}: {exc}")

    app = Starlette(routes=routes, exception_handlers={HTTPException: http_error, Exception: internal_error})
    # "/v1/apps/" must be a 404, not a redirect to "/v1/apps", another operation with another schema.
    app.router.redirect_slashes = False
    token = p.token.encode()

    async def auth(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and not (scope["path"] == "/ui" or scope["path"].startswith("/ui/")):
            header = dict(scope["headers"]).get(b"authorization", b"")
            scheme, _, given = header.partition(b" ")
            if scheme.lower() != b"bearer" or not hmac.compare_digest(given.strip(), token):
                why = "missing bearer token" if not header else "wrong token"
                await _err(401, f"unauthorized: {why}; send 'Authorization: Bearer <token>'")(scope, receive, send)
                return
            if b"%2f" in scope.get("raw_path", b"").lower():
                # Routing sees the decoded path: "/v1/apps/x%2Flogs" would reach another operation.
                await _err(404, "no such resource: a path parameter must not contain '/'")(scope, receive, send)
                return
        await app(scope, receive, send)

    return auth  # type: ignore[return-value]


class _QuietServer(uvicorn.Server):
    """The planner owns signal handling; uvicorn must not install its own."""

    def install_signal_handlers(self) -> None:
        pass


async def start_http(p: PlannerServer, bind: str, port: int, tls_cert: str = "", tls_key: str = ""
                     ) -> tuple[asyncio.Task[None], int]:
    """Serve the API in this loop (HTTPS when given a certificate and key); returns the task and the port."""
    config = uvicorn.Config(build_app(p), host=bind, port=port, log_level="warning", lifespan="off",
                            access_log=False, ssl_certfile=tls_cert or None, ssl_keyfile=tls_key or None)
    server = _QuietServer(config)
    task = asyncio.get_running_loop().create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    bound = server.servers[0].sockets[0].getsockname()[1]
    return task, int(bound)
