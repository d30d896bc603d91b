"""The HTTP API's schemas (msgspec structs) and its OpenAPI 3.1 document.

The document is what fuzzers (schemathesis in tests/integration/test_http_fuzz.py) test the API
against, so it must list every path parameter, every status an operation can return, and the
exact set of query values a handler accepts: a value the document rejects must be rejected (400)
by the handler too, and the other way round.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

import msgspec

from ..tunables import MAX_EVICTION_GRACE
from ..tunables import MAX_WAIT_TIMEOUT as MAX_TIMEOUT
from .policies import POLICIES

NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.-]{0,127}$"
ENTRY_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"
MODULE_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*){0,15}$"
FLAG_VALUES = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
MAX_LOG_ID = 2**63 - 1

CallState = Literal["queued", "running", "succeeded", "failed", "cancelled"]


class FunctionSpec(msgspec.Struct, forbid_unknown_fields=True):
    """A named function: Python ``source`` defining ``entry``, or an importable ``module``."""

    def __post_init__(self) -> None:
        # Python's "$" also matches before a final newline, JSON Schema's does not: "f\n" passes
        # msgspec's pattern check, so check the whole string again.
        for field in ("name", "entry", "module"):
            value = getattr(self, field)
            if value and not _FULL[field].fullmatch(value):
                raise ValueError(f"{field} {value!r} does not match {_FULL[field].pattern!r}")

    name: Annotated[str, msgspec.Meta(pattern=NAME_PATTERN)]
    entry: Annotated[str, msgspec.Meta(pattern=ENTRY_PATTERN)] = "main"
    source: Annotated[str, msgspec.Meta(min_length=1)] = ""  # exactly one of source and module
    module: Annotated[str, msgspec.Meta(pattern=MODULE_PATTERN, max_length=1024)] = ""
    # Its calls' default delay tolerance: 0 now, seconds > 0 a deadline, negative whenever (planner/batch.py).
    delay_tolerance: Annotated[float, msgspec.Meta(ge=-1e9, le=1e9)] = 0.0


_FULL = {"name": re.compile(NAME_PATTERN[1:-1]), "entry": re.compile(ENTRY_PATTERN[1:-1]),
         "module": re.compile(MODULE_PATTERN[1:-1])}


class InvokeBody(msgspec.Struct, forbid_unknown_fields=True):
    """The call's input, any JSON value (null when the body is empty), and its delay tolerance (null: the
    function's default; 0 now; seconds > 0: the result is due within that time; negative: whenever)."""

    input: Any = None
    delay_tolerance: Annotated[float, msgspec.Meta(ge=-1e9, le=1e9)] | None = None


class FunctionCreated(msgspec.Struct):
    name: str
    entry: str


class CallView(msgspec.Struct):
    call_id: str
    state: CallState
    result: Any = None
    error: str = ""
    error_kind: str = ""
    traceback: str = ""


class HostView(msgspec.Struct):
    host_id: str
    slots: int
    used: int
    idle_granules: int
    alive: bool
    last_heartbeat_age: float
    incarnation: int = 0
    evicting_in: float | None = None  # seconds left of its eviction notice (null: none)
    evicted: bool = False  # taken back at the end of a notice, and no worker registered for it since


class EvictBody(msgspec.Struct, forbid_unknown_fields=True):
    """An eviction notice: the host is taken back after ``grace`` seconds (0: at once; default: the planner's
    --eviction-grace)."""

    grace: Annotated[float, msgspec.Meta(ge=0, le=MAX_EVICTION_GRACE)] | None = None


class AppSummary(msgspec.Struct):
    app_id: str
    kind: str
    name: str
    state: str
    tasks: dict[str, int]


class GranuleView(msgspec.Struct):
    req_id: str
    index: int
    state: str
    host_id: str
    granule_id: str
    # A delay-tolerant call's (planner/batch.py describe): seconds to its deadline and of slack (null for
    # "whenever"), and how often it was preempted, of which frozen at a migration point.
    delay_tolerant: bool = False
    deadline_in: float | None = None
    slack: float | None = None
    waiting: bool = False
    paused: bool = False
    fused: bool = False
    preempted: int = 0
    frozen: int = 0
    delayed: bool = False


class AppView(msgspec.Struct):
    app_id: str
    kind: str
    name: str
    state: str
    tasks: dict[str, int]
    granules: list[GranuleView]


class LogLine(msgspec.Struct):
    id: int
    req_id: str
    index: int
    stream: str
    data: str


class QueueEntry(msgspec.Struct):
    position: int
    req_id: str
    app_id: str
    granules: int


class EventView(msgspec.Struct):
    """One planner event (see planner/events.py for the kinds)."""

    id: int
    at: float  # wall clock, seconds since the epoch
    kind: str
    text: str
    app_id: str
    req_id: str
    host_id: str
    data: dict[str, Any]


class AppCancelled(msgspec.Struct):
    app_id: str
    state: str


class PolicyChoice(msgspec.Struct, forbid_unknown_fields=True):
    """The policy to run from now on (journaled: a planner restart keeps it)."""

    name: str


class PolicyView(msgspec.Struct):
    policy: str
    policies: list[str]


class ErrorBody(msgspec.Struct):
    error: str


_SCHEMAS: list[Any] = [FunctionSpec, InvokeBody, FunctionCreated, CallView, list[HostView], list[AppSummary], AppView,
                       list[LogLine], list[QueueEntry], AppCancelled, ErrorBody, list[str], PolicyChoice, PolicyView,
                       HostView, EvictBody, list[EventView]]

WHY = {
    "400": "malformed JSON (syntax, invalid UTF-8, nested too deep), a bad query value, source that does not "
           "compile, or an unknown policy name",
    "401": "missing or wrong bearer token",
    "404": "no such function, call, app or host (or a path parameter that holds a '/')",
    "409": "a function of that name exists (pass ?replace=true)",
    "413": "request body or function source larger than the planner's limit",
    "422": "the JSON does not match the request schema",
}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema}}}


def _path(name: str, what: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "description": what, "schema": {"type": "string"}}


def _flag(name: str, what: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": what,
            "schema": {"type": "string", "enum": list(FLAG_VALUES)}}


def openapi_spec() -> dict[str, Any]:
    (fn, inv, created, call, hosts, apps, app, logs, queue, cancelled, err, names, choice, policy, host,
     evict, events), components = \
        msgspec.json.schema_components(_SCHEMAS, ref_template="#/components/schemas/{name}")
    components["FunctionSpec"]["oneOf"] = [{"required": ["source"]}, {"required": ["module"]}]
    # Any other string is a 400 (an unknown policy), not a 422: it is a name, not a malformed body.
    components["PolicyChoice"]["properties"]["name"]["enum"] = list(POLICIES)

    def op(summary: str, ok: dict[str, Any], *errors: str, status: str = "200", body: dict[str, Any] | None = None,
           params: list[dict[str, Any]] | None = None, also: dict[str, Any] | None = None) -> dict[str, Any]:
        responses: dict[str, Any] = {status: {"description": "OK", **_json(ok)}, **(also or {})}
        for code in ("401", *errors):
            responses[code] = {"description": WHY[code], **_json(err)}
        out: dict[str, Any] = {"summary": summary, "responses": dict(sorted(responses.items()))}
        if params:
            out["parameters"] = params
        if body is not None:
            out["requestBody"] = {"required": False, **_json(body)}
        return out

    app_id = _path("app_id", "an app id, e.g. fn-NAME for a registered function's calls")
    host_id = _path("host_id", "a host id, as GET /v1/hosts lists them")
    return {
        "openapi": "3.1.0",
        "info": {"title": "granny planner API", "version": "1",
                 "description": "Every operation needs 'Authorization: Bearer <token>'. Errors are {\"error\": \"...\"}."},
        "components": {"schemas": components, "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "security": [{"bearer": []}],
        "paths": {
            "/v1/functions": {
                "post": op("Register a named Python function", created, "400", "409", "413", "422", status="201",
                           body=fn, params=[_flag("replace", "replace an existing function of that name")]),
                "get": op("List registered functions", names),
            },
            "/v1/functions/{name}/invoke": {"post": op(
                "Invoke a function with JSON input (?wait=true blocks up to ?timeout seconds)", call,
                "400", "404", "413", "422", status="200", body=inv,
                params=[_path("name", "a registered function's name"),
                        _flag("wait", "wait for the call to finish (200), up to timeout; else 202 at once"),
                        {"name": "timeout", "in": "query", "required": False, "description": "seconds to wait",
                         "schema": {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_TIMEOUT}}],
                also={"202": {"description": "accepted; not finished (yet)", **_json(call)}})},
            "/v1/calls/{call_id}": {"get": op("Status and result of a call", call, "404",
                                              params=[_path("call_id", "as returned by invoke")])},
            "/v1/hosts": {"get": op("Hosts, slots, heartbeats and eviction notices", hosts)},
            "/v1/hosts/{host_id}/evict": {"post": op(
                "Give a host an eviction notice (a spot VM taken back after a grace period): no new work goes "
                "there, and at its end what still runs there fails and the host's worker stops", host,
                "400", "404", "413", "422", body=evict, params=[host_id])},
            "/v1/hosts/{host_id}/restore": {"post": op(
                "Lift a host's eviction notice (after its end: the host comes back when its worker registers again)",
                host, "404", params=[host_id])},
            "/v1/apps": {"get": op("Apps and their task counts", apps)},
            "/v1/apps/{app_id}": {"get": op("One app and its granules", app, "404", params=[app_id])},
            "/v1/apps/{app_id}/logs": {"get": op(
                "Captured stdout and stderr of an app, oldest first (empty for an unknown app)", logs, "400", "404",
                params=[app_id, {"name": "after", "in": "query", "required": False,
                                 "description": "only lines with a larger id",
                                 "schema": {"type": "integer", "minimum": 0, "maximum": MAX_LOG_ID}}])},
            "/v1/apps/{app_id}/cancel": {"post": op("Cancel an app", cancelled, "404", params=[app_id])},
            "/v1/queue": {"get": op("Requests waiting for slots, oldest first", queue)},
            "/v1/policy": {
                "get": op("The placement policy in use, and the ones to choose from", policy),
                "put": op("Run another placement policy from now on (journaled: a planner restart keeps it)", policy,
                          "400", "413", "422", body=choice),
            },
            "/v1/events": {"get": op(
                "Planner events, oldest first (with 'Accept: text/event-stream' or ?follow=true: a Server-Sent "
                "Events stream that then follows live)", events, "400",
                params=[{"name": n, "in": "query", "required": False, "description": what,
                         "schema": {"type": "integer", "minimum": 0, "maximum": top}}
                        for n, what, top in (("since", "only events with a larger id", 2**62),
                                             ("limit", "at most this many (default 1000)", 10_000))]
                + [{"name": "kind", "in": "query", "required": False, "schema": {"type": "string"},
                    "description": "only these kinds, comma-separated (e.g. host.died,migration.moved)"}])},
            "/openapi.json": {"get": op("This document", {"type": "object"})},
        },
    }
