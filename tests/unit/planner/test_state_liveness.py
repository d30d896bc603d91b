"""Host liveness in PlannerState, driven purely: a dead host comes back as a new incarnation, the
granules of its dead incarnation are fenced, and the planner's own stall kills nobody."""

from __future__ import annotations

from granny.planner.state import Dispatch, Fail, ForgetHost, Kill, PlannerState

from .test_state import TIMEOUT, add_host, of, planner, state_of

TICK = TIMEOUT / 4  # how often the server ticks


def tick_until(s: PlannerState, start: float, end: float) -> list[object]:
    """Tick as the server does, every TICK from start to end; returns every action."""
    actions: list[object] = []
    now = start
    while now <= end:
        actions += s.tick(now)
        now += TICK
    return actions


def test_dead_host_that_heartbeats_is_told_to_register_again() -> None:
    s = planner(("h1", 1), ("h2", 1))
    actions = tick_until(s, 0.0, TIMEOUT + TICK)  # neither host heartbeats: both die
    assert sorted(f.host_id for f in of(actions, ForgetHost)) == ["h1", "h2"]
    (forget,) = s.heartbeat("h1", TIMEOUT + 2)
    assert isinstance(forget, ForgetHost) and forget.host_id == "h1" and "declared dead" in forget.reason
    assert not s.hosts["h1"].alive  # a heartbeat alone does not bring it back: registering does
    (unknown,) = s.heartbeat("h9", TIMEOUT + 2)
    assert isinstance(unknown, ForgetHost) and "not registered" in unknown.reason
    assert s.heartbeat("h9", TIMEOUT + 2) != [] and "h9" not in s.hosts


def test_host_back_from_the_dead_is_a_new_incarnation_and_its_old_granules_are_fenced() -> None:
    s = planner(("h1", 2))
    (d1,) = s.submit("r1", "app", 1)
    old = sorted(s.hosts["h1"].granules)
    died = tick_until(s, 0.0, TIMEOUT + TICK)
    assert [(f.req_id, f.error_kind) for f in of(died, Fail)] == [("r1", "host_died")]
    # Only the worker may have paused: its granules are told to die at once (if it hears it).
    assert sorted(k.granule_id for k in of(died, Kill)) == old
    assert s.submit("r2", "app", 1) == []  # waits for a live host

    back = s.register_host("h1", 2, TIMEOUT + 2)
    assert s.hosts["h1"].alive and s.hosts["h1"].incarnation == 2 and s.hosts["h1"].granules == {}
    kills = of(back, Kill)
    assert sorted(k.granule_id for k in kills) == old  # ordered again: the worker may have missed them
    assert all("incarnation 1 of host h1" in k.reason for k in kills)

    # An old granule that (re)connects is killed, never given the waiting call.
    (kill,) = s.granule_connected("h1", d1.granule_id, None)
    assert isinstance(kill, Kill) and d1.granule_id not in s.granules
    # A granule of the new incarnation takes it.
    (d2,) = s.granule_connected("h1", "h1-g7", None)
    assert d2 == Dispatch("h1-g7", "r2", 0)
    # The old granule finishes late: its report is ignored, for the failed task and for any other.
    assert s.task_done(d1.granule_id, "r1", 0, True) == (False, [])
    assert s.task_done(d1.granule_id, "r2", 0, True) == (False, [])
    assert state_of(s, "r1").value == "failed" and state_of(s, "r2").value == "running"
    # Once its worker reports it gone, the fence ends: nothing is left to kill on the next return.
    for gid in old:
        s.granule_exited(gid, "killed by the planner")
    s.tick(TIMEOUT + 2 + TICK)
    s.heartbeat("h1", TIMEOUT + 2 + TICK)
    assert s.liveness.fenced_on("h1") == []


def test_prefetched_call_requeued_from_a_dead_host_is_not_reported_by_its_old_granule() -> None:
    s = planner(("h1", 1), ("h2", 1))
    (a,) = s.submit("a", "app", 1, prefetch=True)
    (b,) = s.submit("b", "app", 1, prefetch=True)
    (c,) = s.submit("c", "app", 1, prefetch=True)  # the cluster is full: waits behind a running call
    assert c.prefetched
    victim = s.granules[c.granule_id].host_id
    survivor = "h2" if victim == "h1" else "h1"
    now = 0.0
    while s.hosts[victim].alive:
        now += TICK
        s.heartbeat(survivor, now)
        s.tick(now)
    # c had not started: it went back to the queue, and behind the survivor's call. The old granule
    # may still start it (its worker paused, so the kill did not land) and report it: ignored.
    task = s.requests["c"].tasks[0]
    assert task.state.value == "running" and task.host_id == survivor and task.granule_id != c.granule_id
    assert s.task_done(c.granule_id, "c", 0, True) == (False, [])
    assert state_of(s, "c").value == "running"
    other = a if s.granules.get(a.granule_id) is not None else b
    assert s.task_done(other.granule_id, other.req_id, 0, True)[0]
    assert s.task_done(task.granule_id, "c", 0, True)[0]  # the live host's result counts


def test_a_planner_stall_longer_than_the_timeout_kills_no_host() -> None:
    s = planner(("h1", 1), ("h2", 1))
    (d1,) = s.submit("r1", "app", 1)
    s.tick(0.0)
    s.heartbeat("h1", 0.1)
    s.heartbeat("h2", 0.1)
    # The event loop was blocked for 3 timeouts: the heartbeats sent meanwhile are still unread.
    assert s.tick(3 * TIMEOUT) == []
    assert s.hosts["h1"].alive and s.hosts["h2"].alive and state_of(s, "r1").value == "running"
    assert s.liveness.stalls == 1 and s.liveness.last_stall == 3 * TIMEOUT
    # A fresh grace period, not immunity: a host that stays silent dies one timeout later.
    s.heartbeat("h2", 3 * TIMEOUT + 0.1)
    actions = tick_until(s, 3 * TIMEOUT + TICK, 3 * TIMEOUT + 2 * TIMEOUT)
    dead = {f.host_id for f in of(actions, ForgetHost)}
    assert "h1" in dead or "h2" in dead  # neither heartbeats any more after the stall
    assert all(not s.hosts[h].alive for h in dead)


def test_a_partial_stall_is_not_blamed_on_the_hosts() -> None:
    # A stall shorter than the timeout but long enough that a host's last heartbeat read before it
    # is older than the timeout when the loop resumes (the later ones are not read yet).
    s = planner(("h1", 1))
    s.tick(0.0)
    s.heartbeat("h1", 0.0)
    s.tick(TICK)
    # Blocked for less than the timeout (4.25 s of 5), yet the last heartbeat read is 5.5 s old.
    assert s.tick(TIMEOUT + 0.5) == []
    assert s.hosts["h1"].alive


def test_regular_ticks_still_declare_a_silent_host_dead_within_the_timeout() -> None:
    s = PlannerState(TIMEOUT)
    add_host(s, "h1", 1)
    actions = tick_until(s, 0.0, TIMEOUT + TICK)
    assert of(actions, ForgetHost) == [ForgetHost("h1", of(actions, ForgetHost)[0].reason)]
    assert not s.hosts["h1"].alive and s.liveness.stalls == 0


def test_a_worker_that_restarts_ends_its_hosts_incarnation_and_reuses_granule_ids() -> None:
    s = PlannerState(TIMEOUT)
    s.register_host("h1", 2, 0.0, boot="first")
    for i in range(2):
        s.granule_connected("h1", f"h1-g{i}", None)
    (d1,) = s.submit("r1", "app", 1)
    # The same worker process reconnecting (a connection blip) changes nothing.
    assert s.register_host("h1", 2, 1.0, boot="first") == []
    assert s.hosts["h1"].incarnation == 1 and state_of(s, "r1").value == "running"
    # A new worker process: the old one's granules died with it, so their work is lost, now.
    actions = s.register_host("h1", 2, 2.0, boot="second")
    (fail,) = of(actions, Fail)
    assert (fail.req_id, fail.error_kind) == ("r1", "host_died") and "restarted" in fail.message
    assert of(actions, Kill) == [] and of(actions, ForgetHost) == []  # nothing left to kill; it is registering
    assert s.hosts["h1"].alive and s.hosts["h1"].incarnation == 2 and s.hosts["h1"].granules == {}
    # It numbers its granules from the start again: they are new granules, not fenced ones.
    assert s.granule_connected("h1", d1.granule_id, None) == []
    assert s.granules[d1.granule_id].state.value == "idle"


def test_a_worker_that_restarts_after_its_host_died_is_not_fenced_by_old_ids() -> None:
    s = PlannerState(TIMEOUT)
    s.register_host("h1", 1, 0.0, boot="first")
    s.granule_connected("h1", "h1-g0", None)
    tick_until(s, 0.0, TIMEOUT + TICK)
    assert not s.hosts["h1"].alive and s.liveness.fenced_on("h1")
    assert of(s.register_host("h1", 1, TIMEOUT + 2, boot="second"), Kill) == []
    assert s.liveness.fenced_on("h1") == [] and s.granule_connected("h1", "h1-g0", None) == []
