"""Slots held for an OpenMP-style job's team in the pure planner state (planner/holds.py): thread 0 starts
only where its team fits, a new app's request cannot take the team's slots, and the team goes first."""

from __future__ import annotations

import json

from granny.planner.lifecycle import AppKind, TaskState
from granny.planner.policies import FirstFit, WholeHosts
from granny.planner.records import MigrateAnswer
from granny.planner.state import Dispatch, PlannerState, RankAddress

from .test_state import TIMEOUT, add_host, of, planner, state_of


def hosts_of(s: PlannerState, req_id: str) -> list[str]:
    return [t.host_id or "" for t in s.requests[req_id].tasks]


def test_a_new_app_cannot_take_the_slot_held_for_a_running_apps_team() -> None:
    # bin-pack puts a new request on the fullest host that holds it: without the hold, job B's thread 0
    # would take h2's last slot, next to A's thread 0, and A's team would go across to h1
    s = planner(("h1", 2), ("h2", 2))
    assert len(of(s.submit("a0", "A", 1, gang=True, team=1), Dispatch)) == 1
    assert hosts_of(s, "a0") == ["h2"]
    s.submit("b0", "B", 1, gang=True)
    assert hosts_of(s, "b0") == ["h1"]
    s.submit("a-team", "A", 1, gang=True)
    assert hosts_of(s, "a-team") == ["h2"]
    assert not s.holds.held  # the team took its slot


def test_thread_0_waits_until_its_whole_team_fits() -> None:
    s = planner(("h1", 2))
    s.submit("other", "O", 1, gang=True)
    assert of(s.submit("a0", "A", 1, gang=True, team=1), Dispatch) == []  # one free slot: not half-placed
    assert state_of(s, "a0") is TaskState.QUEUED
    granule = s.requests["other"].tasks[0].granule_id
    _, actions = s.task_done(granule, "other", 0, ok=True)
    assert [d.req_id for d in of(actions, Dispatch)] == ["a0"]


def test_the_team_goes_ahead_of_a_waiting_queue_head() -> None:
    s = planner(("h1", 2), ("h2", 1))
    s.submit("a0", "A", 1, gang=True, team=1)
    assert hosts_of(s, "a0") == ["h1"]
    assert of(s.submit("b", "B", 2, gang=True), Dispatch) == []  # h2's slot alone does not hold it: it waits
    actions = s.submit("a-team", "A", 1, gang=True)
    assert [(d.req_id, d.index) for d in of(actions, Dispatch)] == [("a-team", 0)]
    assert hosts_of(s, "a-team") == ["h1"]


def test_a_hold_ends_with_the_job_that_never_leased_its_team() -> None:
    s = planner(("h1", 2))
    s.submit("a0", "A", 1, gang=True, team=1)
    assert of(s.submit("b0", "B", 1, gang=True), Dispatch) == []  # h1's other slot is A's team's
    granule = s.requests["a0"].tasks[0].granule_id
    _, actions = s.task_done(granule, "a0", 0, ok=True)
    assert [d.req_id for d in of(actions, Dispatch)] == ["b0"]
    assert not s.holds.held


def test_whole_hosts_gives_a_job_and_its_team_one_host_set() -> None:
    s = planner(("h1", 2), ("h2", 2))
    s.policy = WholeHosts()
    s.submit("a0", "A", 1, gang=True, team=1)
    s.submit("a-team", "A", 1, gang=True)
    assert hosts_of(s, "a0") + hosts_of(s, "a-team") == ["h1", "h1"]
    s.submit("b0", "B", 1, gang=True, team=1)
    assert hosts_of(s, "b0") == ["h2"]


def test_a_team_split_across_hosts_is_held_where_it_was_placed() -> None:
    s = planner(("h1", 1), ("h2", 2))
    s.policy = FirstFit()
    s.submit("x", "X", 1, gang=True)  # h1 full
    s.submit("a0", "A", 1, gang=True, team=2)  # needs 3 slots: h2 has 2, h1 none: waits
    assert state_of(s, "a0") is TaskState.QUEUED
    _, actions = s.task_done(s.requests["x"].tasks[0].granule_id, "x", 0, ok=True)
    assert [d.req_id for d in of(actions, Dispatch)] == ["a0"]
    s.submit("c", "C", 1, gang=True)  # every other slot is A's
    assert state_of(s, "c") is TaskState.QUEUED
    s.submit("a-team", "A", 2, gang=True)
    assert sorted(hosts_of(s, "a0") + hosts_of(s, "a-team")) == ["h1", "h2", "h2"]


def test_holds_are_journaled_as_settings_and_restored_after_a_restart() -> None:
    s = planner(("h1", 2), ("h2", 2))
    s.submit("a0", "A", 1, gang=True, team=1)
    settings = dict(s.holds.changes())
    assert json.loads(settings["hold:A"]) == {"req": "a0", "hosts": {"h2": 1}}
    assert s.holds.changes() == []  # nothing new to journal
    # the restarted planner: the holding request restored, then reported by its granule on h2
    r = PlannerState(TIMEOUT)
    r.restore("a0", "A", 1, (), AppKind.FUNCTIONS, "", gang=True)
    r.holds.restore({**settings, "hold:gone": json.dumps({"req": "zz", "hosts": {"h1": 1}}), "policy": "x"},
                    {"a0": 1}, r.requests)
    add_host(r, "h1", 2)
    r.register_host("h2", 2, 0.0)
    r.granule_connected("h2", "h2-g0", ("a0", 0))
    r.granule_connected("h2", "h2-g1", None)
    assert state_of(r, "a0") is TaskState.RUNNING
    assert set(r.holds.held) == {"A"} and r.holds.held["A"][1] == {"h2": 1}
    assert r.holds.changes() == []  # what the journal holds already
    r.submit("b0", "B", 1, gang=True)
    assert hosts_of(r, "b0") == ["h1"]  # not into the held slot on h2
    r.submit("a-team", "A", 1, gang=True)
    assert hosts_of(r, "a-team") == ["h2"]
    assert r.holds.changes() == [("hold:A", "")]  # consumed: journaled as no hold


def test_a_restored_queued_thread_0_still_waits_for_its_whole_team() -> None:
    r = planner(("h1", 2))
    r.submit("other", "O", 1, gang=True)
    r.restore("a0", "A", 1, (), AppKind.FUNCTIONS, "", gang=True)
    r.holds.restore({}, {"a0": 1}, r.requests)
    r.queue.append("a0")
    assert of(r.schedule(), Dispatch) == []  # one free slot: its team would not fit beside it


def test_a_delay_tolerant_call_does_not_take_a_slot_held_for_a_team() -> None:
    s = planner(("h1", 2))
    s.submit("a0", "A", 1, gang=True, team=1)
    assert hosts_of(s, "a0") == ["h1"] and s.holds.held["A"][1] == {"h1": 1}
    assert of(s.submit("later", "C", 1, tolerance=-1, key="f", now=0.0), Dispatch) == []  # (batch.py's own placement)
    assert state_of(s, "later") is TaskState.QUEUED
    assert [d.req_id for d in of(s.submit("a-team", "A", 1, gang=True), Dispatch)] == ["a-team"]
    assert hosts_of(s, "a-team") == ["h1"]


def test_a_migrating_world_does_not_move_into_a_slot_held_for_a_team() -> None:
    # without the hold, bin-pack would gather the world on h1, into the two slots held for A's team
    s = planner(("h1", 4), ("h2", 2))
    s.submit("w", "W", 2, app_kind="script", gang=True, hosts=(("h1", 1), ("h2", 1)))
    gids = {i: t.granule_id for i, t in enumerate(s.requests["w"].tasks)}
    for i in range(2):
        s.mpi_join(gids[i], "w", i, RankAddress(s.requests["w"].tasks[i].host_id, 100 + i, "10.0.0.1", 5000 + i))
    s.submit("a0", "A", 1, gang=True, team=2)
    assert hosts_of(s, "a0") == ["h1"] and s.holds.held["A"][1] == {"h1": 2}
    (answer,) = of(s.migrate_ask(gids[0], "w", 0, True, "", now=10.0), MigrateAnswer)
    assert [(m.index, m.target) for m in answer.moves] == [(0, "h2")]  # the world gathers on h2, not into the hold


def test_a_finishing_worlds_slots_come_back_together() -> None:
    # A world of 4 on h1 ends one rank at a time (as its Done messages arrive). Taking each slot as it
    # frees, the waiting 4-rank job would start over both hosts; it waits for the world's last rank
    # and starts whole on h1.
    s = planner(("h1", 4), ("h2", 2))
    s.submit("w", "W", 4, gang=True)
    s.submit("x", "X", 1, gang=True)  # h2: one free slot left
    assert of(s.submit("q", "Q", 4, gang=True), Dispatch) == []
    ranks = s.requests["w"].tasks
    for index in range(3):
        _, actions = s.task_done(ranks[index].granule_id, "w", index, ok=True)
        assert of(actions, Dispatch) == [], f"the queued job started after rank {index} of 4 ended"
        assert state_of(s, "q") is TaskState.QUEUED
    _, actions = s.task_done(ranks[3].granule_id, "w", 3, ok=True)
    assert sorted(d.index for d in of(actions, Dispatch)) == [0, 1, 2, 3]
    assert hosts_of(s, "q") == ["h1"] * 4
    assert not s.holds.ending


def test_the_slots_of_a_world_that_fails_are_free_at_once() -> None:
    s = planner(("h1", 2), ("h2", 1))
    s.submit("w", "W", 2, gang=True)
    s.submit("q", "Q", 2, gang=True)
    _, actions = s.task_done(s.requests["w"].tasks[0].granule_id, "w", 0, ok=True)
    assert of(actions, Dispatch) == []
    _, actions = s.task_done(s.requests["w"].tasks[1].granule_id, "w", 1, ok=False)
    assert sorted(d.index for d in of(actions, Dispatch)) == [0, 1]
    assert hosts_of(s, "q") == ["h1", "h1"] and not s.holds.ending


def test_a_rank_that_ended_keeps_its_slot_for_its_own_app_only() -> None:
    s = planner(("h1", 2))
    s.submit("w", "W", 2, gang=True)
    s.task_done(s.requests["w"].tasks[0].granule_id, "w", 0, ok=True)
    assert [d.req_id for d in of(s.submit("w-more", "W", 1, gang=True), Dispatch)] == ["w-more"]  # its own app may
    s.task_done(s.requests["w-more"].tasks[0].granule_id, "w-more", 0, ok=True)
    assert of(s.submit("other", "O", 1, gang=True), Dispatch) == []  # another app waits for the world's end
    _, actions = s.task_done(s.requests["w"].tasks[1].granule_id, "w", 1, ok=True)
    assert [d.req_id for d in of(actions, Dispatch)] == ["other"]


def test_a_world_whose_last_rank_retires_is_placed_over_when_its_fresh_granule_arrives() -> None:
    # Live, a script rank's process exits after its Done and the worker starts a fresh granule in its
    # slot. The waiting job must not be placed at the last Done or at that exit, with one slot missing
    # (it would be split), but when the fresh granule connects.
    s = planner(("h1", 4), ("h2", 2))
    s.submit("w", "W", 4, gang=True)
    s.submit("x", "X", 1, gang=True)
    s.submit("q", "Q", 4, gang=True)
    ranks = s.requests["w"].tasks
    for index in range(4):
        gid = ranks[index].granule_id
        s.granule_disconnected(gid)  # as the server on a retiring rank's Done
        _, actions = s.task_done(gid, "w", index, ok=True)
        assert of(actions, Dispatch) == []
        assert of(s.granule_exited(gid, "exit code 0"), Dispatch) == []
        if index < 3:
            assert of(s.granule_connected("h1", f"h1/fresh{index}", None), Dispatch) == []
    assert state_of(s, "q") is TaskState.QUEUED and not s.holds.quiet
    actions = s.granule_connected("h1", "h1/fresh3", None)
    assert sorted(d.index for d in of(actions, Dispatch)) == [0, 1, 2, 3]
    assert hosts_of(s, "q") == ["h1"] * 4


def test_a_world_gathers_into_room_that_another_apps_hold_leaves_once() -> None:
    # h3 has 7 slots: a team's thread 0 and its held slot leave 5 for others, exactly what the split
    # world W (3 + 2) needs to gather. (The bin-pack fast path once took the held slot off twice.)
    from granny.planner.records import MigrateAnswer

    from .test_state_migration import addr

    s = planner(("h1", 3), ("h2", 2), ("h3", 7))
    s.submit("w", "W", 5, app_kind="script", gang=True, hosts=(("h1", 3), ("h2", 2)))
    s.submit("t0", "T", 1, gang=True, team=1)
    assert hosts_of(s, "t0") == ["h3"] and s.holds.held["T"][1] == {"h3": 1}
    for i, t in enumerate(s.requests["w"].tasks):
        s.mpi_join(t.granule_id, "w", i, addr(i, t.host_id))
    (answer,) = of(s.migrate_ask(s.requests["w"].tasks[0].granule_id, "w", 0, True, "", now=1.0), MigrateAnswer)
    assert {m.target for m in answer.moves} == {"h3"} and len(answer.moves) == 5
