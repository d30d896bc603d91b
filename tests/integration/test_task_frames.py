"""A task's body is one pickle frame (granny.serde: the GOB1 head carries the part count and lengths).
A malformed body is refused where it enters the planner -- checked against what is there before anything
is allocated for it or unpickled -- and costs only its sender's connection."""

from __future__ import annotations

import pickle
import re
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from granny import serde
from granny.errors import ConnectionLostError
from granny.transport import BlockingConn, dial
from granny.wire import Kind, Query, Reply, Role, Submit

from .netprocs import PlannerProc

GOOD = bytes(serde.frame([b"the function", b"the arguments"]))


def _head(count: int, lens: list[int]) -> bytes:
    return struct.pack("<4sI", serde.MAGIC, count) + b"".join(struct.pack("<Q", n) for n in lens)


@pytest.fixture(scope="module")
def planner(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PlannerProc]:
    p = PlannerProc(Path(tmp_path_factory.mktemp("frames")))  # no worker: nothing could run a task anyway
    yield p
    p.stop()


def _submit(planner: PlannerProc, req_id: str, body: bytes) -> BlockingConn:
    conn, _, _ = dial(planner.addr, Role.CLIENT, planner.token)
    conn.send(Submit(req_id=req_id, app_id=f"app-{req_id}", kind=Kind.PICKLED, fn_key="k"), [body])
    return conn


def _queued(planner: PlannerProc) -> str:
    conn, _, _ = dial(planner.addr, Role.CLIENT, planner.token)
    try:
        conn.send(Query(what="queue", qid=1))
        reply, _ = conn.recv()
        assert isinstance(reply, Reply) and not reply.error
        return bytes(reply.data).decode()
    finally:
        conn.close()


def test_a_well_formed_body_is_accepted(planner: PlannerProc) -> None:
    """The control: the same raw path with a good frame keeps its connection and queues the call."""
    conn = _submit(planner, "good-1", GOOD)
    try:
        conn.send(Query(what="queue", qid=7))
        reply, _ = conn.recv()
        assert isinstance(reply, Reply) and reply.qid == 7
    finally:
        conn.close()
    assert "good-1" in _queued(planner)


@pytest.mark.parametrize(("name", "body", "why"), [
    ("truncated", GOOD[:-3], "announces 25 bytes of parts, more than the 22 allowed"),
    ("head-only", _head(2, [5, 5]), "announces 10 bytes of parts, more than the 0 allowed"),
    ("oversized-length", _head(2, [4, 1 << 60]) + b"abcd", "announces [0-9]+ bytes of parts, more than the 4 allowed"),
    ("trailing", GOOD + b"xyz", "add up to 25 bytes, but 28 follow"),
    ("too-many-parts", _head(1 << 30, []), "parts \\(1 to"),
    ("table-cut-short", _head(3, [1]), "shorter than its table of 3 parts"),
    ("not-a-frame", pickle.dumps(("a bare", "pickle"), protocol=5), "not a pickle frame"),
])
def test_a_malformed_task_body_is_refused_and_costs_only_its_connection(planner: PlannerProc, name: str,
                                                                        body: bytes, why: str) -> None:
    conn = _submit(planner, f"bad-{name}", body)
    with pytest.raises(ConnectionLostError):
        conn.recv()  # the planner closed it: nothing is answered on a connection that sent garbage
    conn.close()
    assert f"bad-{name}" not in _queued(planner)  # never accepted; the planner answers others as before
    assert re.search(f"\\(client\\): .*{why}", planner.log()), planner.log()[-2000:]
