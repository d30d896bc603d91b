"""BlockingConn.send_soon: a burst of frames leaves in few writes, a lone frame at once, order kept."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from granny.transport.blocking import BlockingConn
from granny.wire import Cancel, Query


@pytest.fixture
def pair() -> Iterator[tuple[BlockingConn, BlockingConn]]:
    a, b = socket.socketpair()
    with a, b:
        yield BlockingConn(a), BlockingConn(b)


def _readable(conn: BlockingConn) -> bool:
    return conn.ready()


def test_lone_frame_goes_at_once_and_a_burst_is_held_until_flush(pair: tuple[BlockingConn, BlockingConn]) -> None:
    tx, rx = pair
    assert tx.send_soon(Query(what="a", qid=1), (), window=10.0, max_frames=100) is None  # lone: sent
    assert rx.recv()[0] == Query(what="a", qid=1)
    deadline = tx.send_soon(Query(what="b", qid=2), (), window=10.0, max_frames=100)  # within the window
    assert deadline is not None and deadline > time.monotonic()
    assert not _readable(rx)  # held back
    tx.flush()
    assert rx.recv()[0] == Query(what="b", qid=2)


def test_a_full_burst_is_written_in_one_go(pair: tuple[BlockingConn, BlockingConn]) -> None:
    tx, rx = pair
    tx.send_soon(Query(what="x", qid=0), (), window=10.0, max_frames=3)  # sent (first)
    assert tx.send_soon(Query(what="x", qid=1), (), window=10.0, max_frames=3) is not None
    assert tx.send_soon(Query(what="x", qid=2), (), window=10.0, max_frames=3) is not None
    assert tx.send_soon(Query(what="x", qid=3), (), window=10.0, max_frames=3) is None  # third held: written
    assert [rx.recv()[0].qid for _ in range(4)] == [0, 1, 2, 3]  # type: ignore[union-attr]


def test_send_writes_held_frames_first(pair: tuple[BlockingConn, BlockingConn]) -> None:
    tx, rx = pair
    tx.send_soon(Query(what="s", qid=1), (), window=10.0, max_frames=100)
    tx.send_soon(Query(what="s", qid=2), (), window=10.0, max_frames=100)  # held
    tx.send(Cancel(req_id="r"))  # a cancel must never overtake the submission it cancels
    assert [type(rx.recv()[0]).__name__ for _ in range(3)] == ["Query", "Query", "Cancel"]


def test_frames_far_apart_are_never_held(pair: tuple[BlockingConn, BlockingConn]) -> None:
    tx, rx = pair
    for i in range(3):
        assert tx.send_soon(Query(what="t", qid=i), (), window=0.0, max_frames=100) is None
        assert rx.recv()[0] == Query(what="t", qid=i)
