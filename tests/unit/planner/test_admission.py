"""The planner's admission rules, driven purely: a Hello (or a frame) in, a grant or a refusal out."""

from __future__ import annotations

import os

from granny.planner.admission import Ended, Scope, admit, answers, busy_claim, check
from granny.planner.state import Dispatch, PlannerState
from granny.transport import granule_credential, make_mac, task_grant
from granny.wire import (
    Cancel,
    Done,
    Hello,
    Kind,
    Log,
    MpiJoin,
    MpiWorld,
    Query,
    Role,
    Status,
    Submit,
    Waiting,
)

SECRET, TOKEN = "the-secret", "the-token"
NONCE = os.urandom(16)


def hello(role: Role, key: str | bytes, **fields: object) -> Hello:
    return Hello(role=role, mac=make_mac(key, NONCE, role.value.encode()), nonce=b"n", **fields)  # type: ignore[arg-type]


def running(app_id: str = "app-a") -> tuple[PlannerState, Dispatch]:
    s = PlannerState(5.0)
    s.register_host("h1", 1, 0.0)
    s.granule_connected("h1", "h1-g1", None)
    (d,) = s.submit("r1", app_id, 1)
    assert isinstance(d, Dispatch)
    return s, d


def test_each_role_has_its_own_key() -> None:
    s, ended = PlannerState(5.0), Ended()
    cred = granule_credential(SECRET, "h1", "h1-g1")
    assert admit(SECRET, TOKEN, NONCE, hello(Role.WORKER, SECRET, name="h1"), s, ended) == (SECRET, None)
    assert admit(SECRET, TOKEN, NONCE, hello(Role.CLIENT, TOKEN), s, ended) == (TOKEN, None)
    assert admit(SECRET, TOKEN, NONCE, hello(Role.GRANULE, cred, name="h1-g1", host_id="h1"), s, ended) == (
        cred, Scope("h1-g1", "h1"))
    refused = [
        hello(Role.WORKER, TOKEN, name="h1"), hello(Role.WORKER, cred, name="h1", host_id="h1"),
        hello(Role.CLIENT, SECRET),  # the secret is no client key
        hello(Role.GRANULE, SECRET, name="h1-g1", host_id="h1"), hello(Role.GRANULE, TOKEN, name="h1-g1", host_id="h1"),
        hello(Role.GRANULE, cred, name="h1-g2", host_id="h1"), hello(Role.GRANULE, cred, name="h1-g1", host_id="h2"),
        hello(Role.GRANULE, cred),
    ]
    for h in refused:
        assert isinstance(admit(SECRET, TOKEN, NONCE, h, s, ended), str), h


def test_an_exited_granule_is_refused() -> None:
    s, ended = PlannerState(5.0), Ended(limit=2)
    cred = granule_credential(SECRET, "h1", "h1-g1")
    ended.add("h1-g1")
    assert "exited" in str(admit(SECRET, TOKEN, NONCE, hello(Role.GRANULE, cred, name="h1-g1", host_id="h1"), s, ended))
    ended.add("x")
    ended.add("y")  # the oldest ages out of a bounded list
    assert "h1-g1" not in ended and "x" in ended


def test_a_granules_client_is_admitted_for_the_app_it_runs_only() -> None:
    s, _ = running("app-a")
    cred = granule_credential(SECRET, "h1", "h1-g1")
    ok = admit(SECRET, TOKEN, NONCE, hello(Role.CLIENT, cred, name="h1-g1", host_id="h1", app_id="app-a"), s, Ended())
    assert ok == (cred, Scope("h1-g1", "h1", "app-a"))
    for app in ("app-b", ""):
        h = hello(Role.CLIENT, cred, name="h1-g1", host_id="h1", app_id=app)
        assert "may submit only into" in str(admit(SECRET, TOKEN, NONCE, h, s, Ended()))
    idle = PlannerState(5.0)
    idle.register_host("h1", 1, 0.0)
    idle.granule_connected("h1", "h1-g1", None)
    h = hello(Role.CLIENT, cred, name="h1-g1", host_id="h1", app_id="app-a")
    assert isinstance(admit(SECRET, TOKEN, NONCE, h, idle, Ended()), str)


def test_what_a_scoped_connection_may_send() -> None:
    s, d = running("app-a")
    s.submit("r2", "app-b", 1)
    mine, other = Scope("h1-g1", "h1"), Scope("h1-g9", "h1")
    done = Done(req_id="r1", index=0, status=Status.OK)
    assert check(s, Role.GRANULE, mine, done, SECRET) == ""
    assert check(s, Role.GRANULE, mine, Log(req_id="r1", index=0, stream="stdout", data="x"), SECRET) == ""
    assert check(s, Role.GRANULE, other, done, SECRET)  # not its task: no forged results
    assert check(s, Role.GRANULE, mine, Done(req_id="r2", index=0, status=Status.OK), SECRET)
    assert check(s, Role.GRANULE, mine, Query(what="hosts"), SECRET)
    client = Scope("h1-g1", "h1", "app-a")
    sub = Submit(req_id="x", app_id="app-a", kind=Kind.PICKLED)
    assert check(s, Role.CLIENT, client, sub, SECRET) == ""
    assert check(s, Role.CLIENT, client, Submit(req_id="x", app_id="app-b", kind=Kind.PICKLED), SECRET)
    assert check(s, Role.CLIENT, client, Waiting(granule_id="h1-g1", waiting=True), SECRET) == ""
    assert check(s, Role.CLIENT, client, Waiting(granule_id="h1-g2", waiting=True), SECRET)
    assert check(s, Role.CLIENT, client, Cancel(app_id="app-a"), SECRET) == ""
    assert check(s, Role.CLIENT, client, Cancel(app_id="app-b"), SECRET)
    assert check(s, Role.CLIENT, client, Cancel(req_id="r2"), SECRET)  # a request of app-b
    assert check(s, Role.CLIENT, client, Query(what="hosts"), SECRET) == ""
    assert check(s, Role.CLIENT, client, Query(what="app", arg="app-a"), SECRET) == ""
    assert check(s, Role.CLIENT, client, Query(what="logs", arg="app-b"), SECRET)
    assert check(s, Role.CLIENT, client, Query(what="apps"), SECRET)
    assert check(s, Role.CLIENT, client, done, SECRET)


def test_a_planner_grant_lets_a_granule_report_its_task_to_a_planner_that_forgot_the_assignment() -> None:
    """After a restart the task is queued again and assigned to nobody: only the grant the old planner
    signed at dispatch lets its granule report it (exactly-once), and it names that granule only."""
    s = PlannerState(5.0)
    s.register_host("h1", 1, 0.0)
    s.restore("r1", "app-a", 1, [], "functions", "")
    s.submit("r2", "app-b", 1)
    mine = Scope("h1-g1", "h1")
    grant = task_grant(SECRET, "h1-g1", "r1", 0)
    done = Done(req_id="r1", index=0, status=Status.OK, grant=grant)
    assert check(s, Role.GRANULE, mine, done, SECRET) == ""
    assert check(s, Role.GRANULE, mine, Log(req_id="r1", index=0, stream="stdout", data="x", grant=grant), SECRET) == ""
    assert check(s, Role.GRANULE, mine, Done(req_id="r1", index=0, status=Status.OK), SECRET)  # no grant
    assert check(s, Role.GRANULE, Scope("h1-g2", "h1"), done, SECRET)  # another granule's grant
    assert check(s, Role.GRANULE, mine, Done(req_id="r2", index=0, status=Status.OK, grant=grant), SECRET)
    assert check(s, Role.GRANULE, mine, done, "another-secret")


def test_a_busy_claim_needs_the_grant() -> None:
    grant = task_grant(SECRET, "h1-g1", "r1", 3)
    claim = Hello(role=Role.GRANULE, mac=b"", nonce=b"", name="h1-g1", host_id="h1", busy_task="r1:3", busy_grant=grant)
    assert busy_claim(SECRET, claim) == ("r1", 3)
    for bad in ({"busy_grant": b""}, {"busy_task": "r1:2"}, {"name": "h1-g2"}, {"busy_task": "r1:x"},
                {"busy_task": ":"}):
        fields = {"name": "h1-g1", "busy_task": "r1:3", "busy_grant": grant} | bad
        assert busy_claim(SECRET, Hello(role=Role.GRANULE, mac=b"", nonce=b"", host_id="h1", **fields)) is None  # type: ignore[arg-type]


def test_a_refused_mpi_join_is_answered_so_the_rank_does_not_wait_for_ever() -> None:
    s, d = running()
    join = MpiJoin(req_id="r1", index=0, host_id="h1", pid=1, ip="127.0.0.1", port=1)
    why = check(s, Role.GRANULE, Scope("h1-g2", "h1"), join, SECRET)  # not the granule running rank 0
    assert why
    (answer,) = answers(join, why)
    assert isinstance(answer, MpiWorld) and answer.req_id == "r1" and not answer.ranks and "refused" in answer.error
    assert check(s, Role.GRANULE, Scope(d.granule_id, "h1"), join, SECRET) == ""
