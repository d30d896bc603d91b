"""Link.request, the one send-and-wait of a granule's migration points and rendezvous, across a reconnect.

Real sockets: the "planner" is the other end of a socket pair per connection. The first planner reads
the request and goes away; the second has already forwarded the script's input (a Stdin) when the
request reaches it again. That Stdin arrives on a connection newer than the one the request first went
out on: it must reach the task, not be dropped (migrate_ctl dropped it, call_ctl kept it).
"""

from __future__ import annotations

import socket
import threading
from collections import deque
from typing import Any

import pytest

from granny.transport import BlockingConn
from granny.wire import Kind, MigrateAsk, MigrateOrder, MpiJoin, MpiWorld, Run, Stdin
from granny.worker.call_ctl import PlainControl
from granny.worker.migrate_ctl import GranuleControl
from granny.worker.outbox import Link


class Planners:
    """Each dial makes a socket pair: the granule gets one end, the test (the planner) the other."""

    def __init__(self) -> None:
        self.ends: list[BlockingConn] = []
        self.ready = threading.Condition()
        self.before: list[Any] = []  # frames a new planner sends before it hears from the granule

    def dial(self, busy_task: str, busy_grant: bytes) -> BlockingConn:
        mine, theirs = socket.socketpair()
        planner = BlockingConn(theirs)
        for msg in self.before:
            planner.send(msg)
        with self.ready:
            self.ends.append(planner)
            self.ready.notify_all()
        return BlockingConn(mine)

    def nth(self, n: int) -> BlockingConn:
        with self.ready:
            assert self.ready.wait_for(lambda: len(self.ends) > n, timeout=10), f"no connection #{n}"
            return self.ends[n]


class FakeGranule:
    def __init__(self, link: Link) -> None:
        self.link = link
        self.stdin_frames: deque[Stdin] = deque()
        self.deferred: deque[tuple[Any, memoryview, int]] = deque()
        self.address = ("127.0.0.1", 1)


RUN = Run(req_id="r1", index=0, n=2, app_id="a", kind=Kind.PICKLED)


def _ask_plain(granule: FakeGranule) -> Any:
    return PlainControl(granule, RUN).ask(True, "")


def _ask_world(granule: FakeGranule) -> Any:
    return GranuleControl(granule, RUN, "127.0.0.1").ask(True, "")


def _answer(msg: Any) -> Any:
    return MigrateOrder(req_id=msg.req_id, reason="stay")


@pytest.mark.parametrize("ask", [_ask_plain, _ask_world], ids=["call_ctl", "migrate_ctl"])
def test_input_from_a_new_planner_reaches_the_task_across_a_resent_request(ask: Any) -> None:
    planners = Planners()
    granule = FakeGranule(Link(planners.dial, "run-1"))
    got: list[Any] = []
    t = threading.Thread(target=lambda: got.append(ask(granule)))
    t.start()
    first = planners.nth(0)
    msg, _ = first.recv()
    assert isinstance(msg, MigrateAsk)
    planners.before = [Stdin(req_id="r1", data=b"typed while the planner restarted")]
    first.sock.shutdown(socket.SHUT_RDWR)  # the planner goes away with the request unanswered
    second = planners.nth(1)
    again, _ = second.recv()
    assert isinstance(again, MigrateAsk) and again.req_id == "r1"  # sent again to the new planner
    second.send(_answer(again))
    t.join(10)
    assert [o.reason for o in got] == ["stay"]
    assert [f.data for f in granule.stdin_frames] == [b"typed while the planner restarted"]


def test_only_the_connection_the_request_went_out_on_answers_it() -> None:
    """An answer-shaped frame from a newer connection, before the request was sent there, is not the answer."""
    planners = Planners()
    granule = FakeGranule(Link(planners.dial, "run-1"))
    join = MpiJoin(req_id="r1", index=0, host_id="h", pid=1, ip="127.0.0.1", port=1, gen=1)
    other: list[Any] = []
    got: list[Any] = []
    answers = lambda m: isinstance(m, MpiWorld) and m.gen == 1  # noqa: E731
    t = threading.Thread(target=lambda: got.append(granule.link.request(join, answers, other.append)))
    t.start()
    first = planners.nth(0)
    first.recv()
    planners.before = [MpiWorld(req_id="r1", key=b"stale", ranks=[], gen=1)]  # not an answer to a request it has not seen
    first.sock.shutdown(socket.SHUT_RDWR)
    second = planners.nth(1)
    second.recv()
    second.send(MpiWorld(req_id="r1", key=b"fresh", ranks=[], gen=1))
    t.join(10)
    assert [w.key for w in got] == [b"fresh"]
    assert [f[0].key for f in other] == [b"stale"]
