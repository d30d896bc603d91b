"""Making room (planner/make_room.py): a split world that stays at its point gets another world moved out of
its way, and gathers into the room at its next point; the holds are soft."""

from __future__ import annotations

from granny.planner.make_room import optimum, repack_key
from granny.planner.records import Hint, MigrateAnswer
from granny.planner.state import Dispatch, PlannerState

from .test_state import of, planner
from .test_state_migration import addr


def crowded() -> PlannerState:
    """Hosts of 4. h1: W's ranks 0-1 and V (whole); h2: W's ranks 2-3 and X; h3: Y, and 2 free slots.
    W (4 ranks, 4 links) cannot gather alone: no host has 4 slots for it. If V went to h3, h1 would."""
    s = planner(("h1", 4), ("h2", 4), ("h3", 4))
    for req, host in (("v", "h1"), ("x", "h2"), ("y", "h3")):
        s.submit(req, "app-" + req, 2, app_kind="script", gang=True, hosts=((host, 2),))
    s.submit("w", "app-w", 4, app_kind="script", gang=True, hosts=(("h1", 2), ("h2", 2)))
    for req in ("v", "x", "y", "w"):
        for i, t in enumerate(s.requests[req].tasks):
            s.mpi_join(t.granule_id, req, i, addr(i, t.host_id))
    for req in ("v", "x", "y"):  # their first points: each is whole on a host, nothing to gain
        (stay,) = of(s.migrate_ask(s.requests[req].tasks[0].granule_id, req, 0, True, "", now=1.0), MigrateAnswer)
        assert stay.moves == ()
    return s


def move(s: PlannerState, req_id: str, answer: MigrateAnswer, old: dict[int, str]) -> None:
    """Carry a decided move out as the ranks would: serve, rejoin as the next generation, exit."""
    req = s.requests[req_id]
    for mv in answer.moves:
        s.migrate_served(old[mv.index], req_id, mv.index, answer.gen, "10.0.0.1", 7000, b"k" * 16)
    for i, t in enumerate(req.tasks):
        s.mpi_join(t.granule_id, req_id, i, addr(i, t.host_id), gen=answer.gen, now=2.0)
    for n, mv in enumerate(answer.moves):  # the old process exits; its worker starts a fresh granule
        s.moved_away(old[mv.index], req_id, mv.index)
        s.granule_exited(old[mv.index], "exit code 0")
        s.granule_connected(mv.source, f"{mv.source}/fresh-{req_id}-{n}", None)


def ask(s: PlannerState, req_id: str, now: float) -> tuple[MigrateAnswer, list[object]]:
    gen = s.migrations.gen(req_id)
    actions = s.migrate_ask(s.requests[req_id].tasks[0].granule_id, req_id, gen, True, "", now=now)
    (answer,) = of(actions, MigrateAnswer)
    return answer, list(actions)


def test_a_split_world_gathers_after_a_whole_world_moves_out_of_its_way() -> None:
    s = crowded()
    stay, actions = ask(s, "w", 2.0)
    assert stay.moves == ()
    v0 = s.requests["v"].tasks[0].granule_id
    assert Hint(v0, "v") in actions  # V is asked to move at its next point ...
    assert Hint(s.requests["w"].tasks[0].granule_id, "w") in actions  # ... and W to look again at its own
    # the plan holds h3's 2 free slots for V: another app's 2-rank request, which fits nowhere else, ends it
    old_v = {i: t.granule_id for i, t in enumerate(s.requests["v"].tasks)}
    answer, _ = ask(s, "v", 3.0)
    assert [(m.source, m.target) for m in answer.moves] == [("h1", "h3"), ("h1", "h3")]
    assert "making room for w" in answer.reason
    move(s, "v", answer, old_v)
    assert s.holds.room["w"][1] == {"h1": 2}  # the slots V left are W's
    # Soft: another app's request that only the room holds (every other slot is taken) ends the plan
    # and takes it, rather than wait while the room idles until W's next point.
    assert [d.req_id for d in of(s.submit("z", "app-z", 2, app_kind="script", gang=True), Dispatch)] == ["z", "z"]
    assert {t.host_id for t in s.requests["z"].tasks} == {"h1"} and not s.holds.room
    again, _ = ask(s, "w", 4.0)
    assert again.moves == ()


def test_the_room_made_is_spent_by_the_world_it_was_made_for() -> None:
    s = crowded()
    ask(s, "w", 2.0)
    old_v = {i: t.granule_id for i, t in enumerate(s.requests["v"].tasks)}
    answer, _ = ask(s, "v", 3.0)
    move(s, "v", answer, old_v)
    gathered, _ = ask(s, "w", 4.0)
    assert sorted((m.source, m.target) for m in gathered.moves) == [("h2", "h1"), ("h2", "h1")]
    assert not s.holds.room and not s.holds.moving


def test_no_plan_for_a_world_at_its_optimum_or_when_no_move_helps() -> None:
    s = planner(("h1", 4), ("h2", 4))
    s.submit("v", "app-v", 2, app_kind="script", gang=True, hosts=(("h1", 2),))
    s.submit("w", "app-w", 6, app_kind="script", gang=True, hosts=(("h1", 2), ("h2", 4)))  # 4 + 2: optimum
    for req in ("v", "w"):
        answer, actions = ask(s, req, 1.0)
        assert answer.moves == () and of(actions, Hint) == []
    assert not s.holds.moving


def test_a_plan_ends_when_the_world_it_was_for_ends() -> None:
    s = crowded()
    ask(s, "w", 2.0)
    assert "v" in s.holds.moving
    for i, t in enumerate(s.requests["w"].tasks):
        s.task_done(t.granule_id, "w", i, True)
    answer, _ = ask(s, "v", 3.0)
    assert answer.moves == () and not s.holds.moving


def test_repack_key_and_optimum() -> None:
    assert optimum(13, 8) == 40 and optimum(8, 8) == 0 and optimum(5, 8) == 0
    assert repack_key([4, 3, 8], 13) == (3, 8 * 4 + 8 * 1 + 4 * 1)  # 8 + 4 + 1
    assert repack_key([2, 2], 5) == (6, 0)  # does not fit: worse than any placement
