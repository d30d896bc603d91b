"""Eviction notices in PlannerState (pure), driven by a virtual clock: no new work on the host, worlds hinted
to move off it, and at the deadline what still runs there fails naming the eviction and the worker is stopped."""

from __future__ import annotations

import pytest

from granny.errors import ConfigError
from granny.planner import eviction
from granny.planner.lifecycle import TaskState
from granny.planner.policies import Spot
from granny.planner.records import Hint, MigrateAnswer
from granny.planner.state import Dispatch, Fail, Kill, PlannerState, StopWorker

from .test_state import TIMEOUT, add_host, of, planner
from .test_state_clock import run
from .test_state_migration import addr

WHY = "host a was evicted (spot notice given 10s before)"


def test_a_notice_keeps_new_work_off_the_host_whatever_the_policy() -> None:
    s = planner(("a", 2), ("b", 2))  # bin-pack: no rule of its own about evictions
    assert s.evict("a", 0.0, 10.0) == []
    placed = of(s.submit("r1", "app", 2, gang=True), Dispatch) + of(s.submit("r2", "app2", 1), Dispatch)
    assert {s.granules[d.granule_id].host_id for d in placed} == {"b"}
    assert s.requests["r2"].tasks[0].state is TaskState.QUEUED  # a has room, but is being taken back
    assert s.evictions.evicting_in("a", 4.0) == 6.0 and s.evictions.evicting_in("b", 4.0) is None


def test_at_the_deadline_what_runs_there_fails_naming_the_eviction_and_the_worker_is_stopped() -> None:
    s = planner(("a", 2), ("b", 2))
    s.tick(0.0)
    (d,) = of(s.submit("r1", "app", 1, app_kind="script", hosts=(("a", 1),)), Dispatch)
    assert s.granules[d.granule_id].host_id == "a"
    assert s.evict("a", 0.0, 10.0) == []
    assert s.next_deadline() is not None and s.next_deadline() <= 10.0  # type: ignore[operator]

    events = run(s, 20.0, beating={"a", "b"})

    (fail,) = [(t, a) for t, a in events if isinstance(a, Fail)]
    assert fail[0] == 10.0 and fail[1].req_id == "r1" and fail[1].error_kind == "evicted"
    assert fail[1].message == WHY and fail[1].host_id == "a"
    assert sorted((t, a.granule_id) for t, a in events if isinstance(a, Kill)) == [(10.0, "a-g0"), (10.0, "a-g1")]
    assert [(t, a) for t, a in events if isinstance(a, StopWorker)] == [(10.0, StopWorker("a", WHY))]
    assert not s.hosts["a"].alive and s.capacity() == 2 and "a" not in s.evicting
    assert s.apps["app"].state.value == "failed"
    assert s.evictions.notices == {} and s.evictions.evicted["a"].grace == 10.0
    assert s.hosts["b"].alive  # the other host heartbeats on; nothing else happened to it
    assert s.granule_connected("a", "a-g0", None) == [Kill("a", "a-g0", "its host is not registered")]


def test_a_call_prefetched_behind_one_on_the_host_goes_back_to_the_queue() -> None:
    s = planner(("a", 1))
    (d1,) = of(s.submit("r1", "app", 1, prefetch=True), Dispatch)
    (d2,) = of(s.submit("r2", "app", 1, prefetch=True), Dispatch)
    assert d2.prefetched and d2.granule_id == d1.granule_id
    add_host(s, "b", 1)
    assert of(s.submit("r3", "app", 1, prefetch=True), Dispatch)[0].granule_id == "b-g0"
    s.evict("a", 1.0, 2.0)
    assert of(s.submit("r4", "app", 1, prefetch=True), Dispatch)[0].granule_id == "b-g0"  # not behind a's call
    actions = s.tick(3.0)
    assert [(f.req_id, f.error_kind) for f in of(actions, Fail)] == [("r1", "evicted")]
    assert s.requests["r2"].tasks[0].state is TaskState.QUEUED  # it never started: it is not lost
    later = s.task_done("b-g0", "r3", 0, True)[1] + s.task_done("b-g0", "r4", 0, True)[1]
    assert [(d.req_id, d.granule_id) for d in of(later, Dispatch)] == [("r2", "b-g0")]


def test_restoring_before_the_deadline_lifts_the_notice() -> None:
    s = planner(("a", 1))
    s.tick(0.0)
    s.evict("a", 0.0, 10.0)
    assert of(s.submit("r1", "app", 1), Dispatch) == []
    assert [d.req_id for d in of(s.restore_host("a"), Dispatch)] == ["r1"]  # it takes work again at once
    events = run(s, 30.0, beating={"a"})
    assert not [a for _, a in events if isinstance(a, Fail | StopWorker | Kill)]
    assert s.hosts["a"].alive and s.evictions.notices == {} and s.evicting == set()


def test_a_worker_that_registers_again_after_the_eviction_brings_the_capacity_back() -> None:
    s = planner(("a", 2), ("b", 1))
    s.evict("a", 0.0, 0.0)  # no grace: taken back at once
    assert not s.hosts["a"].alive and s.capacity() == 1
    assert [d.granule_id for d in of(s.submit("r1", "app", 1) + s.submit("r2", "app", 1), Dispatch)] == ["b-g0"]
    s.register_host("a", 2, 5.0, boot="new")  # a new worker process for the host (a new spot VM of the same name)
    s.granule_connected("a", "a-new-g1", None)
    assert s.hosts["a"].alive and s.hosts["a"].incarnation == 2 and s.capacity() == 3
    assert s.requests["r2"].tasks[0].host_id == "a"
    assert "a" in s.evictions.evicted  # shown as evicted until restored ...
    s.restore_host("a")
    assert "a" not in s.evictions.evicted  # ... or evicted again


def test_a_world_with_migration_points_is_hinted_to_move_off_the_host_under_spot() -> None:
    s = PlannerState(TIMEOUT, policy=Spot())
    for host_id in ("h1", "h2", "h3"):
        add_host(s, host_id, 2)
    s.submit("w", "app", 4, app_kind="script", gang=True, hosts=(("h1", 2), ("h2", 2)))
    gids = {i: t.granule_id for i, t in enumerate(s.requests["w"].tasks)}
    for i in range(4):
        s.mpi_join(gids[i], "w", i, addr(i, s.requests["w"].tasks[i].host_id))
    (stay,) = of(s.migrate_ask(gids[0], "w", 0, True, "", now=1.0), MigrateAnswer)  # its first point
    assert stay.moves == ()
    assert of(s.evict("h2", 2.0, 10.0), Hint) == [Hint(gids[0], "w")]
    (order,) = of(s.migrate_ask(gids[0], "w", 0, True, "", now=3.0), MigrateAnswer)
    assert sorted((m.index, m.source, m.target) for m in order.moves) == [(2, "h2", "h3"), (3, "h2", "h3")]


def test_a_notice_read_back_from_the_journal_holds_again_once_its_host_registers() -> None:
    """A restarted planner (evicting.restore_notices) keeps a notice until its host registers again."""
    s = planner(("a", 2))
    s.evictions.restored["b"] = eviction.Notice("b", given=0.0, grace=10.0)
    assert s.evictions.next_deadline() is None and "b" not in s.evicting  # no such host yet
    s.register_host("b", 2, 1.0)
    assert "b" in s.evicting and s.evictions.next_deadline() == 10.0 and not s.evictions.restored
    assert {s.granules[d.granule_id].host_id for d in of(s.submit("r1", "app", 2), Dispatch)} == {"a"}  # not on b
    assert of(s.tick(10.0), StopWorker) == [StopWorker("b", "host b was evicted (spot notice given 10s before)")]
    assert not s.hosts["b"].alive


def test_a_notice_names_a_known_host_and_a_grace_of_zero_or_more() -> None:
    s = planner(("a", 1))
    with pytest.raises(KeyError):
        s.evict("nope", 0.0, 1.0)
    with pytest.raises(KeyError):
        s.restore_host("nope")
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ConfigError, match="grace"):
            s.evict("a", 0.0, bad)
    s.evict("a", 0.0, 10.0)
    s.evict("a", 1.0, 2.0)  # a second notice replaces the first
    assert s.evictions.next_deadline() == 3.0
    assert s.tick(3.0) and not s.hosts["a"].alive


def test_the_worker_told_to_stop_is_told_again_if_it_registers_anyway() -> None:
    s = PlannerState(TIMEOUT)
    s.register_host("a", 1, 0.0, boot="first")
    s.evict("a", 0.0, 0.0)
    # Its connection was down at the deadline: it reconnects and registers, as the same process.
    assert s.register_host("a", 1, 1.0, boot="first") == [StopWorker("a", "host a was evicted (spot notice given 0s "
                                                                           "before)")]
    assert not s.hosts["a"].alive and s.capacity() == 0
    s.register_host("a", 1, 2.0, boot="second")  # a new worker process for the host
    assert s.hosts["a"].alive and s.hosts["a"].incarnation == 2
    assert s.register_host("a", 1, 3.0, boot="first") != [StopWorker("a", "host a was evicted (spot notice given "
                                                                           "0s before)")]  # alive: not refused


def test_a_world_at_its_last_point_before_the_deadline_freezes_rather_than_wait_for_room() -> None:
    # h1's slots are free but its granules are still starting: room is being freed. Early in the notice the
    # world waits for it (and uses h2 meanwhile); at its last point before the deadline it must freeze, or
    # it would still be on h2 when h2 is taken back.
    s = PlannerState(TIMEOUT, policy=Spot())
    add_host(s, "h2", 2)
    s.register_host("h1", 2, 0.0)  # no granule connected yet
    s.submit("w", "app", 2, app_kind="script", gang=True, hosts=(("h2", 2),))
    gids = {i: t.granule_id for i, t in enumerate(s.requests["w"].tasks)}
    for i in range(2):
        s.mpi_join(gids[i], "w", i, addr(i, "h2"))
    of(s.migrate_ask(gids[0], "w", 0, True, "", now=0.5), MigrateAnswer)  # its first point
    s.evict("h2", 1.0, 10.0)  # taken back at 11
    early = s.migrate_ask(gids[0], "w", 0, True, "", now=2.0, interval=0.5)
    (stay,) = of(early, MigrateAnswer)
    assert not stay.freeze and of(early, Hint) == [Hint(gids[0], "w")]  # asked again at its next point
    (last,) = of(s.migrate_ask(gids[0], "w", 0, True, "", now=8.5, interval=0.5), MigrateAnswer)
    assert last.freeze, last.reason


def test_under_bin_pack_a_world_on_a_host_under_notice_is_not_asked_again_at_every_point() -> None:
    # Only the spot policy moves a world off such a host; under bin-pack another ask would only cost a round trip.
    s = PlannerState(TIMEOUT)
    add_host(s, "h2", 2)
    add_host(s, "h1", 2)
    s.submit("w", "app", 2, app_kind="script", gang=True, hosts=(("h2", 2),))
    gids = {i: t.granule_id for i, t in enumerate(s.requests["w"].tasks)}
    for i in range(2):
        s.mpi_join(gids[i], "w", i, addr(i, "h2"))
    of(s.migrate_ask(gids[0], "w", 0, True, "", now=0.5), MigrateAnswer)
    s.evict("h2", 1.0, 10.0)
    stayed = s.migrate_ask(gids[0], "w", 0, True, "", now=2.0, interval=0.5)
    assert of(stayed, MigrateAnswer)[0].moves == () and of(stayed, Hint) == []
