"""Example-based tests of each policy rule: bin-pack, compact and spot migration, tenants, pinning."""

from __future__ import annotations

from dataclasses import replace

import pytest

from granny.errors import ConfigError
from granny.planner.policies import (
    DEFAULT_POLICY,
    POLICIES,
    ClusterView,
    Compact,
    Freeze,
    GranuleMove,
    HostView,
    Move,
    NeverFits,
    Placement,
    PlacementRequest,
    RunningApp,
    Spot,
    Stay,
    Wait,
    binpack,
    build_view,
    links,
)


def test_registry_and_default() -> None:
    assert set(POLICIES) == {"bin-pack", "bin-pack-reserve", "compact", "spot", "spot-late", "first-fit", "whole-hosts"}
    assert DEFAULT_POLICY == "bin-pack" and POLICIES[DEFAULT_POLICY] is binpack
    for name, policy in POLICIES.items():
        assert policy.name == name
        # The older call (hosts and a size) still works on every policy.
        assert policy([HostView("a", 4, 4)], PlacementRequest("x", 2)) == Placement(("a", "a"))


def test_links_counts_pairs_of_granules_on_different_hosts() -> None:
    assert links([8]) == 0
    assert links([4, 4]) == 16
    assert links([6, 1, 1]) == 13
    assert links([]) == 0


# --- bin-pack ---------------------------------------------------------------------------------------
def test_binpack_consolidates_a_split_app_when_the_others_end() -> None:
    # The migration micro-benchmark: 4 + 4 on two 8-slot hosts; h1's other app has ended.
    app = RunningApp("mpi", ("h1",) * 4 + ("h2",) * 4)
    view = build_view({"h1": 8, "h2": 8}, [app, RunningApp("other", ("h2",) * 4)])
    decision = binpack.migrate(view, "mpi")
    assert isinstance(decision, Move)
    assert decision.counts == (("h1", 8),)
    assert decision.placement == ("h1",) * 8
    assert decision.moves == tuple(GranuleMove(i, "h2", "h1") for i in range(4, 8))


def test_binpack_takes_fewer_links_on_as_many_hosts() -> None:
    app = RunningApp("mpi", ("a",) * 4 + ("b",) * 4)  # 16 links
    view = build_view({"a": 6, "b": 8}, [app, RunningApp("o", ("b",) * 2)])
    decision = binpack.migrate(view, "mpi")
    # Each host can take 6 of the app's 8 granules: 6 + 2 (12 links) beats 4 + 4, and moves only 2.
    assert isinstance(decision, Move)
    assert sorted(c for _, c in decision.counts) == [2, 6]
    assert len(decision.moves) == 2


def test_binpack_stays_when_nothing_is_gained() -> None:
    app = RunningApp("mpi", ("a",) * 4 + ("b",) * 4)
    view = build_view({"a": 4, "b": 4, "c": 4}, [app])
    assert isinstance(binpack.migrate(view, "mpi"), Stay)
    assert isinstance(binpack.migrate(view, "nope"), Stay)


def test_no_policy_moves_an_app_submitted_with_migrate_false() -> None:
    app = RunningApp("mpi", ("h1",) * 4 + ("h2",) * 4, migrate=False)
    view = build_view({"h1": 8, "h2": 8}, [app], evicting=["h2"])
    for policy in POLICIES.values():
        decision = policy.migrate(view, "mpi")
        assert isinstance(decision, Stay) and "migrate=False" in decision.reason


# --- compact ----------------------------------------------------------------------------------------
def test_compact_empties_a_host_into_the_holes_of_fuller_ones() -> None:
    app = RunningApp("small", ("c",) * 3)
    view = build_view({"a": 8, "b": 8, "c": 8}, [app, RunningApp("x", ("a",) * 6), RunningApp("y", ("b",) * 7)])
    decision = Compact().migrate(view, "small")
    assert isinstance(decision, Move)
    assert decision.counts == (("a", 2), ("b", 1))  # fullest first: b's one hole, then a's two
    assert len(decision.moves) == 3


def test_compact_stays_when_no_host_would_become_empty() -> None:
    app = RunningApp("big", ("c",) * 5)
    view = build_view({"a": 8, "b": 8, "c": 8}, [app, RunningApp("x", ("a",) * 6), RunningApp("y", ("b",) * 7)])
    decision = Compact().migrate(view, "big")  # 3 holes elsewhere for 5 granules
    assert isinstance(decision, Stay)


def test_compact_places_in_the_fullest_host_that_fits() -> None:
    view = build_view({"a": 8, "b": 8, "c": 8}, [RunningApp("x", ("a",) * 2), RunningApp("y", ("b",) * 5)])
    assert Compact().place(view, PlacementRequest("new", 3)) == Placement(("b",) * 3)
    # bin-pack too takes the tightest host that holds it: c's whole 8 slots stay free for a larger request.
    assert binpack.place(view, PlacementRequest("new", 3)) == Placement(("b",) * 3)
    # But compact keeps empty hosts empty where bin-pack splits over the largest holes.
    assert binpack.place(view, PlacementRequest("new", 10)) == Placement(("c",) * 8 + ("b",) * 2)


def test_compact_never_shares_a_host_between_tenants() -> None:
    view = build_view({"a": 8, "b": 8}, [RunningApp("x", ("a",) * 6, tenant="acme")])
    compact = Compact()
    assert compact.place(view, PlacementRequest("new", 2, tenant="acme")) == Placement(("a", "a"))
    assert compact.place(view, PlacementRequest("new", 2, tenant="other")) == Placement(("b", "b"))
    assert isinstance(compact.place(view, PlacementRequest("new", 9, tenant="other")), Wait)
    pinned = compact.place(view, PlacementRequest("new", 1, tenant="other", hosts=(("a", 1),)))
    assert isinstance(pinned, Wait) and "another tenant" in pinned.reason
    # Migration does not move an app next to another tenant either.
    view = build_view({"a": 8, "b": 8}, [RunningApp("x", ("a",) * 6, tenant="acme"),
                                         RunningApp("y", ("b",) * 2, tenant="other")])
    assert isinstance(compact.migrate(view, "y"), Stay)


# --- spot -------------------------------------------------------------------------------------------
def test_spot_moves_off_an_evicting_host() -> None:
    app = RunningApp("mpi", ("a",) * 2 + ("b",) * 2)
    view = build_view({"a": 4, "b": 4, "c": 4}, [app], evicting=["b"])
    decision = Spot().migrate(view, "mpi")
    assert isinstance(decision, Move)
    assert decision.counts == (("a", 4),)
    assert decision.moves == (GranuleMove(2, "b", "a"), GranuleMove(3, "b", "a"))


def test_spot_freezes_when_there_is_no_room() -> None:
    app = RunningApp("mpi", ("a",) * 2 + ("b",) * 2)
    view = build_view({"a": 4, "b": 4}, [app, RunningApp("o", ("a",) * 1)], evicting=["b"])
    decision = Spot().migrate(view, "mpi")
    assert isinstance(decision, Freeze) and decision.app_id == "mpi"
    assert "b" in decision.reason


def test_spot_does_not_place_on_evicting_hosts() -> None:
    view = build_view({"a": 8, "b": 2}, [], evicting=["a"])
    spot = Spot()
    assert spot.place(view, PlacementRequest("new", 2)) == Placement(("b", "b"))
    assert isinstance(spot.place(view, PlacementRequest("new", 4)), Wait)  # a comes back after eviction
    assert isinstance(spot.place(view, PlacementRequest("new", 11)), NeverFits)
    assert isinstance(spot.place(view, PlacementRequest("new", 1, hosts=(("a", 1),))), Wait)
    assert binpack.place(view, PlacementRequest("new", 4)) == Placement(("a",) * 4)  # bin-pack ignores notices


# --- pinned placements --------------------------------------------------------------------------------
def test_pinned_placement_is_exact() -> None:
    view = build_view({"h1": 8, "h2": 8, "h3": 8}, [RunningApp("o", ("h3",) * 6)])
    request = PlacementRequest("new", 8, hosts=(("h2", 4), ("h1", 4)))
    assert binpack.place(view, request) == Placement(("h2",) * 4 + ("h1",) * 4)
    assert isinstance(binpack.place(view, PlacementRequest("new", 4, hosts=(("h3", 4),))), Wait)
    for bad in (PlacementRequest("new", 4, hosts=(("h9", 4),)), PlacementRequest("new", 9, hosts=(("h1", 9),)),
                PlacementRequest("new", 5, hosts=(("h1", 4),)), PlacementRequest("new", 0, hosts=(("h1", 0),))):
        assert isinstance(binpack.place(view, bad), NeverFits), bad


def test_the_policy_at_start_up() -> None:
    from granny.planner.selection import at_start, policy_named

    assert at_start(None, None) == "bin-pack"
    assert at_start(None, "spot") == "spot"  # the journal's choice
    assert at_start("compact", "spot") == "compact"  # a flag overrides it
    assert at_start(None, "gone-policy") == "bin-pack"  # a journal from a planner that had other policies
    assert policy_named("compact").name == "compact"
    with pytest.raises(ConfigError, match=r"unknown policy 'round-robin': choose one of bin-pack, compact, spot"):
        policy_named("round-robin")


def spot_view(free_elsewhere: int, left: float, interval: float, queue: bool = False) -> tuple[Spot, ClusterView]:
    """App "mpi" (2 ranks) on host b under a notice that runs out in ``left`` s; host a has
    ``free_elsewhere`` free slots of 4."""
    app = RunningApp("mpi", ("b",) * 2, interval=interval)
    others = [RunningApp("o", ("a",) * (4 - free_elsewhere))] if free_elsewhere < 4 else []
    view = build_view({"a": 4, "b": 2}, [app, *others], evicting=["b"], now=100.0,
                      queue=(PlacementRequest("waiting", 3),) if queue else ())
    return Spot(), replace(view, evict_at={"b": 100.0 + left})


def test_spot_uses_an_evicting_host_until_the_last_point_before_its_deadline() -> None:
    spot, view = spot_view(free_elsewhere=1, left=30.0, interval=5.0)  # no room: leaving now would freeze
    decision = spot.migrate(view, "mpi")
    assert isinstance(decision, Stay) and "last migration point" in decision.reason and "30.0s" in decision.reason
    spot, view = spot_view(free_elsewhere=1, left=10.9, interval=5.0)  # its next point but one would be late
    assert isinstance(spot.migrate(view, "mpi"), Freeze)
    spot, view = spot_view(free_elsewhere=1, left=30.0, interval=0.0)  # pace not known: leave at once
    assert isinstance(spot.migrate(view, "mpi"), Freeze)


def test_spot_moves_at_once_when_room_is_free() -> None:
    spot, view = spot_view(free_elsewhere=4, left=30.0, interval=5.0)
    assert isinstance(spot.migrate(view, "mpi"), Move)
    spot, view = spot_view(free_elsewhere=4, left=30.0, interval=5.0, queue=True)  # whatever waits
    assert isinstance(spot.migrate(view, "mpi"), Move)


def test_spot_leaves_at_once_when_the_deadline_is_not_given() -> None:
    app = RunningApp("mpi", ("b",) * 2, interval=1.0)
    view = build_view({"a": 4, "b": 2}, [app, RunningApp("o", ("a",) * 3)], evicting=["b"], now=5.0)
    assert isinstance(Spot().migrate(view, "mpi"), Freeze)  # no evict_at: the notice counts as due now
