"""Migration at migration points in PlannerState (pure): ask, reserve, serve, rejoin, and what fails."""

from __future__ import annotations

from granny.planner.lifecycle import GranuleState, TaskState
from granny.planner.migration import describe
from granny.planner.policies.base import GranuleMove
from granny.planner.records import (
    DropState,
    Hint,
    Kill,
    MigrateAnswer,
    MigrationEvent,
    ResumeRank,
    StoreState,
)
from granny.planner.state import Dispatch, Fail, JoinRefused, PlannerState, RankAddress, WorldReady

from .test_state import of, planner


def addr(rank: int, host: str) -> RankAddress:
    return RankAddress(host, 100 + rank, "10.0.0.1", 5000 + rank)


def split_world(migrate: bool = True) -> tuple[PlannerState, dict[int, str]]:
    """A 4-rank world pinned 2 + 2 on hosts of 4 slots each: consolidating it saves a host and 4 links."""
    s = planner(("h1", 4), ("h2", 4))
    s.submit("w", "app", 4, app_kind="script", gang=True, hosts=(("h1", 2), ("h2", 2)), migrate=migrate)
    gids = {i: t.granule_id for i, t in enumerate(s.requests["w"].tasks)}
    for i in range(4):
        s.mpi_join(gids[i], "w", i, addr(i, s.requests["w"].tasks[i].host_id))
    return s, gids


def test_a_split_world_is_told_to_move_and_the_targets_are_reserved_at_once() -> None:
    s, gids = split_world()
    actions = s.migrate_ask(gids[0], "w", 0, True, "", now=10.0)
    (answer,) = of(actions, MigrateAnswer)
    assert answer.gen == 1 and len(answer.moves) == 2
    target = answer.moves[0].target
    moved = [m.index for m in answer.moves]
    assert all(m.target == target and m.source != target for m in answer.moves)
    req = s.requests["w"]
    for i in moved:  # the task is the reserved granule's now; the old one still holds its slot
        assert req.tasks[i].host_id == target and req.tasks[i].granule_id != gids[i]
        assert s.granules[req.tasks[i].granule_id].state is GranuleState.BUSY
        assert s.granules[gids[i]].state is GranuleState.BUSY
    assert s.hosts[target].busy() == 4
    (event,) = of(actions, MigrationEvent)
    assert event.kind == "decided" and "1 host(s), 0 link(s)" in event.text


def test_a_move_completes_when_every_rank_joined_the_new_generation() -> None:
    s, gids = split_world()
    (answer,) = of(s.migrate_ask(gids[0], "w", 0, True, "", now=10.0), MigrateAnswer)
    req = s.requests["w"]
    for m in answer.moves:  # the old process serves its state; the reserved granule is sent to pull it
        (resume,) = s.migrate_served(gids[m.index], "w", m.index, 1, "10.0.0.1", 7000 + m.index, b"k" * 16)
        assert resume == ResumeRank(req.tasks[m.index].granule_id, "w", m.index, 1, "10.0.0.1", 7000 + m.index,
                                    b"k" * 16)
    stale = s.mpi_join(gids[1], "w", 1, addr(1, "h1"), gen=0)  # the old generation is over
    assert isinstance(stale[0], JoinRefused)
    actions: list[object] = []
    for i in range(4):
        actions += s.mpi_join(req.tasks[i].granule_id, "w", i, addr(i, req.tasks[i].host_id), gen=1, now=10.25)
    (ready,) = of(actions, WorldReady)  # type: ignore[arg-type]
    assert ready.gen == 1 and {a.host_id for a in ready.ranks} == {answer.moves[0].target}
    (event,) = of(actions, MigrationEvent)  # type: ignore[arg-type]
    assert event.kind == "moved" and event.data["seconds"] == 0.25 and event.text.endswith("in 250 ms")
    assert s.migrations.counts["completed"] == 1 and s.migrations.history["w"][0]["gen"] == 1
    for m in answer.moves:  # the old processes report the rank moved: their slots free when they exit
        assert s.moved_away(gids[m.index], "w", m.index) == [] or True
        assert s.granules[gids[m.index]].tasks == []
        assert s.task_done(gids[m.index], "w", m.index, True)[0] is False  # never the task's end
        s.granule_exited(gids[m.index], "exit code 0")
    assert all(t.state is TaskState.RUNNING for t in req.tasks)
    assert of(s.migrate_ask(req.tasks[0].granule_id, "w", 1, True, "", now=11.0), MigrateAnswer)[0].moves == ()


def test_nothing_moves_while_a_rank_has_something_pending_or_the_app_said_no() -> None:
    s, gids = split_world()
    actions = s.migrate_ask(gids[0], "w", 0, False, "rank 2 has receives posted and not completed", now=1.0)
    (answer,) = of(actions, MigrateAnswer)
    assert answer.moves == () and "refused while rank 2 has receives posted" in answer.reason
    assert of(actions, MigrationEvent)[0].kind == "refused"
    s2, gids2 = split_world(migrate=False)
    (stay,) = of(s2.migrate_ask(gids2[0], "w", 0, True, "", now=1.0), MigrateAnswer)
    assert stay.moves == () and "migrate=False" in stay.reason


def test_only_rank_0_of_a_running_world_may_ask() -> None:
    s, gids = split_world()
    for granule, req in ((gids[1], "w"), (gids[0], "nope"), ("h9-g1", "w")):
        (answer,) = of(s.migrate_ask(granule, req, 0, True, "", now=1.0), MigrateAnswer)
        assert answer.moves == () and "not rank 0" in answer.reason
    assert all(t.host_id for t in s.requests["w"].tasks)


def test_an_old_process_that_dies_before_it_served_its_state_ends_the_world() -> None:
    s, gids = split_world()
    (answer,) = of(s.migrate_ask(gids[0], "w", 0, True, "", now=1.0), MigrateAnswer)
    victim = answer.moves[0].index
    actions = s.granule_exited(gids[victim], "killed by SIGKILL")
    fails = of(actions, Fail)
    assert fails[0].index == victim and "while rank" in fails[0].message and "moving" in fails[0].message
    assert s.requests["w"].final()
    # The other old process still serving is stopped with the world.
    other = next(m.index for m in answer.moves if m.index != victim)
    assert any(k.granule_id == gids[other] for k in of(actions, Kill))


def test_an_old_process_that_dies_after_it_served_leaves_the_rank_to_its_new_granule() -> None:
    s, gids = split_world()
    (answer,) = of(s.migrate_ask(gids[0], "w", 0, True, "", now=1.0), MigrateAnswer)
    m = answer.moves[0]
    s.migrate_served(gids[m.index], "w", m.index, 1, "10.0.0.1", 7000, b"k" * 16)
    assert of(s.granule_exited(gids[m.index], "exit code 0"), Fail) == []
    assert s.requests["w"].tasks[m.index].state is TaskState.RUNNING


def test_a_served_report_that_does_not_match_a_move_is_refused() -> None:
    s, gids = split_world()
    (kill,) = s.migrate_served(gids[1], "w", 1, 1, "10.0.0.1", 7000, b"k" * 16)  # nothing in flight
    assert isinstance(kill, Kill) and kill.granule_id == gids[1]


def test_hints_go_to_worlds_that_would_gain_when_room_appears() -> None:
    s = planner(("h1", 4), ("h2", 4))
    s.submit("b1", "other", 2, app_kind="script", gang=True, hosts=(("h1", 2),))
    s.submit("b2", "other", 2, app_kind="script", gang=True, hosts=(("h2", 2),))
    s.submit("w", "app", 4, app_kind="script", gang=True, hosts=(("h1", 2), ("h2", 2)))
    gids = {i: t.granule_id for i, t in enumerate(s.requests["w"].tasks)}
    asked = s.migrate_ask(gids[0], "w", 0, True, "", now=1.0)
    (stay,) = of(asked, MigrateAnswer)
    assert stay.moves == ()  # every slot is taken: nowhere to consolidate
    # over its optimum: it is hinted to look again at its next point (make_room.py) ...
    assert of(asked, Hint) == [Hint(gids[0], "w")]
    s.migrations.hinted.discard("w")  # (... say it did, and stayed, before the room appeared)
    blocker = s.requests["b1"].tasks
    _, actions = s.task_done(blocker[0].granule_id, "b1", 0, True)
    _, more = s.task_done(blocker[1].granule_id, "b1", 1, True)
    hints = of(actions + more, Hint)
    assert hints == [Hint(gids[0], "w")]  # once: a hinted world is not hinted again
    (answer,) = of(s.migrate_ask(gids[0], "w", 0, True, "", now=2.0), MigrateAnswer)
    assert [(m.source, m.target) for m in answer.moves] == [("h2", "h1"), ("h2", "h1")]


def test_describe_names_rank_ranges() -> None:
    moves = tuple(GranuleMove(i, "h2", "h1") for i in (4, 5, 6, 7)) + (GranuleMove(0, "h3", "h1"),)
    assert describe(moves) == "ranks 4-7 moved h2 -> h1, rank 0 moved h3 -> h1"


def test_a_moving_rank_that_fails_before_it_served_reports_its_own_error_and_frees_its_target() -> None:
    s, gids = split_world()
    (answer,) = of(s.migrate_ask(gids[0], "w", 0, True, "", now=1.0), MigrateAnswer)
    m = answer.moves[0]
    target = s.requests["w"].tasks[m.index].granule_id
    accepted, actions = s.task_done(gids[m.index], "w", m.index, False)  # e.g. its state would not pickle
    assert accepted  # its report (with the real reason) is the rank's outcome
    assert s.requests["w"].tasks[m.index].state is TaskState.FAILED and s.requests["w"].final()
    assert s.granules[target].state is GranuleState.IDLE and s.granules[target].tasks == []
    assert of(actions, Fail) and all(f.index != m.index for f in of(actions, Fail))  # the others are cancelled


def frozen_world() -> tuple[PlannerState, dict[int, str]]:
    """A 4-rank world on h1 under the spot policy, h2 full with another app, h1 evicted: it freezes."""
    from granny.planner.selection import policy_named

    s = planner(("h1", 4), ("h2", 4))
    s.policy = policy_named("spot")
    s.submit("blocker", "other", 4, app_kind="script", gang=True, hosts=(("h2", 4),))
    s.submit("w", "app", 4, app_kind="script", gang=True, hosts=(("h1", 4),))
    gids = {i: t.granule_id for i, t in enumerate(s.requests["w"].tasks)}
    s.migrate_ask(gids[0], "w", 0, True, "", now=1.0)  # its first point: registered, nothing to do
    hints = of(s.mark_evicting("h1"), Hint)
    assert hints == [Hint(gids[0], "w")]  # a freeze is worth a hint too
    actions = s.migrate_ask(gids[0], "w", 0, True, "", now=2.0)
    (answer,) = of(actions, MigrateAnswer)
    assert answer.freeze and answer.moves == () and answer.gen == 1
    return s, gids


def test_a_world_with_nowhere_to_go_freezes_into_the_store_and_waits_first_in_line() -> None:
    s, gids = frozen_world()
    for i in range(4):
        (store,) = s.migrate_served(gids[i], "w", i, 1, "10.0.0.1", 7000 + i, b"k" * 16)
        assert isinstance(store, StoreState) and store.index == i
    events: list[object] = []
    for i in range(4):
        events += s.state_stored("w", i, "g1", "", now=2.5)
    (frozen,) = [e for e in of(events, MigrationEvent) if e.kind == "frozen"]  # type: ignore[arg-type]
    req = s.requests["w"]
    assert req.frozen == 1 and all(t.state is TaskState.QUEUED for t in req.tasks)
    assert s.queue[0] == "w"  # ahead of newer work
    s.submit("later", "third", 1, app_kind="functions")
    for i in range(4):  # the old processes hand over and end: their slots come back
        s.moved_away(gids[i], "w", i)
        s.granule_exited(gids[i], "exit code 0")
        s.granule_connected("h1", f"h1-new{i}", None)
    assert not of(s.schedule(), Dispatch)  # h1 is evicting, h2 is full: it stays frozen
    blocker = s.requests["blocker"].tasks
    thaw: list[object] = []
    for i in range(4):
        thaw += s.task_done(blocker[i].granule_id, "blocker", i, True)[1]
    dispatched = of(thaw, Dispatch)  # type: ignore[arg-type]
    world = [d for d in dispatched if d.req_id == "w"]
    assert len(world) == 4 and all(d.thaw == 1 for d in world)
    assert all(t.host_id == "h2" for t in req.tasks)
    joined: list[object] = []
    for i, t in enumerate(req.tasks):
        joined += s.mpi_join(t.granule_id, "w", i, addr(i, "h2"), gen=1, now=9.0)
    assert of(joined, WorldReady)  # type: ignore[arg-type]
    (thawed,) = of(joined, MigrationEvent)  # type: ignore[arg-type]
    assert thawed.kind == "thawed" and thawed.data["frozen_s"] == 6.5
    assert of(joined, DropState) == [DropState("w", "g1")] and req.frozen == 0  # type: ignore[arg-type]


def test_a_rank_whose_state_could_not_be_stored_fails_the_frozen_world() -> None:
    s, gids = frozen_world()
    for i in range(4):
        s.migrate_served(gids[i], "w", i, 1, "10.0.0.1", 7000 + i, b"k" * 16)
    s.state_stored("w", 0, "g1", "", now=2.5)
    actions = s.state_stored("w", 1, "g1", "the connection closed after 12 of 99 bytes", now=2.5)
    fails = of(actions, Fail)
    assert fails[0].index == 1 and "could not be frozen" in fails[0].message
    assert s.requests["w"].final() and not s.requests["w"].frozen


def checkpointed_world() -> tuple[PlannerState, dict[int, str]]:
    """A 4-rank world split 2 + 2 that may not migrate, with one complete checkpoint (number 1)."""
    s, gids = split_world(migrate=False)
    (answer,) = of(s.migrate_ask(gids[0], "w", 0, True, "", now=1.0, checkpoint=True), MigrateAnswer)
    assert answer.checkpoint == 1 and answer.moves == () and not answer.freeze
    for i in range(4):
        (store,) = s.migrate_served(gids[i], "w", i, 0, "10.0.0.1", 7000 + i, b"k" * 16, checkpoint=1)
        assert store == StoreState("w", i, "c1", "10.0.0.1", 7000 + i, b"k" * 16)
    events: list[object] = []
    for i in range(4):
        events += s.state_stored("w", i, "c1", "", now=1.5)
    assert [e.kind for e in of(events, MigrationEvent)] == ["checkpoint"]  # type: ignore[arg-type]
    assert s.requests["w"].checkpoint == 1
    return s, gids


def test_a_newer_checkpoint_replaces_the_older_once_complete_and_a_failed_one_changes_nothing() -> None:
    s, gids = checkpointed_world()
    (answer,) = of(s.migrate_ask(gids[0], "w", 0, True, "", now=2.0, checkpoint=True), MigrateAnswer)
    assert answer.checkpoint == 2
    for i in range(4):
        s.migrate_served(gids[i], "w", i, 0, "10.0.0.1", 7000 + i, b"k" * 16, checkpoint=2)
    actions: list[object] = []
    for i in range(4):
        actions += s.state_stored("w", i, "c2", "", now=2.5)
    assert s.requests["w"].checkpoint == 2 and DropState("w", "c1") in actions
    (answer,) = of(s.migrate_ask(gids[0], "w", 0, True, "", now=3.0, checkpoint=True), MigrateAnswer)
    s.migrate_served(gids[0], "w", 0, 0, "10.0.0.1", 7000, b"k" * 16, checkpoint=3)
    failed = s.state_stored("w", 0, "c3", "the connection closed", now=3.5)
    assert DropState("w", "c3") in failed and s.requests["w"].checkpoint == 2
    assert all(t.state is TaskState.RUNNING for t in s.requests["w"].tasks)  # the run goes on


def test_a_world_whose_host_dies_restarts_every_rank_from_its_checkpoint() -> None:
    s, gids = checkpointed_world()
    s.heartbeat("h1", now=5.0)
    s.tick(now=4.0)
    actions = s.tick(now=5.0)  # h2 missed its heartbeats: declared dead
    req = s.requests["w"]
    assert not of(actions, Fail) and not req.final()
    (event,) = [e for e in of(actions, MigrationEvent) if e.kind == "recovering"]
    assert "checkpoint 1" in event.text and "h2" in event.text
    survivors = {k.granule_id for k in of(actions, Kill) if k.host_id == "h1"}
    assert survivors == {gids[i] for i in range(4) if gids[i].startswith("h1")}
    assert req.frozen == 1 and req.thaw_from == "c1"  # the world's generation 1, from checkpoint 1
    placing: list[object] = []
    for gid in survivors:  # the survivors end (their exit is not the tasks' end), and are replaced
        assert not of(s.granule_exited(gid, "killed"), Fail)
        placing += s.granule_connected("h1", f"{gid}-new", None)
    placed = [d for d in of(placing, Dispatch) if d.req_id == "w"]  # type: ignore[arg-type]
    assert len(placed) == 4 and all(d.thaw == 1 for d in placed)
    joined: list[object] = []
    for i, t in enumerate(req.tasks):
        joined += s.mpi_join(t.granule_id, "w", i, addr(i, "h1"), gen=1, now=6.0)
    (done,) = of(joined, MigrationEvent)  # type: ignore[arg-type]
    assert done.kind == "recovered" and not of(joined, DropState)  # type: ignore[arg-type]
    assert req.checkpoint == 1 and req.frozen == 0 and req.thaw_from == ""


def test_an_idempotent_call_on_an_evicted_host_runs_again_elsewhere() -> None:
    s = planner(("h1", 1), ("h2", 1))
    s.submit("call", "fns", 1, retries=1, hosts=(("h2", 1),))
    s.submit("plain", "fns", 1, hosts=(("h1", 1),))
    gid = s.requests["call"].tasks[0].granule_id
    s.evict("h2", now=1.0, grace=5.0)
    s.heartbeat("h1", now=6.5)
    s.tick(now=5.0)
    actions = s.tick(now=7.0)  # the notice ran out with the call still there
    assert not [f for f in of(actions, Fail) if f.req_id == "call"]
    req = s.requests["call"]
    assert req.reruns == 1 and req.retries == 0 and req.tasks[0].granule_id != gid
    assert req.tasks[0].state is TaskState.QUEUED  # h1 is busy: it waits first in line
    _, freed = s.task_done(s.requests["plain"].tasks[0].granule_id, "plain", 0, True)
    assert [d.req_id for d in of(freed, Dispatch)] == ["call"] and req.tasks[0].host_id == "h1"
