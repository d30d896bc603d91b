"""gather.would_move says exactly what bin-pack's migration rule would decide (move or stay), from the
world's own hosts and a few of the largest free values only: the hints' check in O(n log n) a world."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from granny.planner.gather import largest_free, would_move
from granny.planner.policies import ClusterView, Move, RunningApp, binpack, build_view

from .test_policies_migration import clusters


def test_a_world_gathers_into_a_host_that_frees_up() -> None:
    view = build_view({"a": 8, "b": 8, "c": 8}, [RunningApp("w", ("a",) * 5 + ("b",) * 3), RunningApp("o", ("a",) * 3)])
    hosts = {h.host_id: h for h in view.hosts}
    assert would_move(("a",) * 5 + ("b",) * 3, hosts, largest_free(view.hosts, 16))  # c is empty: 8 on one host
    full = build_view({"a": 8, "b": 8}, [RunningApp("w", ("a",) * 5 + ("b",) * 3), RunningApp("o", ("a",) * 3),
                                         RunningApp("p", ("b",) * 5)])
    hosts = {h.host_id: h for h in full.hosts}
    assert not would_move(("a",) * 5 + ("b",) * 3, hosts, largest_free(full.hosts, 16))


@settings(max_examples=400)
@given(view=clusters(max_hosts=10, evicting=True), app=st.integers(0, 3))
def test_would_move_agrees_with_bin_packs_rule(view: ClusterView, app: int) -> None:
    world = view.apps.get(f"app{app}")
    if world is None or not world.migrate:
        return
    hosts = {h.host_id: h for h in view.hosts}
    n = len(world.placement)
    decision = binpack.migrate(view, world.app_id)
    moves = isinstance(decision, Move) and bool(decision.moves)
    assert would_move(world.placement, hosts, largest_free(view.hosts, 2 * n)) == moves, decision
