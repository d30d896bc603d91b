"""Property tests of the bin-pack placement policy (a pure function, no I/O)."""

from __future__ import annotations

import itertools
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from granny.planner.policies import POLICIES, HostView, NeverFits, Placement, PlacementRequest, Wait, binpack


@st.composite
def host_views(draw: st.DrawFn, min_size: int = 1, max_size: int = 6, with_app: bool = True) -> list[HostView]:
    count = draw(st.integers(min_size, max_size))
    hosts = []
    for i in range(count):
        slots = draw(st.integers(1, 8))
        free = draw(st.integers(0, slots))
        # The app's own granules are busy ones, so they come out of the slots that are not free.
        app = draw(st.integers(0, slots - free)) if with_app else 0
        hosts.append(HostView(f"h{i}", slots, free, app))
    return hosts


def brute_force_min_hosts(hosts: list[HostView], n: int) -> int | None:
    """The fewest hosts whose free slots add up to n, by trying every subset."""
    for k in range(1, len(hosts) + 1):
        if any(sum(h.free for h in combo) >= n for combo in itertools.combinations(hosts, k)):
            return k
    return None


def check_placement(hosts: list[HostView], n: int, decision: object) -> Placement:
    assert isinstance(decision, Placement), decision
    assert len(decision.hosts) == n
    by_id = {h.host_id: h for h in hosts}
    for host_id, count in Counter(decision.hosts).items():
        assert host_id in by_id, f"placement names unknown host {host_id}"
        assert count <= by_id[host_id].free, f"{count} granules on {host_id} with {by_id[host_id].free} free"
    return decision


def test_registry_names_binpack() -> None:
    assert POLICIES["bin-pack"] is binpack


@given(hosts=host_views(), data=st.data())
def test_decision_kind_follows_capacity(hosts: list[HostView], data: st.DataObject) -> None:
    capacity = sum(h.slots for h in hosts)
    free = sum(h.free for h in hosts)
    n = data.draw(st.integers(1, capacity + 4))
    decision = binpack(hosts, PlacementRequest("app", n))
    if n > capacity:
        assert isinstance(decision, NeverFits), decision
        assert str(n) in decision.reason and str(capacity) in decision.reason
    elif n > free:
        assert isinstance(decision, Wait), decision
    else:
        check_placement(hosts, n, decision)


@given(hosts=host_views(), data=st.data())
def test_never_exceeds_free_slots(hosts: list[HostView], data: st.DataObject) -> None:
    free = sum(h.free for h in hosts)
    if free == 0:
        assert isinstance(binpack(hosts, PlacementRequest("app", 1)), Wait)
        return
    n = data.draw(st.integers(1, free))
    check_placement(hosts, n, binpack(hosts, PlacementRequest("app", n)))


@given(hosts=host_views(with_app=False), data=st.data())
def test_uses_fewest_possible_hosts(hosts: list[HostView], data: st.DataObject) -> None:
    free = sum(h.free for h in hosts)
    if free == 0:
        return
    n = data.draw(st.integers(1, free))
    placement = check_placement(hosts, n, binpack(hosts, PlacementRequest("app", n)))
    assert len(set(placement.hosts)) == brute_force_min_hosts(hosts, n)


@given(hosts=host_views(), data=st.data())
def test_whole_request_on_one_host_prefers_a_host_running_the_app(hosts: list[HostView], data: st.DataObject) -> None:
    best_single = max(h.free for h in hosts)
    if best_single == 0:
        return
    n = data.draw(st.integers(1, best_single))
    placement = check_placement(hosts, n, binpack(hosts, PlacementRequest("app", n)))
    assert len(set(placement.hosts)) == 1, "a request that fits one host must not be split"
    chosen = next(h for h in hosts if h.host_id == placement.hosts[0])
    if any(h.app_granules > 0 and h.free >= n for h in hosts):
        assert chosen.app_granules > 0, f"{chosen} chosen over a host that already runs the app"


@given(count=st.integers(2, 6), free=st.integers(1, 4), data=st.data())
def test_split_request_uses_app_hosts_when_it_costs_no_extra_host(count: int, free: int, data: st.DataObject) -> None:
    # All hosts equally free: every choice of k hosts is minimal, so the app's hosts should be among them.
    app_flags = data.draw(st.lists(st.booleans(), min_size=count, max_size=count))
    hosts = [HostView(f"h{i}", free + 1, free, 1 if flag else 0) for i, flag in enumerate(app_flags)]
    n = data.draw(st.integers(free + 1, free * count))
    placement = check_placement(hosts, n, binpack(hosts, PlacementRequest("app", n)))
    used = set(placement.hosts)
    needed = -(-n // free)
    assert len(used) == needed
    app_hosts = {h.host_id for h in hosts if h.app_granules}
    assert len(used & app_hosts) == min(needed, len(app_hosts))


def test_single_host_tie_prefers_app_host_then_best_fit() -> None:
    hosts = [HostView("a", 8, 6, 0), HostView("b", 8, 3, 2), HostView("c", 8, 4, 0)]
    assert binpack(hosts, PlacementRequest("x", 3)) == Placement(("b",) * 3)
    # c's 4 free slots hold it exactly: a's 6 stay free for a larger request.
    assert binpack(hosts, PlacementRequest("x", 4)) == Placement(("c",) * 4)


def test_split_puts_the_last_part_in_the_smallest_hole_that_holds_it() -> None:
    hosts = [HostView("a", 8, 6, 0), HostView("b", 8, 2, 0), HostView("c", 8, 8, 0)]
    # Largest first (c), and the 2 left go to b, not a: same counts, and a's 6 stay whole.
    assert binpack(hosts, PlacementRequest("x", 10)) == Placement(("c",) * 8 + ("b",) * 2)


def test_split_fills_the_largest_hosts_first() -> None:
    hosts = [HostView("a", 4, 1, 0), HostView("b", 4, 3, 0), HostView("c", 4, 4, 0)]
    placement = check_placement(hosts, 7, binpack(hosts, PlacementRequest("x", 7)))
    assert Counter(placement.hosts) == {"c": 4, "b": 3}


@given(hosts=host_views())
def test_is_deterministic(hosts: list[HostView]) -> None:
    n = max(1, sum(h.free for h in hosts))
    assert binpack(hosts, PlacementRequest("x", n)) == binpack(list(hosts), PlacementRequest("x", n))


@settings(max_examples=20)
@given(n=st.integers(-5, 5))
def test_no_hosts_means_wait_unless_the_request_is_empty(n: int) -> None:
    decision = binpack([], PlacementRequest("x", n))
    if n < 1:
        assert isinstance(decision, NeverFits)
    else:
        assert isinstance(decision, Wait)
        assert "no hosts" in decision.reason


def test_request_for_zero_granules_never_fits() -> None:
    decision = binpack([HostView("a", 2, 2)], PlacementRequest("x", 0))
    assert isinstance(decision, NeverFits)
    assert "at least one" in decision.reason


def test_wait_when_cluster_big_enough_but_busy() -> None:
    hosts = [HostView("a", 4, 1), HostView("b", 4, 0)]
    assert isinstance(binpack(hosts, PlacementRequest("x", 2)), Wait)
    assert isinstance(binpack(hosts, PlacementRequest("x", 8)), Wait)
    assert isinstance(binpack(hosts, PlacementRequest("x", 9)), NeverFits)


def test_app_locality_never_costs_an_extra_host() -> None:
    from granny.planner.policies import HostView, PlacementRequest, binpack

    hosts = [HostView("a", 4, 1, app_granules=3), HostView("b", 3, 3), HostView("c", 3, 3)]
    placement = binpack(hosts, PlacementRequest("app", 6))
    assert sorted(set(placement.hosts)) == ["b", "c"]  # type: ignore[union-attr]
    hosts = [HostView("a", 4, 3, app_granules=1), HostView("b", 3, 3), HostView("c", 3, 3)]
    used = set(binpack(hosts, PlacementRequest("app", 6)).hosts)  # type: ignore[union-attr]
    assert "a" in used and len(used) == 2  # two hosts either way: keep the app's host
