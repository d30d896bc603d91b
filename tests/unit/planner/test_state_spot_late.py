"""The spot policy's ``spot-late`` option: a world on a host under notice stays until its last migration point
before the deadline, even when the other hosts have room for it now (pure core, virtual clock)."""

from __future__ import annotations

from dataclasses import replace

from granny.planner.policies import (
    POLICIES,
    ClusterView,
    Freeze,
    Move,
    PlacementRequest,
    RunningApp,
    Spot,
    Stay,
)
from granny.planner.policies import build_view as _build_view
from granny.planner.policies.spot import LATE_MARGIN, MARGIN
from granny.planner.records import Dispatch, Hint, MigrateAnswer
from granny.planner.selection import policy_named
from granny.planner.state import PlannerState

from .test_state import TIMEOUT, add_host, of
from .test_state_migration import addr


def view_of(free_elsewhere: int, left: float, interval: float) -> ClusterView:
    """World "mpi" (2 ranks) on host b, under a notice that runs out in ``left`` s; host a has
    ``free_elsewhere`` of its 4 slots free."""
    app = RunningApp("mpi", ("b",) * 2, interval=interval)
    others = [RunningApp("o", ("a",) * (4 - free_elsewhere))] if free_elsewhere < 4 else []
    view = _build_view({"a": 4, "b": 2}, [app, *others], evicting=["b"], now=100.0,
                       queue=(PlacementRequest("waiting", 3),))
    return replace(view, evict_at={"b": 100.0 + left})


def test_spot_late_is_the_spot_policy_with_an_option() -> None:
    late = policy_named("spot-late")
    assert isinstance(late, Spot) and late.late and late.name == "spot-late" and POLICIES["spot-late"] is late
    assert not POLICIES["spot"].late and POLICIES["spot"].margin == MARGIN  # type: ignore[attr-defined]
    assert late.margin == LATE_MARGIN and Spot(late=True, margin=3.0).margin == 3.0


def test_spot_late_stays_with_room_elsewhere_until_its_last_point() -> None:
    late, spot = Spot(late=True), Spot()
    early = view_of(free_elsewhere=4, left=30.0, interval=5.0)
    assert isinstance(spot.migrate(early, "mpi"), Move)  # the default: leaves at once when there is room
    decision = late.migrate(early, "mpi")
    assert isinstance(decision, Stay) and "last migration point" in decision.reason
    # Its next point but one would come later than LATE_MARGIN before the deadline: this is its last point.
    last = view_of(free_elsewhere=4, left=2 * 5.0 + LATE_MARGIN, interval=5.0)
    assert isinstance(late.migrate(last, "mpi"), Move)
    assert isinstance(late.migrate(view_of(free_elsewhere=1, left=10.0, interval=5.0), "mpi"), Freeze)  # no room then
    # Its pace is not known yet (its first point): it leaves at once, as under spot.
    assert isinstance(late.migrate(view_of(free_elsewhere=4, left=30.0, interval=0.0), "mpi"), Move)


def world_on_h2(policy: Spot) -> tuple[PlannerState, dict[int, str]]:
    """A 2-rank world on h2 (its first point passed, so the planner knows it has points); h1 has 2 free slots."""
    s = PlannerState(TIMEOUT, policy=policy)
    add_host(s, "h2", 2)
    add_host(s, "h1", 2)
    s.submit("w", "app", 2, app_kind="script", gang=True, hosts=(("h2", 2),))
    gids = {i: t.granule_id for i, t in enumerate(s.requests["w"].tasks)}
    for i in range(2):
        s.mpi_join(gids[i], "w", i, addr(i, "h2"))
    of(s.migrate_ask(gids[0], "w", 0, True, "", now=0.5), MigrateAnswer)
    return s, gids


def test_under_spot_late_the_world_uses_the_host_under_notice_and_moves_at_its_last_point() -> None:
    s, gids = world_on_h2(Spot(late=True))
    s.evict("h2", 1.0, 10.0)  # taken back at 11
    early = s.migrate_ask(gids[0], "w", 0, True, "", now=2.0, interval=0.5)
    (stay,) = of(early, MigrateAnswer)
    assert stay.moves == () and not stay.freeze and of(early, Hint) == [Hint(gids[0], "w")]  # asked again next point
    # 11 - 9.5 = 1.5 s left <= 2 x 0.5 + LATE_MARGIN: the last point; h1 still has room, so it moves there.
    (last,) = of(s.migrate_ask(gids[0], "w", 0, True, "", now=9.5, interval=0.5), MigrateAnswer)
    assert not last.freeze and {mv.target for mv in last.moves} == {"h1"} and len(last.moves) == 2


def test_under_spot_the_world_moves_at_once_when_there_is_room() -> None:
    s, gids = world_on_h2(Spot())
    s.evict("h2", 1.0, 10.0)
    (answer,) = of(s.migrate_ask(gids[0], "w", 0, True, "", now=2.0, interval=0.5), MigrateAnswer)
    assert {mv.target for mv in answer.moves} == {"h1"}


def test_under_spot_late_work_queued_meanwhile_takes_the_room_and_the_world_freezes_at_its_last_point() -> None:
    # The price of the option: the room the world would have moved to goes to a new request while it stays.
    s, gids = world_on_h2(Spot(late=True))
    s.evict("h2", 1.0, 10.0)
    of(s.migrate_ask(gids[0], "w", 0, True, "", now=2.0, interval=0.5), MigrateAnswer)
    placed = of(s.submit("x", "app", 2, app_kind="script", gang=True), Dispatch)
    assert [d.req_id for d in placed] == ["x", "x"] and {s.granules[d.granule_id].host_id for d in placed} == {"h1"}
    (last,) = of(s.migrate_ask(gids[0], "w", 0, True, "", now=9.5, interval=0.5), MigrateAnswer)
    assert last.freeze, last.reason
