"""A granule waiting on its own sub-calls lends its slot (pure state machine, no I/O)."""

from __future__ import annotations

from granny.planner.state import Dispatch, PlannerState, Skip, SpawnGranules


def cluster() -> PlannerState:
    s = PlannerState(heartbeat_timeout=5.0)
    s.register_host("h1", 1, 0.0)
    s.granule_connected("h1", "g1", None)
    return s


def test_waiting_granule_lends_its_slot_and_asks_for_a_spare() -> None:
    s = cluster()
    assert s.submit("parent", "app", 1, prefetch=True) == [Dispatch("g1", "parent", 0)]
    assert s.submit("child", "app", 1, prefetch=True) == [Dispatch("g1", "child", 0, prefetched=True)]
    actions = s.granule_waiting("g1", True)
    assert Skip("g1", "child", 0) in actions  # taken back from behind the waiting parent
    assert SpawnGranules("h1", 1) in actions  # one slot free, no idle granule: ask for a spare
    assert s.hosts["h1"].busy() == 0
    assert s.granule_connected("h1", "g2", None) == [Dispatch("g2", "child", 0)]
    accepted, _ = s.task_done("g2", "child", 0, True)
    assert accepted
    assert s.granule_waiting("g1", False) == []
    assert s.hosts["h1"].busy() == 1
    accepted, _ = s.task_done("g1", "parent", 0, True)
    assert accepted and s.hosts["h1"].busy() == 0


def test_waiting_granule_takes_no_prefetch() -> None:
    s = cluster()
    s.submit("parent", "app", 1, prefetch=True)
    s.granule_waiting("g1", True)
    s.granule_connected("h1", "g2", None)
    assert s.submit("a", "app", 1, prefetch=True) == [Dispatch("g2", "a", 0)]
    assert s.submit("b", "app", 1, prefetch=True) == [Dispatch("g2", "b", 0, prefetched=True)]  # behind g2, not g1
    assert s.granules["g1"].tasks == [("parent", 0)]


def test_no_prefetch_while_a_free_slot_waits_for_its_granule() -> None:
    """A host whose granules are still starting is worth waiting for; don't queue behind a busy one."""
    s = cluster()
    s.register_host("h2", 1, 0.0)  # registered, its granule not connected yet
    assert s.submit("a", "app", 1, prefetch=True) == [Dispatch("g1", "a", 0)]
    assert s.submit("b", "app", 1, prefetch=True) == []  # not prefetched behind g1
    assert s.granule_connected("h2", "g2", None) == [Dispatch("g2", "b", 0)]
