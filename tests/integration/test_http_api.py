"""The planner's HTTP API against a real cluster (planner + one 2-slot worker), through httpx."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from granny.cluster import LocalCluster

from ..polling import wait_for

T = TypeVar("T")

SQUARE = "def main(x):\n    return x * x\n"
DIVIDE = "def main(x):\n    return 1 / x\n"
# Blocks until the file named by its input exists: lets a test hold granules busy without sleeping.
BLOCK = ("import os, time\n"
         "def main(path):\n"
         "    while not os.path.exists(path):\n"
         "        time.sleep(0.01)\n"
         "    return path\n")
FINAL = {"succeeded", "failed", "cancelled"}


def poll(predicate: Callable[[], T], what: str, timeout: float = 20.0) -> T:
    return wait_for(predicate, timeout, what)


def api_client(cluster: LocalCluster, token: str | None = "", fresh_connections: bool = False) -> httpx.Client:
    headers = {} if token is None else {"Authorization": f"Bearer {token or cluster.token}"}
    limits = httpx.Limits(max_keepalive_connections=0) if fresh_connections else httpx.Limits()
    return httpx.Client(base_url=f"http://{cluster.http_address}", headers=headers, timeout=30, limits=limits)


@pytest.fixture
def api(cluster: LocalCluster) -> Iterator[httpx.Client]:
    with api_client(cluster) as c:
        yield c


def register(api: httpx.Client, name: str, source: str, replace: bool = False, **extra: Any) -> None:
    r = api.post("/v1/functions", json={"name": name, "source": source, **extra},
                 params={"replace": "true"} if replace else {})
    assert r.status_code == 201, r.text
    assert r.json() == {"name": name, "entry": extra.get("entry", "main")}


def call_state(api: httpx.Client, call_id: str) -> dict[str, Any]:
    r = api.get(f"/v1/calls/{call_id}")
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    assert body["call_id"] == call_id
    return body


def wait_final(api: httpx.Client, call_id: str) -> dict[str, Any]:
    return poll(lambda: (lambda b: b if b["state"] in FINAL else None)(call_state(api, call_id)),
                f"call {call_id} to finish")


def assert_error(r: httpx.Response, status: int, *needles: str) -> None:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert set(body) == {"error"} and isinstance(body["error"], str) and body["error"]
    for needle in needles:
        assert needle in body["error"], body


# --- happy paths --------------------------------------------------------------------------------------
def test_register_and_invoke_waiting(api: httpx.Client) -> None:
    register(api, "square", SQUARE)
    assert "square" in api.get("/v1/functions").json()

    r = api.post("/v1/functions/square/invoke?wait=true", json={"input": 7})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["state"] == "succeeded" and body["result"] == 49 and body["error"] == ""
    assert call_state(api, body["call_id"])["result"] == 49

    r = api.post("/v1/functions/square/invoke?wait=1", json={"input": 1.5})
    assert r.json()["result"] == 2.25
    r = api.post("/v1/functions/square/invoke?wait=yes", json={"input": [1, 2]})
    assert r.json()["state"] == "failed" and "TypeError" in r.json()["error"]


def test_invoke_asynchronously_and_poll(api: httpx.Client, tmp_path: Path) -> None:
    register(api, "block", BLOCK)
    gate = tmp_path / "go"
    r = api.post("/v1/functions/block/invoke", json={"input": str(gate)})
    assert r.status_code == 202, r.text
    call_id = r.json()["call_id"]
    assert r.json()["state"] == "queued"
    poll(lambda: call_state(api, call_id)["state"] == "running", "the call to start")
    assert call_state(api, call_id)["result"] is None

    gate.touch()
    body = wait_final(api, call_id)
    assert body["state"] == "succeeded" and body["result"] == str(gate)


def test_wait_with_a_short_timeout_returns_202_with_the_current_state(api: httpx.Client, tmp_path: Path) -> None:
    register(api, "block", BLOCK)
    gate = tmp_path / "go"
    r = api.post("/v1/functions/block/invoke?wait=true&timeout=0.05", json={"input": str(gate)})
    assert r.status_code == 202, r.text
    assert r.json()["state"] in ("queued", "running")
    gate.touch()
    assert wait_final(api, r.json()["call_id"])["state"] == "succeeded"


def test_hosts_apps_and_queue(api: httpx.Client, tmp_path: Path) -> None:
    hosts = api.get("/v1/hosts").json()
    assert [(h["host_id"], h["slots"], h["alive"]) for h in hosts] == [("local", 2, True)]
    poll(lambda: api.get("/v1/hosts").json()[0]["idle_granules"] == 2, "two warm granules")
    assert api.get("/v1/queue").json() == []

    register(api, "block", BLOCK)
    gate = tmp_path / "go"
    calls = [api.post("/v1/functions/block/invoke", json={"input": str(gate)}).json()["call_id"] for _ in range(5)]
    # 2 slots: at least the last call has to wait, whatever runs or is lined up on the busy granules.
    queue = poll(lambda: api.get("/v1/queue").json(), "a queued call")
    assert queue[-1]["req_id"] == calls[-1]
    assert all(q["app_id"] == "fn-block" and q["granules"] == 1 and q["req_id"] in calls for q in queue)
    assert [q["position"] for q in queue] == list(range(len(queue)))
    hosts = poll(lambda: (lambda h: h if h[0]["used"] == 2 else None)(api.get("/v1/hosts").json()), "both slots used")
    assert hosts[0]["used"] <= hosts[0]["slots"]

    apps = {a["app_id"]: a for a in api.get("/v1/apps").json()}
    counts = apps["fn-block"]["tasks"]
    assert apps["fn-block"]["kind"] == "functions" and apps["fn-block"]["state"] == "running"
    assert sum(counts.values()) == 5 and counts["queued"] >= 1 and counts["succeeded"] == 0
    app = api.get("/v1/apps/fn-block").json()
    assert sorted(g["req_id"] for g in app["granules"]) == sorted(calls)

    gate.touch()
    assert all(wait_final(api, c)["state"] == "succeeded" for c in calls)
    assert api.get("/v1/queue").json() == []
    assert api.get("/v1/apps/fn-block").json()["tasks"]["succeeded"] == 5


def test_openapi_document(api: httpx.Client, cluster: LocalCluster) -> None:
    r = api.get("/openapi.json")
    assert r.status_code == 200
    doc = r.json()
    assert doc["openapi"].startswith("3.")
    assert {"/v1/functions", "/v1/functions/{name}/invoke", "/v1/calls/{call_id}", "/v1/hosts", "/v1/apps",
            "/v1/apps/{app_id}/cancel", "/v1/queue"} <= set(doc["paths"])
    assert {"FunctionSpec", "InvokeBody", "CallView", "ErrorBody"} <= set(doc["components"]["schemas"])
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    with api_client(cluster, token=None) as anon:
        assert_error(anon.get("/openapi.json"), 401)


# --- failures -----------------------------------------------------------------------------------------
def test_function_that_raises_fails_with_a_traceback(api: httpx.Client) -> None:
    register(api, "divide", DIVIDE)
    r = api.post("/v1/functions/divide/invoke?wait=true", json={"input": 0})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["state"] == "failed" and body["error_kind"] == "remote" and body["result"] is None
    assert body["error"].startswith("ZeroDivisionError")
    assert "Traceback" in body["traceback"] and "<function divide>\", line 2, in main" in body["traceback"]
    assert call_state(api, body["call_id"])["traceback"] == body["traceback"]
    # The granule survives its function raising.
    assert api.post("/v1/functions/divide/invoke?wait=true", json={"input": 4}).json()["result"] == 0.25


def check_entry_point_that_does_not_exist_fails_the_call(api: httpx.Client) -> None:
    register(api, "noentry", SQUARE, entry="nope")
    body = api.post("/v1/functions/noentry/invoke?wait=true", json={"input": 1}).json()
    assert body["state"] == "failed" and "nope" in body["error"]


def test_not_found_errors(api: httpx.Client) -> None:
    assert_error(api.post("/v1/functions/ghost/invoke", json={"input": 1}), 404, "ghost")
    assert_error(api.get("/v1/calls/call-nope"), 404, "call-nope")
    assert_error(api.get("/v1/apps/nope"), 404, "nope")
    assert_error(api.post("/v1/apps/nope/cancel"), 404, "nope")
    assert_error(api.get("/v1/no/such/route"), 404)
    assert api.get("/v1/apps/nope/logs").json() == []


def test_request_validation(api: httpx.Client) -> None:
    """One cluster for every 4xx check of a request body (they do not interfere)."""
    check_malformed_json_is_400(api)
    check_wrong_schema_for_register_is_422(api)
    check_wrong_schema_for_invoke_is_422(api)
    check_invalid_function_definitions_are_rejected(api)


def check_malformed_json_is_400(api: httpx.Client) -> None:
    register(api, "square", SQUARE)
    for path in ("/v1/functions", "/v1/functions/square/invoke"):
        for raw in (b"{", b"not json", b"\xff\xfe", b'{"'):
            assert_error(api.post(path, content=raw), 400, "malformed JSON")


WRONG_SCHEMAS: list[Any] = [
    {"name": 5, "source": "x = 1"},
    {"name": "f", "source": "x = 1", "surprise": True},
    {"name": "f", "source": ["x = 1"]},
    [],
    "just a string",
    {"source": "x = 1"},
]


def check_wrong_schema_for_register_is_422(api: httpx.Client) -> None:
    for body in WRONG_SCHEMAS:
        assert_error(api.post("/v1/functions", json=body), 422, "invalid request body")


def check_wrong_schema_for_invoke_is_422(api: httpx.Client) -> None:
    register(api, "square", SQUARE, replace=True)
    assert_error(api.post("/v1/functions/square/invoke", json={"inputs": 1}), 422)
    assert_error(api.post("/v1/functions/square/invoke", json=[1]), 422)
    assert_error(api.post("/v1/functions/square/invoke?wait=true&timeout=soon", json={"input": 1}), 400, "timeout")


INVALID_DEFINITIONS: list[tuple[dict[str, Any], int, str]] = [
    ({"name": "bad name", "source": SQUARE}, 422, "$.name"),
    ({"name": "1st", "source": SQUARE}, 422, "$.name"),
    ({"name": "x" * 200, "source": SQUARE}, 422, "$.name"),
    ({"name": "both", "source": SQUARE, "module": "math"}, 422, "exactly one"),
    ({"name": "neither"}, 422, "exactly one"),
    # Source that does not compile is a 400 that says where.
    ({"name": "syntax", "source": "def main(:\n"}, 400, "does not compile: SyntaxError: invalid syntax (line 1, column 10)"),
    ({"name": "indent", "source": "def main(x):\nreturn x\n"}, 400, "IndentationError"),
    ({"name": "nul", "source": "x = 1\x00"}, 400, "does not compile"),
]


def check_invalid_function_definitions_are_rejected(api: httpx.Client) -> None:
    for body, status, needle in INVALID_DEFINITIONS:
        assert_error(api.post("/v1/functions", json=body), status, needle)
    registered = api.get("/v1/functions").json()
    assert not [body["name"] for body, _, _ in INVALID_DEFINITIONS if body["name"] in registered]


def test_register_by_module_and_a_missing_entry_point(api: httpx.Client) -> None:
    check_entry_point_that_does_not_exist_fails_the_call(api)
    register_body = {"name": "sqrt", "module": "math", "entry": "sqrt"}
    assert api.post("/v1/functions", json=register_body).status_code == 201
    assert api.post("/v1/functions/sqrt/invoke?wait=true", json={"input": 16}).json()["result"] == 4.0


def test_authentication(cluster: LocalCluster) -> None:
    for token, needle in ((None, "missing bearer token"), ("wrong", "wrong token"), (cluster.token + "x", "wrong token")):
        with api_client(cluster, token=token) as c:
            for method, path in (("GET", "/v1/hosts"), ("POST", "/v1/functions"), ("GET", "/v1/nowhere")):
                assert_error(c.request(method, path, json={}), 401, needle)
    with api_client(cluster, token=None) as c:
        assert_error(c.get("/v1/hosts", headers={"Authorization": f"Basic {cluster.token}"}), 401)
        assert_error(c.get("/v1/hosts", headers={"Authorization": cluster.token}), 401)
        assert_error(c.get("/v1/hosts", headers={"Authorization": "Bearer"}), 401)
        assert c.get("/v1/hosts", headers={"Authorization": f"bearer {cluster.token}"}).status_code == 200


def test_cancel_an_app(api: httpx.Client, cluster: LocalCluster, tmp_path: Path) -> None:
    register(api, "block", BLOCK)
    gate = tmp_path / "never"
    calls = [api.post("/v1/functions/block/invoke", json={"input": str(gate)}).json()["call_id"] for _ in range(3)]
    poll(lambda: api.get("/v1/hosts").json()[0]["used"] == 2, "both slots busy")

    r = api.post("/v1/apps/fn-block/cancel")
    assert r.status_code == 200, r.text
    assert r.json() == {"app_id": "fn-block", "state": "cancelled"}
    for call_id in calls:
        body = wait_final(api, call_id)
        assert body["state"] == "cancelled" and body["error_kind"] == "cancelled"
    assert api.get("/v1/apps/fn-block").json()["state"] == "cancelled"
    # The killed granules are replaced: the host offers two idle granules again.
    poll(lambda: (lambda h: h["used"] == 0 and h["idle_granules"] == 2)(api.get("/v1/hosts").json()[0]),
         "the cancelled granules to be replaced")
    assert api.post("/v1/apps/fn-block/cancel").json()["state"] == "cancelled"  # idempotent


def test_app_logs_capture_prints(api: httpx.Client) -> None:
    register(api, "chatty", "import sys\ndef main(x):\n    print('out', x)\n    print('err', x, file=sys.stderr)\n")
    assert api.post("/v1/functions/chatty/invoke?wait=true", json={"input": 3}).json()["state"] == "succeeded"
    logs = poll(lambda: (lambda rows: rows if len(rows) >= 2 else None)(api.get("/v1/apps/fn-chatty/logs").json()),
                "both log lines")
    assert {(row["stream"], row["data"]) for row in logs} == {("stdout", "out 3\n"), ("stderr", "err 3\n")}
    assert api.get(f"/v1/apps/fn-chatty/logs?after={max(r['id'] for r in logs)}").json() == []
    assert_error(api.get("/v1/apps/fn-chatty/logs?after=soon"), 400, "after")


# --- inputs that once gave a 5xx -------------------------------------------------------------------------
def check_huge_log_cursor_is_a_client_error(api: httpx.Client) -> None:
    for after in ("99999999999999999999", "-99999999999999999999"):
        r = api.get(f"/v1/apps/x/logs?after={after}")
        assert 400 <= r.status_code < 500, r.text
        assert "error" in r.json()


def check_non_finite_timeout_is_a_client_error(api: httpx.Client, tmp_path: Path) -> None:
    register(api, "block", BLOCK)
    gate = tmp_path / "go"  # the call cannot finish before the timeout is used
    try:
        for timeout in ("nan", "inf", "-inf", "1e400"):
            r = api.post(f"/v1/functions/block/invoke?wait=true&timeout={timeout}", json={"input": str(gate)})
            assert 400 <= r.status_code < 500 or r.status_code == 202, (timeout, r.status_code, r.text)
    finally:
        gate.touch()


def check_deeply_nested_source_is_a_client_error(api: httpx.Client) -> None:
    for source in ("x = " + "1 + " * 100_000 + "1", "x = " + "-" * 100_000 + "1"):
        assert_error(api.post("/v1/functions", json={"name": "deep", "source": source}), 400, "does not compile")
    assert "deep" not in api.get("/v1/functions").json()


def test_inputs_that_once_gave_a_5xx(api: httpx.Client, tmp_path: Path) -> None:
    check_huge_log_cursor_is_a_client_error(api)
    check_non_finite_timeout_is_a_client_error(api, tmp_path)
    check_deeply_nested_source_is_a_client_error(api)


# --- junk never gives a 5xx -----------------------------------------------------------------------------
segment = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=12)
query_value = st.one_of(st.sampled_from(["", "0", "1", "-1", "true", "false", "1e3", "0.001", "x", "nan", "inf",
                                         "-inf", "1e400", "9" * 18, "9" * 25, "-" + "9" * 25]),
                        st.text(max_size=8))
json_value = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=6), kids, max_size=3),
    max_leaves=8,
)
json_body = st.one_of(
    json_value,
    st.fixed_dictionaries({}, optional={"name": st.one_of(st.sampled_from(["echo", "fuzzed", ""]), json_value),
                                        "source": st.one_of(st.sampled_from(["def main(x):\n    return x\n",
                                                                             "def main(:"]), json_value),
                                        "module": st.one_of(st.sampled_from(["math", "no_such_mod"]), json_value),
                                        "entry": json_value, "input": json_value}),
)


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, str, dict[str, str], bytes | None, Any]:
    x = draw(st.one_of(st.sampled_from(["echo", "fn-echo", "call-x", ".", ".."]), segment))
    path, method = draw(st.sampled_from([
        ("/v1/functions", "POST"), ("/v1/functions", "GET"), (f"/v1/functions/{x}/invoke", "POST"),
        ("/v1/functions/echo/invoke", "POST"), (f"/v1/calls/{x}", "GET"), (f"/v1/apps/{x}", "GET"),
        (f"/v1/apps/{x}/logs", "GET"), (f"/v1/apps/{x}/cancel", "POST"), ("/v1/apps", "GET"), ("/v1/hosts", "GET"),
        ("/v1/queue", "GET"), ("/openapi.json", "GET"), (f"/{x}", "GET"), (f"/v1/{x}", "POST"),
    ]))
    if draw(st.integers(0, 9)) == 0:
        method = draw(st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH"]))
    params = draw(st.dictionaries(st.sampled_from(["wait", "timeout", "after", "x"]), query_value, max_size=3))
    if params.get("wait", "").lower() in ("1", "true", "yes"):
        params["timeout"] = draw(st.sampled_from(["0", "0.01", "-5"]))  # never hold the fuzzer on a call
    if draw(st.booleans()):
        return method, path, params, draw(st.binary(max_size=200)), None
    return method, path, params, None, draw(json_body)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(req=requests())
def test_junk_requests_never_get_a_5xx(cluster: LocalCluster, req: tuple[str, str, dict[str, str], bytes | None, Any]) -> None:
    method, path, params, raw, body = req
    with api_client(cluster, fresh_connections=True) as c:
        if not getattr(cluster, "_fuzz_echo", False):
            register(c, "echo", "def main(x):\n    return x\n")
            cluster._fuzz_echo = True  # type: ignore[attr-defined]
        kwargs: dict[str, Any] = {"params": params}
        if raw is not None:
            kwargs["content"] = raw
        else:
            kwargs["json"] = body
        r = c.request(method, path, **kwargs)
    event(f"status {r.status_code}")
    assert r.status_code < 500, (method, path, params, raw, body, r.status_code, r.text)
    if r.status_code >= 400:
        assert "error" in r.json()
