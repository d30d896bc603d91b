"""Delay-tolerant calls at the kernel's idle priority (pure; planner/idle.py): which calls are dispatched in the
idle class, and that a call still running at its raise time is moved back to the normal class in time."""

from __future__ import annotations

import math

from granny.planner import idle
from granny.planner.batch_queue import MARGIN, SAFETY
from granny.planner.state import Dispatch, Kill, PlannerState

from .test_state import add_host, of

IDLE = 20  # config.NICE_IDLE (the pure planner does not import config)


def two_slots() -> PlannerState:
    s = PlannerState(1000.0)
    add_host(s, "h1", 2, granules=3)
    return s


def test_only_calls_with_time_to_spare_run_in_the_idle_class() -> None:
    s = two_slots()
    s.batch.observe("f", 1.0)
    s.submit("far", "a", 1, tolerance=100.0, key="f", now=0.0)
    s.submit("tight", "a", 1, tolerance=2.5, key="f", now=0.0)  # raise time 2.5 - 2 - 0.05: < MIN_IDLE away
    b = s.batch
    assert idle.priority(b, "far", IDLE, True, 0.0) == IDLE
    assert b.idle == {"far": 100.0 - SAFETY * 1.0 - MARGIN}
    assert idle.priority(b, "tight", IDLE, True, 0.0) == 0 and "tight" not in b.idle
    assert idle.priority(b, "ls", IDLE, True, 0.0) == 0  # not delay-tolerant
    assert idle.priority(b, "far", 19, False, 0.0) == 19  # a nice value: no raise needed
    assert idle.priority(b, "far", 0, False, 0.0) == 0


def test_whenever_calls_run_idle_and_are_never_raised() -> None:
    s = two_slots()
    s.submit("w", "a", 1, tolerance=-1, key="f", now=0.0)
    assert idle.priority(s.batch, "w", IDLE, True, 0.0) == IDLE and s.batch.idle == {}
    assert math.isinf(idle.raise_at(s.batch, s.batch.known["w"]))


def test_a_promoted_call_runs_at_normal_priority() -> None:
    s = two_slots()
    s.batch.observe("f", 1.0)
    s.submit("d", "a", 1, tolerance=100.0, key="f", now=0.0)
    s.batch.known["d"].promoted = True
    assert idle.priority(s.batch, "d", IDLE, True, 0.0) == 0 and s.batch.idle == {}


def test_a_running_idle_call_is_raised_at_its_raise_time_and_the_tick_wakes_for_it() -> None:
    s = two_slots()
    s.batch.observe("f", 1.0)
    (d,) = of(s.submit("d", "a", 1, tolerance=10.0, key="f", now=0.0), Dispatch)
    assert idle.priority(s.batch, "d", IDLE, True, 0.0) == IDLE
    at = 10.0 - SAFETY * 1.0 - MARGIN
    assert s.batch.next_deadline() == at  # the planner's tick comes then
    assert of(s.tick(at - 0.01), Kill) == []
    (k,) = of(s.tick(at), Kill)
    assert (k.granule_id, k.signal) == (d.granule_id, "NORMAL")
    assert s.batch.idle == {} and s.batch.counts["raised"] == 1
    assert of(s.tick(at + 1), Kill) == []  # once


def test_a_call_that_ended_or_went_back_to_the_queue_is_not_raised() -> None:
    s = two_slots()
    s.batch.observe("f", 1.0)
    (d,) = of(s.submit("d", "a", 1, tolerance=10.0, key="f", now=0.0), Dispatch)
    idle.priority(s.batch, "d", IDLE, True, 0.0)
    s.task_done(d.granule_id, "d", 0, True)
    assert s.batch.idle == {}
    s = PlannerState(1000.0)
    add_host(s, "h1", 1, granules=2)
    s.batch.observe("f", 1.0)
    (e,) = of(s.submit("e", "a", 1, tolerance=10.0, key="f", now=0.0, restartable=True), Dispatch)
    idle.priority(s.batch, "e", IDLE, True, 0.0)
    acts = s.submit("ls", "a", 1, now=0.1)  # stops "e" (restartable) for its slot: "e" waits again
    assert [(k.granule_id, k.signal) for k in of(acts, Kill)] == [(e.granule_id, "")]
    assert [k for k in of(s.batch_tick(9.0), Kill) if k.signal == "NORMAL"] == [] and s.batch.idle == {}


def test_idle_runs_feed_the_estimate_only_while_there_is_none() -> None:
    s = two_slots()
    s.submit("first", "a", 1, tolerance=100.0, key="f", now=0.0)
    assert idle.priority(s.batch, "first", IDLE, True, 0.0) == IDLE
    assert idle.observed(s.batch, "first", "f")  # no estimate yet: even a starved run is better than none
    s.batch.observe("f", 0.01)
    s.submit("idle", "a", 1, tolerance=100.0, key="f", now=0.0)
    s.submit("normal", "a", 1, tolerance=100.0, key="f", now=0.0)
    assert idle.priority(s.batch, "idle", IDLE, True, 0.0) == IDLE and not idle.observed(s.batch, "idle", "f")
    assert idle.priority(s.batch, "normal", 19, False, 0.0) == 19 and idle.observed(s.batch, "normal", "f")
    assert idle.observed(s.batch, "ls", "f")  # latency-sensitive calls always feed it
