"""The policies in a running PlannerState: tenants, pinned placements, eviction marks and migration decisions
reach them through the state's own view of hosts, granules and requests."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from granny.planner.lifecycle import TaskState
from granny.planner.policies import Compact, Move, Spot, Stay
from granny.planner.records import Request, Task
from granny.planner.state import Dispatch, Fail, Kill, PlannerState
from granny.planner.views_policy import remaining_pins

from .test_state import TIMEOUT, add_host, done, of, planner


def hosts_of(s: PlannerState, req_id: str) -> list[str]:
    return [t.host_id for t in s.requests[req_id].tasks]


def tenants_per_host(s: PlannerState) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for host in s.hosts.values():
        for g in host.granules.values():
            if g.tasks:
                out.setdefault(host.host_id, set()).add(s.requests[g.tasks[0][0]].tenant)
    return out


def test_compact_never_lets_two_tenants_share_a_host() -> None:
    s = PlannerState(TIMEOUT, policy=Compact())
    add_host(s, "a", 4)
    add_host(s, "b", 4)
    first = of(s.submit("r1", "app1", 1, tenant="t1"), Dispatch)
    second = of(s.submit("r2", "app2", 1, tenant="t2"), Dispatch)
    assert len(first) == len(second) == 1
    assert hosts_of(s, "r1") != hosts_of(s, "r2")  # the fullest host that fits runs t1's app: not for t2
    of(s.submit("r3", "app3", 2, tenant="t1"), Dispatch)
    assert set(hosts_of(s, "r3")) == set(hosts_of(s, "r1"))
    assert of(s.submit("r4", "app4", 1, tenant="t3"), Dispatch) == []  # every host runs another tenant's app
    assert s.requests["r4"].tasks[0].state is TaskState.QUEUED
    freed = of(done(s, second[0]), Dispatch)  # t2's host empties: t3 gets it
    assert [d.req_id for d in freed] == ["r4"]
    assert hosts_of(s, "r4") == hosts_of(s, "r2")
    assert all(len(t) == 1 for t in tenants_per_host(s).values())


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["t1", "t2", "t3"]), st.integers(1, 3), st.booleans()), max_size=25))
def test_compact_tenants_stay_apart_whatever_comes_and_goes(steps: list[tuple[str, int, bool]]) -> None:
    s = PlannerState(TIMEOUT, policy=Compact())
    for h in ("a", "b", "c"):
        add_host(s, h, 3)
    running: list[Dispatch] = []
    for i, (tenant, n, finish) in enumerate(steps):
        running += of(s.submit(f"r{i}", f"app{i}", n, tenant=tenant, gang=n > 1), Dispatch)
        if finish and running:
            running += of(done(s, running.pop(0)), Dispatch)
        assert all(len(t) == 1 for t in tenants_per_host(s).values()), tenants_per_host(s)


def test_a_pinned_request_lands_exactly_where_pinned() -> None:
    s = planner(("a", 2), ("b", 2))
    out = of(s.submit("r1", "app1", 3, gang=True, hosts=(("b", 2), ("a", 1))), Dispatch)
    assert len(out) == 3
    assert hosts_of(s, "r1") == ["b", "b", "a"]  # granules 0.. on the first host named


def test_a_pinned_request_waits_for_its_hosts_even_when_others_are_free() -> None:
    s = planner(("a", 2), ("b", 2))
    first = of(s.submit("r1", "app1", 2, gang=True, hosts=(("a", 2),)), Dispatch)
    assert hosts_of(s, "r1") == ["a", "a"]
    assert of(s.submit("r2", "app2", 1, hosts=(("a", 1),)), Dispatch) == []  # b is free, but not pinned
    assert s.requests["r2"].tasks[0].state is TaskState.QUEUED
    of(done(s, first[0]), Dispatch)
    assert s.requests["r2"].tasks[0].state is TaskState.QUEUED  # the world's slots come back together
    of(done(s, first[1]), Dispatch)
    assert hosts_of(s, "r2") == ["a"]


def test_a_pinned_request_naming_an_unknown_host_fails_with_the_reason() -> None:
    s = planner(("a", 2))
    fails = of(s.submit("r1", "app1", 1, hosts=(("nowhere", 1),)), Fail)
    assert [f.error_kind for f in fails] == ["never_fits"] and "nowhere" in fails[0].message


def test_a_partly_placed_pinned_request_asks_only_for_its_pending_granules_on_the_pins_left() -> None:
    s = planner(("a", 1), ("b", 1))
    blockers = of(s.submit("x", "other", 2, gang=True), Dispatch)  # both slots busy
    assert len(blockers) == 2
    assert of(s.submit("r1", "app1", 2, hosts=(("a", 1), ("b", 1))), Dispatch) == []
    a_granule = next(d.granule_id for d in blockers if d.granule_id.startswith("a-"))
    # Journaled work a granule on a finished while the planner restarted: index 0 is recorded as run on a.
    accepted, _ = s.task_done(a_granule, "r1", 0, True)
    assert accepted and s.requests["r1"].tasks[0].host_id == "a"
    placed = []
    for d in blockers:
        placed += of(done(s, d), Dispatch)
    assert [(d.req_id, d.index) for d in placed] == [("r1", 1)]
    assert s.requests["r1"].tasks[1].host_id == "b"  # the pin index 0 did not use, not a second one on a


def test_remaining_pins_skip_the_pins_placed_tasks_hold() -> None:
    req = Request("r", "app", 4, [Task(TaskState.RUNNING, "g", "h1"), Task(), Task(TaskState.SUCCEEDED, "g2", "h2"),
                                  Task()], hosts=(("h1", 2), ("h2", 2)))
    assert remaining_pins(req, 2) == (("h1", 1), ("h2", 1))


def test_spot_keeps_new_work_off_an_evicting_host() -> None:
    s = PlannerState(TIMEOUT, policy=Spot())
    add_host(s, "a", 2)
    add_host(s, "b", 2)
    assert s.mark_evicting("a") == []
    of(s.submit("r1", "app1", 2, gang=True), Dispatch)
    assert hosts_of(s, "r1") == ["b", "b"]
    assert of(s.submit("r2", "app2", 1), Dispatch) == []  # a has room, but is being evicted
    assert s.requests["r2"].tasks[0].state is TaskState.QUEUED
    assert [d.req_id for d in of(s.mark_evicting("a", False), Dispatch)] == ["r2"]  # notice withdrawn
    assert hosts_of(s, "r2") == ["a"]


def split_app(migrate: bool = True) -> tuple[PlannerState, list[Dispatch]]:
    """App "m" runs 4 + 4 on two 8-slot hosts, because apps "x" and "y" hold the other halves."""
    s = planner(("a", 8), ("b", 8))
    others = of(s.submit("x", "x", 4, gang=True, hosts=(("a", 4),)), Dispatch)
    others += of(s.submit("y", "y", 4, gang=True, hosts=(("b", 4),)), Dispatch)
    of(s.submit("m", "m", 8, "script", gang=True, migrate=migrate), Dispatch)
    assert sorted(hosts_of(s, "m")) == ["a"] * 4 + ["b"] * 4
    return s, others


def test_migration_decision_consolidates_a_split_app_once_the_others_end() -> None:
    s, others = split_app()
    assert isinstance(s.migration_decision("m"), Stay)  # nowhere to go yet
    for d in others:
        done(s, d)
    decision = s.migration_decision("m")
    assert isinstance(decision, Move), decision
    assert len(decision.counts) == 1 and decision.counts[0][1] == 8
    target = decision.counts[0][0]
    assert len(decision.moves) == 4 and all(m.target == target and m.source != target for m in decision.moves)
    assert [m.index for m in decision.moves] == [i for i, h in enumerate(hosts_of(s, "m")) if h != target]


def test_migration_decision_is_stay_for_an_app_submitted_with_migrate_false() -> None:
    s, others = split_app(migrate=False)
    for d in others:
        done(s, d)
    decision = s.migration_decision("m")
    assert isinstance(decision, Stay) and "migrate=False" in decision.reason


def test_migration_decision_of_an_unknown_app_is_stay() -> None:
    assert isinstance(planner(("a", 2)).migration_decision("nope"), Stay)


def test_a_restored_pinned_request_keeps_its_pins_and_places_only_what_is_left() -> None:
    s = planner(("a", 1), ("b", 1))
    s.restore("r1", "app1", 2, finished=[0], app_kind="script", name="", tenant="t", hosts=(("b", 1), ("a", 1)),
              migrate=False)
    s.start_grace(0.0, 1.0)
    placed = of(s.tick(1.0), Dispatch)
    assert [(d.req_id, d.index) for d in placed] == [("r1", 1)]
    assert s.requests["r1"].tasks[1].host_id in ("a", "b") and s.requests["r1"].tenant == "t"
    assert isinstance(s.migration_decision("app1"), Stay)  # migrate=False survived the restart


def test_a_request_pinned_to_a_host_that_is_down_waits_for_it() -> None:
    s = planner(("a", 1), ("b", 1))
    s.heartbeat("b", TIMEOUT)
    s.tick(TIMEOUT + 0.1)  # a missed its heartbeats: declared dead
    assert not s.hosts["a"].alive
    assert of(s.submit("r1", "app1", 1, hosts=(("a", 1),)), Fail) == []
    assert s.requests["r1"].tasks[0].state is TaskState.QUEUED
    assert of(s.register_host("a", 1, TIMEOUT + 0.2), Dispatch) == []  # back, but no warm granule yet
    placed = of(s.granule_connected("a", "a-new-g0", None), Dispatch)
    assert [d.req_id for d in placed] == ["r1"] and hosts_of(s, "r1") == ["a"]


def test_a_cancelled_granule_still_holds_its_slot_until_it_is_gone() -> None:
    """Found by the state machine: the policy view counted only granules with a task as busy, so a
    cancelled granule (busy, no task, its Kill in flight) left its slot looking free."""
    s = PlannerState(5.0)
    s.register_host("h1", 2, 0.0)
    s.granule_connected("h1", "h1-g1", None)
    (dispatch,) = [a for a in s.submit("r1", "a1", 1, "script", gang=True) if isinstance(a, Dispatch)]
    assert any(isinstance(a, Kill) for a in s.cancel(app_id="a1"))
    s.granule_connected("h1", "h1-g2", None)
    s.granule_connected("h1", "h1-g3", None)
    assert not [a for a in s.submit("r2", "a2", 2, "script", gang=True) if isinstance(a, Dispatch)]
    assert s.hosts["h1"].busy() == 1
