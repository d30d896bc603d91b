"""Property and example tests of the two baseline policies of the cluster evaluation (pure functions):
whole-hosts (the batch scheduler) and first-fit (the Slurm-like one)."""

from __future__ import annotations

from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from granny.planner.policies import (
    ClusterView,
    FirstFit,
    NeverFits,
    Placement,
    PlacementRequest,
    RunningApp,
    Stay,
    Wait,
    WholeHosts,
    build_view,
)

from .test_policies_migration import clusters

batch, slurm = WholeHosts(), FirstFit()


def counts(decision: Placement) -> Counter[str]:
    return Counter(decision.hosts)


@given(view=clusters(max_hosts=8), data=st.data())
def test_whole_hosts_only_takes_empty_hosts_and_fills_all_but_one(view: ClusterView, data: st.DataObject) -> None:
    n = data.draw(st.integers(1, sum(h.slots for h in view.hosts) + 2))
    decision = batch.place(view, PlacementRequest("new", n))
    empty = sorted((h for h in view.hosts if h.free == h.slots), key=lambda h: -h.slots)
    if n > sum(h.slots for h in view.hosts):
        assert isinstance(decision, NeverFits)
    elif n > sum(h.slots for h in empty):
        assert isinstance(decision, Wait), decision
    else:
        assert isinstance(decision, Placement), decision
        assert len(decision.hosts) == n
        got = counts(decision)
        by_id = {h.host_id: h for h in view.hosts}
        assert all(by_id[h].free == by_id[h].slots for h in got), "a host someone uses was given out"
        # Fewest hosts: as many as the largest empty hosts need to hold n.
        need, total = 0, 0
        for h in empty:
            if total >= n:
                break
            total += h.slots
            need += 1
        assert len(got) == need
        assert sum(1 for h, c in got.items() if c < by_id[h].slots) <= 1, "more than one host left part-used"


@given(view=clusters(max_hosts=8), data=st.data())
def test_first_fit_takes_free_slots_in_host_order(view: ClusterView, data: st.DataObject) -> None:
    n = data.draw(st.integers(1, sum(h.slots for h in view.hosts) + 2))
    decision = slurm.place(view, PlacementRequest("new", n))
    free = sum(h.free for h in view.hosts)
    if n > sum(h.slots for h in view.hosts):
        assert isinstance(decision, NeverFits)
        return
    if n > free:
        assert isinstance(decision, Wait)
        return
    assert isinstance(decision, Placement)
    got = counts(decision)
    left = n
    for h in view.hosts:  # exactly the greedy fill, in the view's host order
        take = min(h.free, left)
        assert got.get(h.host_id, 0) == take, (h.host_id, take, got)
        left -= take
    # Granule indices follow the host order, as a Slurm node list does.
    order = [h.host_id for h in view.hosts]
    assert list(decision.hosts) == sorted(decision.hosts, key=order.index)


@given(view=clusters())
def test_baselines_never_migrate(view: ClusterView) -> None:
    for app in view.apps.values():
        assert isinstance(batch.migrate(view, app.app_id), Stay)
        assert isinstance(slurm.migrate(view, app.app_id), Stay)


@given(view=clusters(), data=st.data())
def test_baselines_are_deterministic(view: ClusterView, data: st.DataObject) -> None:
    n = data.draw(st.integers(1, 20))
    for policy in (batch, slurm):
        assert policy.place(view, PlacementRequest("x", n)) == policy.place(view, PlacementRequest("x", n))


def test_batch_leaves_the_rest_of_a_host_idle_and_slurm_shares_it() -> None:
    view = build_view({"a": 8, "b": 8, "c": 8}, [RunningApp("j1", ("a",) * 2)])
    assert batch.place(view, PlacementRequest("j2", 4)) == Placement(("b",) * 4)
    assert slurm.place(view, PlacementRequest("j2", 4)) == Placement(("a",) * 4)
    assert batch.place(view, PlacementRequest("j2", 12)) == Placement(("b",) * 8 + ("c",) * 4)
    assert slurm.place(view, PlacementRequest("j2", 12)) == Placement(("a",) * 6 + ("b",) * 6)
    assert isinstance(batch.place(view, PlacementRequest("j2", 17)), Wait)


def test_pinned_requests_wait_for_an_empty_host_under_batch() -> None:
    view = build_view({"a": 8, "b": 8}, [RunningApp("j1", ("a",))])
    assert isinstance(batch.place(view, PlacementRequest("j2", 2, hosts=(("a", 2),))), Wait)
    assert batch.place(view, PlacementRequest("j2", 2, hosts=(("b", 2),))) == Placement(("b", "b"))
    assert slurm.place(view, PlacementRequest("j2", 2, hosts=(("a", 2),))) == Placement(("a", "a"))
