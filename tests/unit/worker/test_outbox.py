"""The granule's outbox (worker/outbox.py) against a fake planner on a socket pair."""

from __future__ import annotations

import socket

from granny.transport import BlockingConn
from granny.wire import Done, Log, Status
from granny.worker.outbox import Link


class FakePlanner:
    """Hands the link one end of a fresh socket pair per dial and keeps the other ends."""

    def __init__(self) -> None:
        self.ends: list[BlockingConn] = []
        self.busy: list[str] = []

    def dial(self, busy_task: str, grant: bytes) -> BlockingConn:
        ours, theirs = socket.socketpair()
        self.ends.append(BlockingConn(ours))
        self.busy.append(busy_task)
        return BlockingConn(theirs)

    def frames(self, end: int, count: int) -> list[Log | Done]:
        out = []
        for _ in range(count):
            msg, _ = self.ends[end].recv()
            assert isinstance(msg, Log | Done)
            out.append(msg)
        return out


def test_reconnect_resends_what_was_not_acknowledged_in_order_and_announces_the_task() -> None:
    planner = FakePlanner()
    link = Link(planner.dial, "g1")
    assert link.start_task("r", 0, link.generation)
    for i in range(4):
        link.send_log("stdout", f"line {i}\n")
    first = planner.frames(0, 4)
    assert [m.part for m in first] == [1, 2, 3, 4] and all(m.run == "g1" for m in first)
    link.ack(first[1].seq)  # the first two are in the journal
    planner.ends[0].close()  # the planner dies
    link.send_log("stdout", "line 4\n")  # may still "succeed" into the dead socket's buffer
    link.send_done(Done(req_id="r", index=0, status=Status.OK), [])  # one of these finds it dead
    assert len(planner.ends) == 2 and planner.busy[1] == "r:0"
    again = planner.frames(1, 4)
    assert [(type(m).__name__, getattr(m, "data", "")) for m in again] == [
        ("Log", "line 2\n"), ("Log", "line 3\n"), ("Log", "line 4\n"), ("Done", "")]
    assert link.generation == 1


def test_output_past_the_bound_is_replaced_by_a_visible_marker_before_the_result() -> None:
    planner = FakePlanner()
    link = Link(planner.dial, "g1", max_bytes=100)
    assert link.start_task("r", 0, link.generation)
    link.send_log("stdout", "a" * 60)
    link.send_log("stdout", "b" * 60)  # over the bound: nobody acknowledged the first
    link.send_log("stdout", "c" * 70)  # the marker for "b" fits; this does not
    link.report_lost()
    link.send_done(Done(req_id="r", index=0, status=Status.OK), [])
    got = planner.frames(0, 4)
    assert isinstance(got[0], Log) and got[0].data == "a" * 60
    assert [(m.stream, m.data) for m in got[1:3] if isinstance(m, Log)] == [
        ("stderr", "[granny: 60 bytes of output lost]\n"), ("stderr", "[granny: 70 bytes of output lost]\n")]
    assert isinstance(got[3], Done)


def test_after_an_ack_the_marker_goes_out_as_soon_as_there_is_room() -> None:
    planner = FakePlanner()
    link = Link(planner.dial, "g1", max_bytes=100)
    assert link.start_task("r", 0, link.generation)
    link.send_log("stdout", "a" * 90)
    link.send_log("stdout", "b" * 20)  # lost
    (first,) = planner.frames(0, 1)
    link.ack(first.seq)
    link.send_log("stdout", "c\n")
    marker, after = planner.frames(0, 2)
    assert isinstance(marker, Log) and marker.data == "[granny: 20 bytes of output lost]\n"
    assert isinstance(after, Log) and after.data == "c\n" and after.part == marker.part + 1


def test_a_frame_from_a_connection_that_died_is_not_handed_out() -> None:
    planner = FakePlanner()
    link = Link(planner.dial, "g1")
    gen = link.generation
    link.reconnect(link.conn)
    assert not link.start_task("r", 0, gen)  # a Run received before the reconnect must not start
    assert link.start_task("r", 0, link.generation)
