"""The planner's HTTP/JSON API (Starlette on uvicorn, in the planner's own event loop).

Every endpoint needs ``Authorization: Bearer <token>``. Bodies are validated by msgspec schemas,
which also produce the OpenAPI document. Errors are ``{"error": "..."}`` with a 4xx status; a 5xx
is a bug.
"""

from __future__ import annotations

import asyncio
import hmac
import math
import re
from typing import Any

import msgspec
import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..errors import PrunedError
from . import views
from .retention import Known
from .server import PlannerServer

NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,127}$")


class FunctionSpec(msgspec.Struct, forbid_unknown_fields=True):
    """A named function: Python ``source`` defining ``entry``, or an importable ``module``."""

    name: str
    entry: str = "main"
    source: str = ""
    module: str = ""


class InvokeBody(msgspec.Struct, forbid_unknown_fields=True):
    input: Any = None


class CallView(msgspec.Struct):
    call_id: str
    state: str
    result: Any = None
    error: str = ""
    error_kind: str = ""
    traceback: str = ""


class ErrorBody(msgspec.Struct):
    error: str


def _json(data: Any, status: int = 200) -> Response:
    return Response(msgspec.json.encode(data), status_code=status, media_type="application/json")


def _err(status: int, message: str) -> Response:
    return _json({"error": message}, status)


async def _body(request: Request, schema: type[Any]) -> Any:
    raw = await request.body()
    try:
        return msgspec.json.decode(raw or b"{}", type=schema)
    except msgspec.ValidationError as exc:
        raise HTTPException(422, f"invalid request body: {exc}") from None
    except msgspec.DecodeError as exc:
        raise HTTPException(400, f"malformed JSON: {exc}") from None


def build_app(p: PlannerServer) -> Starlette:
    def call_view(call_id: str) -> CallView:
        states = p.task_states(call_id)
        found = p.call_result(call_id)
        if states is None and found is None:
            gone = p.retention.lookup(call_id) is Known.PRUNED
            raise HTTPException(404, p.retention.pruned_message(f"call {call_id!r}") if gone else f"no call {call_id!r}")
        if found is None:
            return CallView(call_id, (states or ["queued"])[0])
        res, payload = found
        if res.status.value == "ok":
            return CallView(call_id, "succeeded", result=msgspec.json.decode(payload) if payload else None)
        state = "cancelled" if res.error_kind == "cancelled" else "failed"
        return CallView(call_id, state, error=res.message, error_kind=res.error_kind, traceback=res.traceback)

    async def register(request: Request) -> Response:
        spec = await _body(request, FunctionSpec)
        if not NAME_RE.match(spec.name):
            raise HTTPException(422, f"invalid function name {spec.name!r}: use letters, digits, _ . -")
        if bool(spec.source) == bool(spec.module):
            raise HTTPException(422, "give exactly one of 'source' (Python code) or 'module' (an importable module)")
        if spec.source:
            try:
                compile(spec.source, f"<function {spec.name}>", "exec")
            except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
                raise HTTPException(422, f"source does not compile: {type(exc).__name__}: {exc}") from None
        p.register_function(spec.name, msgspec.to_builtins(spec))
        await p.committed()
        return _json({"name": spec.name, "entry": spec.entry}, 201)

    async def list_functions(request: Request) -> Response:
        return _json(sorted(p.functions))

    async def invoke(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in p.functions:
            raise HTTPException(404, f"no function named {name!r}; register it with POST /v1/functions")
        body = await _body(request, InvokeBody)
        wait = request.query_params.get("wait", "false").lower() in ("1", "true", "yes")
        try:
            timeout = float(request.query_params.get("timeout", "60"))
        except ValueError:
            timeout = math.nan
        if not 0 < timeout <= 3600:  # also refuses nan and inf
            raise HTTPException(400, "timeout must be a number of seconds in (0, 3600]")
        call_id = p.invoke(name, msgspec.json.encode(body.input))
        await p.committed()  # accepted means journaled: a planner crash now loses nothing
        if not wait:
            return _json({"call_id": call_id, "state": "queued"}, 202)
        try:
            await p.wait_call(call_id, timeout)
        except TimeoutError:
            return _json(call_view(call_id), 202)
        return _json(call_view(call_id))

    async def get_call(request: Request) -> Response:
        return _json(call_view(request.path_params["call_id"]))

    async def list_hosts(request: Request) -> Response:
        return _json(views.hosts(p))

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
        app_id = request.path_params["app_id"]
        try:
            after = int(request.query_params.get("after", "0"))
        except ValueError:
            after = -1
        if not 0 <= after < 2**63:
            raise HTTPException(400, "after must be a log id: an integer from 0 to 2^63-1")
        try:
            return _json(views.logs(p, app_id, after))
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

    async def openapi(request: Request) -> Response:
        return _json(openapi_spec())

    routes = [
        Route("/v1/functions", register, methods=["POST"]),
        Route("/v1/functions", list_functions, methods=["GET"]),
        Route("/v1/functions/{name}/invoke", invoke, methods=["POST"]),
        Route("/v1/calls/{call_id}", get_call, methods=["GET"]),
        Route("/v1/hosts", list_hosts, methods=["GET"]),
        Route("/v1/apps", list_apps, methods=["GET"]),
        Route("/v1/apps/{app_id}", get_app, methods=["GET"]),
        Route("/v1/apps/{app_id}/logs", app_logs, methods=["GET"]),
        Route("/v1/apps/{app_id}/cancel", cancel_app, methods=["POST"]),
        Route("/v1/queue", list_queue, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
    ]

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return _err(exc.status_code, str(exc.detail))

    async def internal_error(request: Request, exc: Exception) -> Response:
        return _err(500, f"internal error: {type(exc).__name__}: {exc}")

    app = Starlette(routes=routes, exception_handlers={HTTPException: http_error, Exception: internal_error})
    token = p.token.encode()

    async def auth(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            header = dict(scope["headers"]).get(b"authorization", b"")
            scheme, _, given = header.partition(b" ")
            if scheme.lower() != b"bearer" or not hmac.compare_digest(given.strip(), token):
                why = "missing bearer token" if not header else "wrong token"
                await _err(401, f"unauthorized: {why}; send 'Authorization: Bearer <token>'")(scope, receive, send)
                return
        await app(scope, receive, send)

    return auth  # type: ignore[return-value]


def openapi_spec() -> dict[str, Any]:
    (fn, inv, call, err), components = msgspec.json.schema_components(
        [FunctionSpec, InvokeBody, CallView, ErrorBody], ref_template="#/components/schemas/{name}")

    def op(summary: str, ok: dict[str, Any] | None = None, body: dict[str, Any] | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {"summary": summary, "responses": {
            "200": {"description": "OK", **({"content": {"application/json": {"schema": ok}}} if ok else {})},
            "401": {"description": "missing or wrong token", "content": {"application/json": {"schema": err}}},
            "404": {"description": "not found", "content": {"application/json": {"schema": err}}}}}
        if body is not None:
            out["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
        return out

    return {
        "openapi": "3.1.0",
        "info": {"title": "granny planner API", "version": "1"},
        "components": {"schemas": components,
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "security": [{"bearer": []}],
        "paths": {
            "/v1/functions": {"post": op("Register a named Python function", None, fn),
                              "get": op("List registered functions")},
            "/v1/functions/{name}/invoke": {"post": op("Invoke a function with JSON input (?wait=true blocks)",
                                                       call, inv)},
            "/v1/calls/{call_id}": {"get": op("Status and result of a call", call)},
            "/v1/hosts": {"get": op("Hosts, slots and heartbeats")},
            "/v1/apps": {"get": op("Apps and their task counts")},
            "/v1/apps/{app_id}": {"get": op("One app and its granules")},
            "/v1/apps/{app_id}/logs": {"get": op("Captured stdout and stderr of an app")},
            "/v1/apps/{app_id}/cancel": {"post": op("Cancel an app")},
            "/v1/queue": {"get": op("Requests waiting for slots, oldest first")},
        },
    }


class _QuietServer(uvicorn.Server):
    """The planner owns signal handling; uvicorn must not install its own."""

    def install_signal_handlers(self) -> None:
        pass


async def start_http(p: PlannerServer, bind: str, port: int) -> tuple[asyncio.Task[None], int]:
    config = uvicorn.Config(build_app(p), host=bind, port=port, log_level="warning", lifespan="off",
                            access_log=False)
    server = _QuietServer(config)
    task = asyncio.get_running_loop().create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    bound = server.servers[0].sockets[0].getsockname()[1]
    return task, int(bound)
