"""PlannerState driven purely: events in, actions out, no sockets and no clocks."""

from __future__ import annotations

import copy
import inspect
import itertools
from collections import Counter
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from granny.planner.lifecycle import TASK_FINAL, AppState, GranuleState, TaskState
from granny.planner.state import Action, AppChanged, Dispatch, Fail, ForgetHost, Kill, PlannerState

TIMEOUT = 5.0


# --- helpers ------------------------------------------------------------------------------------
def add_host(s: PlannerState, host_id: str, slots: int, now: float = 0.0, granules: int | None = None) -> list[Action]:
    """Register a host and connect its warm granules ``{host_id}-g0..``, as its worker would."""
    actions = s.register_host(host_id, slots, now)
    for i in range(slots if granules is None else granules):
        actions += s.granule_connected(host_id, f"{host_id}-g{i}", None)
    return actions


def planner(*hosts: tuple[str, int], now: float = 0.0) -> PlannerState:
    s = PlannerState(TIMEOUT)
    for host_id, slots in hosts:
        assert add_host(s, host_id, slots, now) == []
    return s


def of(actions: list[Action], kind: type) -> list[Any]:
    return [a for a in actions if isinstance(a, kind)]


def state_of(s: PlannerState, req_id: str, index: int = 0) -> TaskState:
    return s.requests[req_id].tasks[index].state


def waiting(s: PlannerState) -> list[str]:
    """Requests in the queue that still wait for slots, in order (finished ones may be dropped lazily)."""
    out: list[str] = []
    for rid in s.queue:
        if rid not in out and any(t.state is TaskState.QUEUED for t in s.requests[rid].tasks):
            out.append(rid)
    return out


def done(s: PlannerState, dispatch: Dispatch, ok: bool = True) -> list[Action]:
    accepted, actions = s.task_done(dispatch.granule_id, dispatch.req_id, dispatch.index, ok)
    assert accepted
    return actions


# --- basic flow ---------------------------------------------------------------------------------
def test_submit_dispatches_to_an_idle_granule_and_task_done_frees_it() -> None:
    s = planner(("h1", 2))
    actions = s.submit("r1", "app", 1)
    assert actions == [Dispatch(actions[0].granule_id, "r1", 0)]
    gid = actions[0].granule_id
    assert gid in ("h1-g0", "h1-g1")
    assert state_of(s, "r1") is TaskState.RUNNING
    assert s.granules[gid].state is GranuleState.BUSY and s.granules[gid].task == ("r1", 0)
    assert s.hosts["h1"].busy() == 1

    assert done(s, actions[0]) == []
    assert state_of(s, "r1") is TaskState.SUCCEEDED
    assert s.granules[gid].state is GranuleState.IDLE and s.granules[gid].task is None
    assert s.hosts["h1"].busy() == 0 and not waiting(s)


def test_gang_request_gets_distinct_granules_for_every_index() -> None:
    s = planner(("h1", 2), ("h2", 2))
    actions = s.submit("r1", "app", 3)
    dispatches = of(actions, Dispatch)
    assert sorted(d.index for d in dispatches) == [0, 1, 2]
    assert len({d.granule_id for d in dispatches}) == 3
    assert all(state_of(s, "r1", i) is TaskState.RUNNING for i in range(3))


def test_no_hosts_waits_then_runs_once_granules_connect() -> None:
    s = PlannerState(TIMEOUT)
    assert s.submit("r1", "app", 2) == []
    assert waiting(s) == ["r1"]
    assert s.register_host("h1", 2, 0.0) == []  # no granules yet: nothing can run
    first = s.granule_connected("h1", "h1-g0", None)
    assert first == []  # a gang is all or nothing
    second = s.granule_connected("h1", "h1-g1", None)
    assert sorted((d.granule_id, d.index) for d in of(second, Dispatch)) in (
        [("h1-g0", 0), ("h1-g1", 1)], [("h1-g0", 1), ("h1-g1", 0)])
    assert not waiting(s)


def test_granule_of_an_unknown_host_is_killed() -> None:
    s = PlannerState(TIMEOUT)
    actions = s.granule_connected("ghost", "ghost-g0", None)
    assert actions == [Kill("ghost", "ghost-g0", actions[0].reason)]
    assert "ghost-g0" not in s.granules


def test_full_cluster_queues_fifo_and_runs_when_slots_free() -> None:
    s = planner(("h1", 1))
    (d1,) = s.submit("r1", "app", 1)
    assert s.submit("r2", "app", 1) == []
    assert s.submit("r3", "other", 1) == []
    assert waiting(s) == ["r2", "r3"]
    assert state_of(s, "r2") is TaskState.QUEUED and state_of(s, "r3") is TaskState.QUEUED

    (d2,) = done(s, d1)
    assert d2.req_id == "r2"
    assert waiting(s) == ["r3"]
    (d3,) = done(s, d2)
    assert d3.req_id == "r3"
    assert done(s, d3) == [] and not waiting(s)


def test_queue_head_blocks_smaller_requests_behind_it() -> None:
    s = planner(("h1", 2))
    (d1,) = s.submit("r1", "app", 1)
    assert s.submit("big", "app", 2) == []  # needs both slots
    assert s.submit("small", "app", 1) == []  # would fit now, but must not overtake the gang
    assert waiting(s) == ["big", "small"]
    assert s.hosts["h1"].busy() == 1

    actions = done(s, d1)
    assert sorted(d.index for d in actions if d.req_id == "big") == [0, 1]
    assert all(d.req_id == "big" for d in actions)
    assert waiting(s) == ["small"]


def test_request_larger_than_the_cluster_fails_at_once() -> None:
    s = planner(("h1", 2), ("h2", 1))
    actions = s.submit("huge", "app", 4)
    fails = of(actions, Fail)
    assert [f.index for f in fails] == [0, 1, 2, 3]
    assert {f.error_kind for f in fails} == {"never_fits"}
    assert all("never fit" in f.message and "3 slots" in f.message for f in fails)
    assert of(actions, Dispatch) == []
    assert all(state_of(s, "huge", i) is TaskState.FAILED for i in range(4))
    assert not waiting(s)
    # ... and it does not block what comes after it.
    assert [d.req_id for d in of(s.submit("ok", "app", 3), Dispatch)] == ["ok"] * 3


def test_script_request_larger_than_the_cluster_fails_at_once() -> None:
    s = planner(("h1", 2))
    actions = s.submit("huge", "run-1", 3, app_kind="script")
    fails = of(actions, Fail)
    assert sorted(f.index for f in fails) == [0, 1, 2]
    assert {f.error_kind for f in fails} == {"never_fits"}
    assert of(actions, AppChanged) == [AppChanged("run-1", AppState.FAILED)]
    assert s.apps["run-1"].state is AppState.FAILED
    assert AppChanged("run-1", AppState.FAILED) in actions
    assert all(state_of(s, "huge", i) in TASK_FINAL for i in range(3))


def test_resubmitting_a_known_request_is_ignored() -> None:
    s = planner(("h1", 2))
    assert len(s.submit("r1", "app", 1)) == 1
    assert s.submit("r1", "app", 1) == []
    assert s.apps["app"].requests == ["r1"]
    assert s.hosts["h1"].busy() == 1


# --- failures -----------------------------------------------------------------------------------
def test_host_timeout_fails_its_running_tasks_and_names_the_host() -> None:
    s = planner(("h1", 1), ("h2", 1))
    (d1,) = s.submit("r1", "app", 1)
    (d2,) = s.submit("r2", "app", 1)
    dead_host = s.granules[d1.granule_id].host_id
    live_host = s.granules[d2.granule_id].host_id
    assert s.submit("r3", "app", 1) == []

    s.heartbeat(live_host, TIMEOUT)
    assert s.tick(TIMEOUT - 0.01) == []  # just before the timeout: still alive
    assert s.next_deadline() == TIMEOUT  # its expiry: a tick then declares it dead
    actions = s.tick(TIMEOUT)
    fails = of(actions, Fail)
    assert len(fails) == 1
    (fail,) = fails
    assert (fail.req_id, fail.index, fail.error_kind, fail.host_id) == ("r1", 0, "host_died", dead_host)
    assert dead_host in fail.message and "heartbeat" in fail.message
    assert state_of(s, "r1") is TaskState.FAILED
    assert state_of(s, "r2") is TaskState.RUNNING and state_of(s, "r3") is TaskState.QUEUED
    assert not s.hosts[dead_host].alive and s.hosts[live_host].alive
    assert d1.granule_id not in s.granules
    assert s.capacity() == 1
    assert s.tick(TIMEOUT + 1) == []  # declared dead once

    # A late report from the dead host's granule does not resurrect the task.
    accepted, _ = s.task_done(d1.granule_id, "r1", 0, True)
    assert not accepted and state_of(s, "r1") is TaskState.FAILED


def test_idle_host_death_reevaluates_the_queue() -> None:
    s = planner(("big", 3), ("small", 1))
    d1, _ = s.submit("r1", "app", 2)
    assert s.granules[d1.granule_id].host_id == "big"
    assert s.submit("gang", "app", 4) == []  # fits the cluster (4 slots), waits for r1
    assert s.submit("one", "app", 1) == []  # fits right now, but waits behind the gang (FIFO)

    s.heartbeat("big", TIMEOUT + 0.5)
    actions = s.tick(TIMEOUT + 1)  # the idle small host dies: the gang can now never fit
    assert sorted((f.req_id, f.error_kind) for f in of(actions, Fail)) == [("gang", "never_fits")] * 4
    assert [d.req_id for d in of(actions, Dispatch)] == ["one"]


def test_dead_host_that_registers_again_takes_work() -> None:
    s = planner(("h1", 1))
    (d1,) = s.submit("r1", "app", 1)
    s.tick(TIMEOUT + 1)
    assert s.submit("r2", "app", 1) == []  # no live host: waits
    # Back as a new incarnation; the old one's granule is fenced, so its kill is ordered again.
    assert [(k.granule_id, type(k)) for k in s.register_host("h1", 1, TIMEOUT + 2)] == [(d1.granule_id, Kill)]
    assert s.hosts["h1"].alive and s.hosts["h1"].granules == {} and s.hosts["h1"].incarnation == 2
    (d2,) = s.granule_connected("h1", "h1-g9", None)
    assert d2 == Dispatch("h1-g9", "r2", 0)


def test_granule_exit_fails_its_task_as_crashed() -> None:
    s = planner(("h1", 1))
    (d1,) = s.submit("r1", "app", 1)
    assert s.submit("r2", "app", 1) == []
    actions = s.granule_exited(d1.granule_id, "killed by SIGSEGV (segmentation fault)")
    (fail,) = of(actions, Fail)
    assert (fail.req_id, fail.index, fail.error_kind, fail.host_id) == ("r1", 0, "crashed", "h1")
    assert d1.granule_id in fail.message and "SIGSEGV" in fail.message and "h1" in fail.message
    assert state_of(s, "r1") is TaskState.FAILED
    assert of(actions, Dispatch) == []  # the slot has no granule until the worker replaces it
    assert s.granule_exited(d1.granule_id, "again") == []  # a second exit report is harmless
    (d2,) = s.granule_connected("h1", "h1-g1", None)
    assert d2 == Dispatch("h1-g1", "r2", 0)


def test_idle_granule_exit_fails_nothing() -> None:
    s = planner(("h1", 2))
    assert s.granule_exited("h1-g0", "exited with code 0") == []
    assert "h1-g0" not in s.granules and "h1-g0" not in s.hosts["h1"].granules


def test_failed_task_of_a_functions_app_leaves_the_rest_running() -> None:
    s = planner(("h1", 2))
    (d1,) = s.submit("r1", "app", 1)
    (d2,) = s.submit("r2", "app", 1)
    assert done(s, d1, ok=False) == []
    assert state_of(s, "r1") is TaskState.FAILED and state_of(s, "r2") is TaskState.RUNNING
    assert s.apps["app"].state is AppState.RUNNING


# --- cancel -------------------------------------------------------------------------------------
def test_cancel_queued_request() -> None:
    s = planner(("h1", 1))
    (d1,) = s.submit("r1", "app", 1)
    assert s.submit("r2", "app", 1) == []
    actions = s.cancel(req_id="r2")
    assert actions == [Fail("r2", 0, "cancelled", "cancelled")]
    assert state_of(s, "r2") is TaskState.CANCELLED and not waiting(s)
    assert done(s, d1) == []  # nothing left to run


def test_cancel_running_request_kills_the_granule_which_stays_busy_until_it_exits() -> None:
    s = planner(("h1", 1))
    (d1,) = s.submit("r1", "app", 1)
    assert s.submit("r2", "app", 1) == []
    actions = s.cancel(req_id="r1")
    assert of(actions, Fail) == [Fail("r1", 0, "cancelled", "cancelled")]
    assert of(actions, Kill) == [Kill("h1", d1.granule_id, "cancelled")]
    assert of(actions, Dispatch) == []
    granule = s.granules[d1.granule_id]
    assert granule.state is GranuleState.BUSY and granule.task is None
    assert s.hosts["h1"].busy() == 1

    # The result racing the kill is not accepted and does not free the slot.
    accepted, actions = s.task_done(d1.granule_id, "r1", 0, True)
    assert not accepted and actions == []
    assert state_of(s, "r1") is TaskState.CANCELLED and granule.state is GranuleState.BUSY

    # The exit frees the slot without a second failure; the replacement takes the queued work.
    assert s.granule_exited(d1.granule_id, "killed by the planner (cancelled)") == []
    (d2,) = s.granule_connected("h1", "h1-g1", None)
    assert d2.req_id == "r2"


def test_cancel_app_cancels_all_its_requests_once() -> None:
    s = planner(("h1", 1))
    (d1,) = s.submit("r1", "app", 1)
    s.submit("r2", "app", 1)
    s.submit("r3", "other", 1)
    actions = s.cancel(app_id="app")
    assert sorted((f.req_id, f.error_kind) for f in of(actions, Fail)) == [("r1", "cancelled"), ("r2", "cancelled")]
    assert of(actions, Kill) == [Kill("h1", d1.granule_id, "cancelled")]
    assert of(actions, AppChanged) == [AppChanged("app", AppState.CANCELLED)]
    assert s.apps["app"].state is AppState.CANCELLED
    assert waiting(s) == ["r3"]
    assert s.cancel(app_id="app") == []  # already cancelled: nothing new
    assert s.cancel(app_id="nope") == [] and s.cancel(req_id="nope") == []


def test_close_app_cancels_what_is_unfinished_and_ends_the_app() -> None:
    s = planner(("h1", 3))
    (d1,) = s.submit("r1", "fns", 1)
    s.task_done(d1.granule_id, "r1", 0, True)
    s.submit("r2", "fns", 1)
    s.submit("r3", "run-1", 1, app_kind="script")
    actions = s.close_app("fns")
    assert of(actions, Fail) == [Fail("r2", 0, "cancelled", "cancelled")]  # r1 had finished: untouched
    assert actions[-1] == AppChanged("fns", AppState.SUCCEEDED)
    assert s.close_app("fns") == []
    # A script whose client goes away mid-run cannot finish: it is cancelled, not left running for ever.
    actions = s.close_app("run-1")
    assert of(actions, Fail) == [Fail("r3", 0, "cancelled", "cancelled")]
    assert AppChanged("run-1", AppState.CANCELLED) in actions and s.apps["run-1"].state is AppState.CANCELLED
    assert s.close_app("run-1") == []


def test_closing_an_app_never_dispatches_the_work_it_cancels() -> None:
    """Found by the state machine once closing became one event: cancelling r1 freed the head of the
    queue, r2 was dispatched, then cancelled (a Run followed by a Kill)."""
    s = planner(("h1", 1))
    s.register_host("h2", 1, 0.0)  # its granule not connected yet: room for r1 later, not now
    assert s.submit("r1", "fns", 2) == [] and s.submit("r2", "fns", 1) == []  # r2 waits behind r1 (FIFO)
    actions = s.close_app("fns")
    assert of(actions, Dispatch) == [] and of(actions, Kill) == []
    assert sorted(f.req_id for f in of(actions, Fail)) == ["r1", "r1", "r2"]


# --- script apps --------------------------------------------------------------------------------
def test_one_failed_rank_of_a_script_cancels_the_others() -> None:
    s = planner(("h1", 2), ("h2", 1))
    dispatches = s.submit("r1", "run-1", 3, app_kind="script", name="job.py")
    by_index = {d.index: d for d in dispatches}
    assert sorted(by_index) == [0, 1, 2]
    assert done(s, by_index[0]) == []  # rank 0 finished fine

    actions = s.task_done(by_index[1].granule_id, "r1", 1, False)[1]
    assert AppChanged("run-1", AppState.FAILED) in actions
    cancelled = of(actions, Fail)
    assert [(f.index, f.error_kind) for f in cancelled] == [(2, "cancelled")]
    assert "another granule" in cancelled[0].message
    assert of(actions, Kill) == [Kill(s.granules[by_index[2].granule_id].host_id, by_index[2].granule_id, "cancelled")]
    assert [t.state for t in s.requests["r1"].tasks] == [TaskState.SUCCEEDED, TaskState.FAILED, TaskState.CANCELLED]
    assert s.apps["run-1"].state is AppState.FAILED


def test_script_rank_crash_fails_the_app() -> None:
    s = planner(("h1", 2))
    d0, d1 = s.submit("r1", "run-1", 2, app_kind="script")
    actions = s.granule_exited(d0.granule_id, "killed by SIGKILL")
    kinds = sorted((f.index, f.error_kind) for f in of(actions, Fail))
    assert kinds == sorted([(d0.index, "crashed"), (d1.index, "cancelled")])
    assert AppChanged("run-1", AppState.FAILED) in actions
    assert of(actions, Kill) == [Kill("h1", d1.granule_id, "cancelled")]


def test_script_whose_ranks_all_succeed_succeeds() -> None:
    s = planner(("h1", 2))
    d0, d1 = s.submit("r1", "run-1", 2, app_kind="script")
    assert done(s, d0) == []
    assert s.apps["run-1"].state is AppState.RUNNING
    assert done(s, d1) == [AppChanged("run-1", AppState.SUCCEEDED)]
    assert s.apps["run-1"].state is AppState.SUCCEEDED


def test_host_death_under_a_script_fails_the_app_once() -> None:
    s = planner(("h1", 1), ("h2", 1))
    dispatches = s.submit("r1", "run-1", 2, app_kind="script")
    assert {s.granules[d.granule_id].host_id for d in dispatches} == {"h1", "h2"}
    s.heartbeat("h2", TIMEOUT)
    actions = s.tick(TIMEOUT + 1)  # h1 dies
    assert of(actions, AppChanged) == [AppChanged("run-1", AppState.FAILED)]
    fails = {f.index: f for f in of(actions, Fail)}
    h1_index = next(d.index for d in dispatches if d.granule_id.startswith("h1"))
    assert fails[h1_index].error_kind == "host_died" and "h1" in fails[h1_index].message
    assert fails[1 - h1_index].error_kind == "cancelled"
    assert all(t.state in TASK_FINAL for t in s.requests["r1"].tasks)


# --- duplicates ---------------------------------------------------------------------------------
def test_duplicate_task_done_is_ignored() -> None:
    s = planner(("h1", 1))
    (d1,) = s.submit("r1", "app", 1)
    assert s.task_done(d1.granule_id, "r1", 0, True) == (True, [])
    (d2,) = s.submit("r2", "app", 1)
    assert d2.granule_id == d1.granule_id
    # The same report again (say, resent after a reconnect) must not end r1 twice nor free r2's granule.
    assert s.task_done(d1.granule_id, "r1", 0, False) == (False, [])
    assert state_of(s, "r1") is TaskState.SUCCEEDED
    assert s.granules[d2.granule_id].state is GranuleState.BUSY and s.granules[d2.granule_id].task == ("r2", 0)


@pytest.mark.parametrize(("req_id", "index"), [("nope", 0), ("r1", 5), ("r1", -1)])
def test_task_done_for_unknown_tasks_is_ignored(req_id: str, index: int) -> None:
    s = planner(("h1", 1))
    (d1,) = s.submit("r1", "app", 1)
    assert s.task_done(d1.granule_id, req_id, index, True) == (False, [])
    assert state_of(s, "r1") is TaskState.RUNNING
    assert s.granules[d1.granule_id].state is GranuleState.BUSY


# --- restart ------------------------------------------------------------------------------------
def test_restore_and_requeue_after_restart_does_not_redispatch_a_running_task() -> None:
    s = PlannerState(TIMEOUT)
    s.restore("r1", "app", 3, finished=[0], app_kind="functions", name="")
    s.restore("r2", "run-1", 1, finished=[], app_kind="script", name="job.py")
    assert state_of(s, "r1", 0) is TaskState.SUCCEEDED
    assert not waiting(s)  # not before the grace period ends

    assert s.register_host("h1", 4, 0.0) == []
    # A granule that survived the restart reports the task it is still running.
    assert s.granule_connected("h1", "h1-g0", ("r1", 1)) == []
    assert state_of(s, "r1", 1) is TaskState.RUNNING
    assert s.granules["h1-g0"].state is GranuleState.BUSY
    for i in (1, 2, 3):
        assert s.granule_connected("h1", f"h1-g{i}", None) == []  # idle, but restored work waits

    actions = s.requeue_restored()
    assert sorted((d.req_id, d.index) for d in of(actions, Dispatch)) == [("r1", 2), ("r2", 0)]
    assert all(d.granule_id != "h1-g0" for d in of(actions, Dispatch))
    assert s.apps["run-1"].kind == "script" and s.apps["run-1"].name == "job.py"

    assert s.task_done("h1-g0", "r1", 1, True) == (True, [])
    assert s.requeue_restored() == []  # idempotent


def test_reconnecting_granule_reporting_a_finished_or_unknown_task_is_idle() -> None:
    s = PlannerState(TIMEOUT)
    s.restore("r1", "app", 2, finished=[0], app_kind="functions", name="")
    s.register_host("h1", 2, 0.0)
    assert s.granule_connected("h1", "h1-g0", ("r1", 0)) == []  # already journaled as finished
    assert s.granule_connected("h1", "h1-g1", ("gone", 0)) == []
    assert s.granules["h1-g0"].state is GranuleState.IDLE and s.granules["h1-g1"].state is GranuleState.IDLE
    (d,) = s.requeue_restored()
    assert (d.req_id, d.index) == ("r1", 1)


def test_granule_reconnecting_mid_task_keeps_its_task() -> None:
    s = planner(("h1", 1))
    (d1,) = s.submit("r1", "app", 1)
    s.granule_disconnected(d1.granule_id)
    assert s.submit("r2", "app", 1) == []
    assert s.granule_connected("h1", d1.granule_id, None) == []
    assert s.granules[d1.granule_id].task == ("r1", 0)
    assert s.task_done(d1.granule_id, "r1", 0, True) == (True, [Dispatch(d1.granule_id, "r2", 0)])


def test_granule_that_retires_after_its_report_gets_no_more_work() -> None:
    # A script's granule exits after reporting; the server marks it disconnected before the report.
    s = planner(("h1", 1))
    (d1,) = s.submit("s1", "run-1", 1, app_kind="script")
    assert s.submit("s2", "run-2", 1, app_kind="script") == []
    s.granule_disconnected(d1.granule_id)
    accepted, actions = s.task_done(d1.granule_id, "s1", 0, True)
    assert accepted and actions == [AppChanged("run-1", AppState.SUCCEEDED)]
    assert waiting(s) == ["s2"]
    assert s.granule_exited(d1.granule_id, "exited with code 0") == []
    assert s.granule_connected("h1", "h1-g1", None) == [Dispatch("h1-g1", "s2", 0)]


def test_disconnected_idle_granule_gets_no_work() -> None:
    s = planner(("h1", 1))
    s.granule_disconnected("h1-g0")
    assert s.submit("r1", "app", 1) == []
    assert s.granule_connected("h1", "h1-g0", None) == [Dispatch("h1-g0", "r1", 0)]


def test_cancelled_granule_that_reconnects_before_its_kill_gets_no_new_work() -> None:
    s = planner(("h1", 1))
    (d1,) = s.submit("r1", "app", 1)
    assert of(s.cancel(req_id="r1"), Kill) == [Kill("h1", d1.granule_id, "cancelled")]
    assert s.submit("r2", "app", 1) == []
    # The granule's connection blips before the worker carried out the kill; it reconnects idle.
    s.granule_disconnected(d1.granule_id)
    actions = s.granule_connected("h1", d1.granule_id, None)
    assert of(actions, Dispatch) == [], "r2 would die with the granule when the pending kill lands"
    assert s.hosts["h1"].busy() == 1


# --- prefetch (short calls queued behind a running call on a busy granule) ---------------------------
HAS_PREFETCH = "prefetch" in inspect.signature(PlannerState.submit).parameters
needs_prefetch = pytest.mark.skipif(not HAS_PREFETCH, reason="this PlannerState has no prefetch")


def submit(s: PlannerState, req_id: str, app_id: str, n: int, app_kind: str = "functions",
           prefetch: bool = False) -> list[Action]:
    if HAS_PREFETCH:
        return s.submit(req_id, app_id, n, app_kind, prefetch=prefetch)
    return s.submit(req_id, app_id, n, app_kind)


@needs_prefetch
def test_prefetch_hands_one_more_call_to_a_busy_granule_only() -> None:
    s = planner(("h1", 1))
    (d1,) = submit(s, "r1", "app", 1, prefetch=True)
    (d2,) = submit(s, "r2", "app", 1, prefetch=True)
    assert d2.granule_id == d1.granule_id  # prefetched behind r1
    assert d2.prefetched and not d1.prefetched  # only a prefetched Run makes its granule look for Skips
    assert submit(s, "r3", "app", 1, prefetch=True) == []  # one prefetched task per granule at most
    assert s.hosts["h1"].busy() == 1 <= s.hosts["h1"].slots
    assert done(s, d1) == [Dispatch(d1.granule_id, "r3", 0, prefetched=True)]  # r2 starts; r3 is prefetched behind it
    assert done(s, d2) == []
    assert done(s, Dispatch(d1.granule_id, "r3", 0)) == []
    assert s.granules[d1.granule_id].state is GranuleState.IDLE


@needs_prefetch
def test_gangs_and_non_prefetch_requests_are_never_prefetched() -> None:
    s = planner(("h1", 1))
    (d1,) = submit(s, "r1", "app", 1, prefetch=True)
    assert submit(s, "plain", "app", 1, prefetch=False) == []
    assert d1.granule_id in s.granules
    s2 = planner(("h1", 2))
    submit(s2, "r1", "app", 1, prefetch=True)
    submit(s2, "r2", "app", 1, prefetch=True)
    assert submit(s2, "gang", "app", 2, prefetch=True) == []  # a gang needs real slots
    assert waiting(s) == ["plain"] and waiting(s2) == ["gang"]
    assert all(len(g.tasks) == 1 for g in s2.granules.values())


@needs_prefetch
def test_prefetched_call_survives_its_granule_crashing_and_runs_first() -> None:
    s = planner(("h1", 1))
    (d1,) = submit(s, "r1", "app", 1, prefetch=True)
    (d2,) = submit(s, "r2", "app", 1, prefetch=True)
    submit(s, "r3", "app", 1, prefetch=True)
    actions = s.granule_exited(d1.granule_id, "killed by SIGSEGV")
    assert [(f.req_id, f.error_kind) for f in of(actions, Fail)] == [("r1", "crashed")]
    assert state_of(s, "r2") is TaskState.QUEUED  # it never started: not a failure
    assert waiting(s)[0] == "r2"  # back at the front, ahead of r3
    actions = s.granule_connected("h1", "h1-g1", None)
    assert actions == [Dispatch("h1-g1", "r2", 0), Dispatch("h1-g1", "r3", 0, prefetched=True)]  # r3 prefetched


@needs_prefetch
def test_cancelling_a_prefetched_call_skips_it_without_killing_the_granule() -> None:
    from granny.planner.state import Skip

    s = planner(("h1", 1))
    (d1,) = submit(s, "r1", "app", 1, prefetch=True)
    (d2,) = submit(s, "r2", "app", 1, prefetch=True)
    actions = s.cancel(req_id="r2")
    assert of(actions, Kill) == []
    assert Skip(d1.granule_id, "r2", 0) in actions
    assert of(actions, Fail) == [Fail("r2", 0, "cancelled", "cancelled")]
    assert state_of(s, "r1") is TaskState.RUNNING and s.granules[d1.granule_id].tasks == [("r1", 0)]


@needs_prefetch
def test_cancelling_a_running_call_requeues_the_call_prefetched_behind_it() -> None:
    from granny.planner.state import Skip

    s = planner(("h1", 1))
    (d1,) = submit(s, "r1", "app", 1, prefetch=True)
    submit(s, "r2", "other", 1, prefetch=True)
    actions = s.cancel(req_id="r1")
    assert Kill("h1", d1.granule_id, "cancelled") in actions
    assert Skip(d1.granule_id, "r2", 0) in actions
    assert [f.req_id for f in of(actions, Fail)] == ["r1"]
    assert state_of(s, "r2") is TaskState.QUEUED and waiting(s) == ["r2"]
    s.granule_exited(d1.granule_id, "killed by the planner (cancelled)")
    (d,) = s.granule_connected("h1", "h1-g1", None)
    assert d == Dispatch("h1-g1", "r2", 0)


# --- random sequences -----------------------------------------------------------------------------
SLOTS = {"h0": 1, "h1": 2, "h2": 3}
ERROR_KINDS = {"never_fits", "host_died", "crashed", "cancelled"}


class PlannerMachine(RuleBasedStateMachine):
    """Random events against PlannerState, with the bookkeeping a server would do, checking invariants."""

    def __init__(self) -> None:
        super().__init__()
        self.s = PlannerState(TIMEOUT)
        self.now = 0.0
        self.seq = itertools.count()
        self.assigned: dict[tuple[str, int], set[str]] = {}  # every granule a task was ever given to
        self.ends: Counter[tuple[str, int]] = Counter()
        self.killed: set[str] = set()
        self.app_changes: Counter[str] = Counter()
        self.script_reqs: set[str] = set()
        self.boots: dict[str, str] = {}  # each host's current worker process

    def apply(self, actions: list[Action]) -> None:
        for a in actions:
            if isinstance(a, Dispatch):
                key = (a.req_id, a.index)
                self.assigned.setdefault(key, set()).add(a.granule_id)
                g = self.s.granules[a.granule_id]
                assert g.state is GranuleState.BUSY and key in getattr(g, "tasks", [g.task]) and g.connected
                assert self.s.hosts[g.host_id].alive
                assert a.granule_id not in self.killed, f"{key} sent to {a.granule_id}, which is being killed"
                assert state_of(self.s, *key) is TaskState.RUNNING
            elif isinstance(a, Fail):
                key = (a.req_id, a.index)
                self.ends[key] += 1
                assert a.error_kind in ERROR_KINDS
                assert state_of(self.s, *key) in TASK_FINAL
            elif isinstance(a, Kill):
                self.killed.add(a.granule_id)
            elif isinstance(a, AppChanged):
                self.app_changes[a.app_id] += 1
                assert a.state is not AppState.RUNNING and self.s.apps[a.app_id].state is a.state
            elif isinstance(a, ForgetHost):
                assert not self.s.hosts[a.host_id].alive and a.host_id in a.reason
            else:  # Skip: a prefetched task taken back from a granule before it started
                g = self.s.granules.get(a.granule_id)
                assert g is None or (a.req_id, a.index) not in g.tasks

    def pick(self, data: st.DataObject, items: Any) -> Any:
        return data.draw(st.sampled_from(sorted(items)))

    # --- hosts and granules
    @rule(host=st.sampled_from(sorted(SLOTS)))
    def register(self, host: str) -> None:
        # Its worker process registers (again, after a blip or after being declared dead).
        self.apply(self.s.register_host(host, SLOTS[host], self.now, boot=self.boots.get(host, "boot")))

    @rule(host=st.sampled_from(sorted(SLOTS)))
    def worker_restarts(self, host: str) -> None:
        # A new worker process registers: a live host's old incarnation ends (its granules died with it).
        h = self.s.hosts.get(host)
        running = [(rid, i) for rid, r in self.s.requests.items() for i, t in enumerate(r.tasks)
                   if t.state is TaskState.RUNNING and t.host_id == host] if h is not None and h.alive else []
        self.boots[host] = f"boot{next(self.seq)}"
        actions = self.s.register_host(host, SLOTS[host], self.now, boot=self.boots[host])
        for rid, i in running:  # failed, or (prefetched, never started) queued again elsewhere
            t = self.s.requests[rid].tasks[i]
            assert t.state is not TaskState.RUNNING or t.host_id != host
        assert self.s.hosts[host].alive and not self.s.liveness.fenced_on(host)
        self.apply(actions)

    @rule(host=st.sampled_from(sorted(SLOTS)))
    def heartbeat(self, host: str) -> None:
        h = self.s.hosts.get(host)
        actions = self.s.heartbeat(host, self.now)
        assert (actions == []) == (h is not None and h.alive)  # a forgotten host is told to register again
        if h is not None:
            self.apply(actions)

    def fenced(self) -> set[str]:
        return {gid for host in SLOTS for gid, _ in self.s.liveness.fenced_on(host)}

    @precondition(lambda self: self.fenced())
    @rule(data=st.data())
    def old_granule_reconnects(self, data: st.DataObject) -> None:
        # A granule of a dead incarnation (only its worker had paused) comes back: it is killed, not used.
        gid = self.pick(data, self.fenced())
        host = gid.rsplit("-g", 1)[0]
        actions = self.s.granule_connected(host, gid, None)
        assert [type(a) for a in actions] == [Kill] and gid not in self.s.granules
        self.apply(actions)

    @precondition(lambda self: self.fenced())
    @rule(data=st.data())
    def old_granule_exits(self, data: st.DataObject) -> None:
        gid = self.pick(data, self.fenced())
        assert self.s.granule_exited(gid, "killed by the planner") == []
        assert gid not in self.fenced()
        self.killed.discard(gid)

    @rule(host=st.sampled_from(sorted(SLOTS)))
    def connect(self, host: str) -> None:
        gid = f"{host}-g{next(self.seq)}"
        h = self.s.hosts.get(host)
        actions = self.s.granule_connected(host, gid, None)
        if h is None or not h.alive:
            assert of(actions, Kill) == [Kill(host, gid, actions[0].reason)]
            assert gid not in self.s.granules
        self.apply(actions)

    @precondition(lambda self: self.s.granules)
    @rule(data=st.data())
    def disconnect(self, data: st.DataObject) -> None:
        self.s.granule_disconnected(self.pick(data, self.s.granules))

    @precondition(lambda self: self.s.granules)
    @rule(data=st.data())
    def reconnect(self, data: st.DataObject) -> None:
        # A connection blip: the same granule comes back, possibly while its Kill is still on the way.
        gid = self.pick(data, self.s.granules)
        g = self.s.granules[gid]
        held = g.task
        self.s.granule_disconnected(gid)
        self.apply(self.s.granule_connected(g.host_id, gid, held))
        if held is not None:
            assert self.s.granules[gid].task == held, "a reconnecting granule keeps the task it is running"

    @precondition(lambda self: self.s.granules)
    @rule(data=st.data())
    def exit(self, data: st.DataObject) -> None:
        gid = self.pick(data, self.s.granules)
        g = self.s.granules[gid]
        running = g.task
        actions = self.s.granule_exited(gid, "killed by SIGKILL")
        if running is not None:
            assert [(f.req_id, f.index) for f in of(actions, Fail) if f.error_kind == "crashed"] == [running]
            assert state_of(self.s, *running) is TaskState.FAILED
        self.killed.discard(gid)
        self.apply(actions)

    @rule(dt=st.floats(0, 2 * TIMEOUT))
    def advance(self, dt: float) -> None:
        self.now += dt
        alive_before = {h.host_id for h in self.s.hosts.values() if h.alive}
        actions = self.s.tick(self.now)
        for f in of(actions, Fail):
            if f.error_kind == "host_died":
                assert f.host_id in alive_before and f.host_id in f.message
        self.apply(actions)
        for h in self.s.hosts.values():
            assert not h.alive or self.now - h.last_seen <= TIMEOUT

    # --- work
    @rule(app=st.sampled_from(["a0", "a1", "a2"]), n=st.integers(1, 7), prefetch=st.booleans())
    def submit_functions(self, app: str, n: int, prefetch: bool) -> None:
        self.apply(submit(self.s, f"r{next(self.seq)}", app, n, prefetch=prefetch))

    @rule(n=st.integers(1, 7))
    def submit_script(self, n: int) -> None:
        rid = f"r{next(self.seq)}"
        self.script_reqs.add(rid)
        self.apply(submit(self.s, rid, f"run-{rid}", n, app_kind="script"))

    @precondition(lambda self: any(gid in self.s.granules or gid in self.fenced()
                                   for gids in self.assigned.values() for gid in gids))
    @rule(data=st.data(), ok=st.booleans())
    def report(self, data: st.DataObject, ok: bool) -> None:
        # A live granule reports a task it was given at some point: its current one, a duplicate of an
        # old one, or a late result racing a cancel or a requeue.
        fenced = self.fenced()
        pairs = {(key, gid) for key, gids in self.assigned.items() for gid in gids
                 if gid in self.s.granules or gid in fenced}
        key, gid = self.pick(data, pairs)
        was_running = state_of(self.s, *key) is TaskState.RUNNING
        accepted, actions = self.s.task_done(gid, *key, ok)
        assert accepted == (was_running and gid not in fenced)  # a dead incarnation's report never counts
        if accepted:
            self.ends[key] += 1
            assert state_of(self.s, *key) is (TaskState.SUCCEEDED if ok else TaskState.FAILED)
        self.apply(actions)

    @precondition(lambda self: set(self.s.requests) - self.script_reqs)
    @rule(data=st.data())
    def cancel_request(self, data: st.DataObject) -> None:
        self.apply(self.s.cancel(req_id=self.pick(data, set(self.s.requests) - self.script_reqs)))

    @precondition(lambda self: self.s.apps)
    @rule(data=st.data())
    def cancel_app(self, data: st.DataObject) -> None:
        self.apply(self.s.cancel(app_id=self.pick(data, self.s.apps)))

    @precondition(lambda self: self.s.apps)
    @rule(data=st.data())
    def close_app(self, data: st.DataObject) -> None:
        self.apply(self.s.close_app(self.pick(data, self.s.apps)))

    # --- invariants
    @invariant()
    def slots_are_never_exceeded(self) -> None:
        for h in self.s.hosts.values():
            assert h.busy() <= h.slots, f"host {h.host_id}: {h.busy()} busy granules on {h.slots} slots"
            if not h.alive:
                assert not h.granules
            for gid, g in h.granules.items():
                assert self.s.granules[gid] is g and g.host_id == h.host_id
                assert len(getattr(g, "tasks", ())) <= 2, "at most one task prefetched behind the running one"
                assert (g.state is GranuleState.BUSY) or g.task is None

    @invariant()
    def every_task_ends_at_most_once_and_every_end_is_reported(self) -> None:
        holders: Counter[tuple[str, int]] = Counter()
        for g in self.s.granules.values():
            for key in getattr(g, "tasks", [g.task] if g.task else []):
                if state_of(self.s, *key) is TaskState.RUNNING:
                    holders[key] += 1
        for rid, req in self.s.requests.items():
            for i, t in enumerate(req.tasks):
                key = (rid, i)
                assert self.ends[key] <= 1, f"{key} ended {self.ends[key]} times"
                assert (t.state in TASK_FINAL) == (self.ends[key] == 1), f"{key} is {t.state} after {self.ends[key]} ends"
                if t.state is TaskState.QUEUED:
                    assert holders[key] == 0, f"queued {key} is also held by a granule"
                if t.state is TaskState.RUNNING:
                    assert holders[key] == 1, f"running {key} is held by {holders[key]} granules"
                    g = self.s.granules[t.granule_id]
                    assert g.state is GranuleState.BUSY and self.s.hosts[g.host_id].alive

    @invariant()
    def busy_granules_without_a_task_are_being_killed(self) -> None:
        for g in self.s.granules.values():
            if g.state is GranuleState.BUSY and g.task is None:
                assert g.granule_id in self.killed, f"{g.granule_id} holds a slot and nobody is killing it"

    @invariant()
    def every_waiting_request_is_queued(self) -> None:
        queued = set(self.s.queue)
        for rid, r in self.s.requests.items():
            if any(t.state is TaskState.QUEUED for t in r.tasks):
                assert rid in queued, f"{rid} waits but is not in the queue: it would never run"

    @invariant()
    def nothing_runnable_is_left_waiting(self) -> None:
        assert copy.deepcopy(self.s).schedule() == []

    @invariant()
    def apps_end_once_and_consistently(self) -> None:
        for app_id, app in self.s.apps.items():
            assert self.app_changes[app_id] <= 1
            assert (app.state is AppState.RUNNING) == (self.app_changes[app_id] == 0)
            if app.kind != "script":
                continue
            states = [t.state for rid in app.requests for t in self.s.requests[rid].tasks]
            if app.state is AppState.SUCCEEDED:
                assert all(x is TaskState.SUCCEEDED for x in states)
            elif app.state is AppState.RUNNING:
                assert not all(x in TASK_FINAL for x in states)
            else:
                assert all(x in TASK_FINAL for x in states)


PlannerMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None,
                                            suppress_health_check=[HealthCheck.too_slow])
test_planner_state_machine = PlannerMachine.TestCase


def test_a_restored_task_reported_finished_during_the_grace_is_recorded_not_requeued() -> None:
    s = planner(("h", 2))
    s.restore("r1", "app", 1, (), "functions", "", prefetch=True)
    s.restore("r2", "app", 1, (), "functions", "", prefetch=True)
    # The granule finished r1 while the planner was away and sends its Done again on reconnect.
    accepted, actions = s.task_done("h-g0", "r1", 0, True)
    assert accepted and of(actions, Dispatch) == []  # the grace is not over: nothing else starts
    assert state_of(s, "r1") is TaskState.SUCCEEDED
    again, _ = s.task_done("h-g0", "r1", 0, True)  # and once more: a duplicate is not accepted
    assert not again
    dispatched = of(s.requeue_restored(), Dispatch)
    assert [d.req_id for d in dispatched] == ["r2"]  # only the unreported one runs
