"""The restart grace and the granules of unregistered hosts, in PlannerState (pure, time as ``now``)."""

from __future__ import annotations

from granny.planner.grace import Held
from granny.planner.lifecycle import TaskState
from granny.planner.state import Dispatch, Fail, GraceEnded, HoldFrames, Kill, PlannerState, ReplayFrames

from .test_state import TIMEOUT, add_host, of, state_of

GRACE = 3.0


def restarted(now: float = 0.0) -> PlannerState:
    """A planner that restarted at ``now`` with one restored request ``r1`` (2 tasks, task 0 finished)."""
    s = PlannerState(TIMEOUT)
    s.restore("r1", "app", 2, finished=[0], app_kind="functions", name="")
    s.start_grace(now, GRACE)
    return s


def held(req_id: str = "big", n: int = 2, done: frozenset[int] = frozenset()) -> Held:
    return Held(req_id, "app", n, done, "functions", "")


# --- the restart grace ----------------------------------------------------------------------------
def test_restored_work_waits_for_the_grace_then_runs() -> None:
    s = restarted()
    add_host(s, "h1", 2)
    assert s.next_deadline() == GRACE
    assert of(s.tick(GRACE - 0.1), Dispatch) == []
    assert s.grace.open
    actions = s.tick(GRACE)
    assert isinstance(actions[0], GraceEnded)
    assert [(d.req_id, d.index) for d in of(actions, Dispatch)] == [("r1", 1)]
    assert not s.grace.open and s.tick(GRACE + 0.1) == []  # it ends once


def test_a_held_request_whose_client_did_not_come_back_fails_at_the_end_of_the_grace() -> None:
    s = restarted()
    s.hold(held(done=frozenset({1})))
    assert "big" not in s.requests  # not loaded until the grace ends
    actions = s.tick(GRACE)
    (fail,) = of(actions, Fail)
    assert (fail.req_id, fail.index, fail.error_kind) == ("big", 0, "lost")
    assert "payload (too large to journal)" in fail.message and "did not reconnect within 3s" in fail.message
    assert state_of(s, "big", 1) is TaskState.SUCCEEDED and s.requests["big"].final()
    assert s.finished[-1] == "big"  # retention stamps it like any finished request


def test_a_held_request_resubmitted_in_the_grace_runs_and_does_not_fail() -> None:
    s = restarted()
    add_host(s, "h1", 2)
    s.hold(held())
    dispatched = s.submit("big", "app", 2)  # its client reconnected and sent it again
    assert len(dispatched) == 2 and not s.grace.held
    assert of(s.tick(GRACE), Fail) == []


def test_a_held_request_adopted_as_journaled_work_does_not_fail() -> None:
    s = restarted()
    s.hold(held())
    s.restore("big", "app", 2, (), "functions", "")  # resubmitted while a granule's report waited (orphans.py)
    assert of(s.tick(GRACE), Fail) == []
    assert s.queue.count("big") == 1


def test_the_grace_ends_even_on_a_tick_that_reads_as_a_stall() -> None:
    s = restarted()
    add_host(s, "h1", 2)
    s.tick(0.0)
    actions = s.tick(100.0)  # far later than any tick cadence: the planner itself stalled
    assert s.liveness.stalls == 1 and s.hosts["h1"].alive
    assert isinstance(actions[0], GraceEnded) and len(of(actions, Dispatch)) == 1


def test_nothing_to_wait_for_means_no_deadline() -> None:
    s = PlannerState(TIMEOUT)
    assert s.next_deadline() is None
    s.start_grace(10.0, GRACE)
    assert s.next_deadline() == 10.0 + GRACE
    s.tick(10.0 + GRACE)
    assert s.next_deadline() is None  # no host alive, no grace: nothing is due until an event


# --- granules whose host is not registered ----------------------------------------------------------
def test_a_granule_of_an_unregistered_host_waits_then_is_connected_and_its_frames_replayed() -> None:
    s = PlannerState(TIMEOUT)
    assert s.submit("r1", "app", 1) == []
    assert s.granule_hello("h1", "h1-g0", None) == [HoldFrames("h1-g0")]
    assert "h1-g0" not in s.granules
    actions = s.register_host("h1", 1, 0.0)
    assert actions == [Dispatch("h1-g0", "r1", 0), ReplayFrames("h1-g0")]  # replayed after its work is known
    assert s.unregistered == {}


def test_a_waiting_granule_that_disconnects_or_exits_is_forgotten() -> None:
    s = PlannerState(TIMEOUT)
    s.granule_hello("h1", "h1-g0", None)
    s.granule_hello("h1", "h1-g1", None)
    s.granule_disconnected("h1-g0")
    assert s.granule_exited("h1-g1", "exit code 1") == []  # its worker's report came before the socket closed
    assert s.register_host("h1", 2, 0.0) == []
    assert s.granules == {} and s.unregistered == {}


def test_a_waiting_granule_keeps_the_restored_task_it_claims() -> None:
    s = restarted()
    assert s.granule_hello("h1", "h1-g0", ("r1", 1)) == [HoldFrames("h1-g0")]
    assert s.register_host("h1", 1, 0.0) == [ReplayFrames("h1-g0")]
    assert state_of(s, "r1", 1) is TaskState.RUNNING and s.requests["r1"].tasks[1].granule_id == "h1-g0"
    accepted, _ = s.task_done("h1-g0", "r1", 1, True)  # the report it held back is recorded
    assert accepted and s.requests["r1"].final()


def test_a_granule_of_a_dead_host_waits_for_the_next_incarnation_and_is_killed_if_fenced() -> None:
    s = PlannerState(TIMEOUT)
    add_host(s, "h1", 1)
    now = 0.0
    while s.hosts["h1"].alive:  # no heartbeat: dead, its granule h1-g0 fenced
        s.tick(now)
        now = s.next_deadline() or now
    assert not s.hosts["h1"].alive
    assert s.granule_hello("h1", "h1-g0", None) == [HoldFrames("h1-g0")]
    assert s.granule_hello("h1", "h1-g1", None) == [HoldFrames("h1-g1")]
    actions = s.register_host("h1", 2, TIMEOUT + 1)
    assert [k.granule_id for k in of(actions, Kill)] == ["h1-g0", "h1-g0"]  # re-sent fence, then on connect
    assert "h1-g1" in s.granules and "h1-g0" not in s.granules
    assert actions[-2:] == [ReplayFrames("h1-g0"), ReplayFrames("h1-g1")]
