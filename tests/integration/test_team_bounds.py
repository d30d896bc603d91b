"""A Submit whose ``team`` (planner/holds.py) is out of bounds, on a real planner: refused with a clear
error in the planner's log, nothing queued, and only the sender's connection lost; the client refuses a
negative team before anything is sent."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

import granny
from granny import serde
from granny.errors import ConnectionLostError
from granny.transport import BlockingConn, dial
from granny.wire import Kind, Query, Reply, Role, Submit

from .netprocs import PlannerProc

GOOD = bytes(serde.frame([b"the function", b"the arguments"]))


@pytest.fixture(scope="module")
def planner(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PlannerProc]:
    p = PlannerProc(Path(tmp_path_factory.mktemp("team")))  # no worker: a queued request stays queued
    yield p
    p.stop()


def _submit(planner: PlannerProc, req_id: str, team: int) -> BlockingConn:
    conn, _, _ = dial(planner.addr, Role.CLIENT, planner.token)
    conn.send(Submit(req_id=req_id, app_id=f"app-{req_id}", kind=Kind.PICKLED, fn_key="k", gang=True, team=team),
              [GOOD])
    return conn


def _query(conn: BlockingConn, what: str, qid: int) -> str:
    conn.send(Query(what=what, qid=qid))
    reply, _ = conn.recv()
    assert isinstance(reply, Reply) and reply.qid == qid and not reply.error
    return bytes(reply.data).decode()


def _queued(planner: PlannerProc) -> str:
    conn, _, _ = dial(planner.addr, Role.CLIENT, planner.token)
    try:
        return _query(conn, "queue", 1)
    finally:
        conn.close()


def test_an_in_bounds_team_is_queued(planner: PlannerProc) -> None:
    """The control: the same raw path with team=3 keeps its connection and queues the request."""
    conn = _submit(planner, "team-ok", 3)
    try:
        _query(conn, "queue", 7)
    finally:
        conn.close()
    assert "team-ok" in _queued(planner)


@pytest.mark.parametrize("team", [-1, -(1 << 62), 100_001, 1 << 62])
def test_an_out_of_bounds_team_is_refused_and_costs_only_its_connection(planner: PlannerProc, team: int) -> None:
    bystander, _, _ = dial(planner.addr, Role.CLIENT, planner.token)  # another app's open connection
    try:
        conn = _submit(planner, f"team-bad{team}", team)
        with pytest.raises(ConnectionLostError):
            conn.recv()  # the planner closed it: nothing is answered on a connection that sent garbage
        conn.close()
        assert f"team-bad{team}" not in _queued(planner)  # never accepted
        assert "team-ok" in _queued(planner)  # another app's queued request is untouched
        _query(bystander, "queue", 9)  # and another connection is still served
    finally:
        bystander.close()
    assert re.search(f"\\(client\\): .*a team of {team}\\) is out of bounds", planner.log()), planner.log()[-2000:]


def _noop() -> None:
    return None


@pytest.mark.parametrize("team", [-1, True, 1.5])
def test_the_client_refuses_a_bad_team_before_sending(planner: PlannerProc, team: object) -> None:
    with (granny.connect(planner.address, planner.token, app_id="client-side") as c,
          pytest.raises(ValueError, match="team >= 0")):
        c.submit_gang(_noop, 1, team=team)  # type: ignore[arg-type]
    assert "client-side" not in _queued(planner)
