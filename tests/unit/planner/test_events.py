"""The planner's events as the pure state records them (state.events): what is recorded, and when nothing is."""

from __future__ import annotations

from granny.planner.state import Dispatch, PlannerState

from .test_state import TIMEOUT, add_host, of

Seen = list[tuple[str, str]]


def recording(*hosts: tuple[str, int]) -> PlannerState:
    s = PlannerState(TIMEOUT)
    s.events.on = True
    for host_id, slots in hosts:
        add_host(s, host_id, slots)
    return s


def kinds(s: PlannerState) -> Seen:
    return [(e.kind, e.host_id or e.app_id) for e in s.events.take()]


def test_nothing_is_recorded_unless_a_driver_collects_events() -> None:
    s = PlannerState(TIMEOUT)  # as the simulator makes it
    add_host(s, "a", 2)
    of(s.submit("r1", "app", 2, app_kind="script", gang=True), Dispatch)
    assert s.events.new == []


def test_a_world_is_recorded_at_every_step_and_hosts_as_they_join() -> None:
    s = recording(("a", 2), ("b", 2))
    assert kinds(s) == [("host.joined", "a"), ("host.joined", "b")]
    placed = of(s.submit("r1", "w", 3, app_kind="script", gang=True), Dispatch)
    events = s.events.take()
    assert [(e.kind, e.app_id) for e in events] == [("app.queued", "w"), ("app.placed", "w")]
    per = {h: sum(1 for d in placed if s.granules[d.granule_id].host_id == h) for h in ("a", "b")}
    assert events[1].data["hosts"] == per and sorted(per.values()) == [1, 2] and "×2" in events[1].text
    for d in placed:
        s.task_done(d.granule_id, "r1", d.index, True)
    (done,) = s.events.take()
    assert done.kind == "app.finished" and done.req_id == "r1" and done.data == {"n": 3, "failed": 0}


def test_a_stream_of_calls_is_not_a_stream_of_events_but_a_failed_call_is() -> None:
    s = recording(("a", 3))
    s.events.take()
    touched: list[int] = []
    s.events.listener = lambda: touched.append(1)
    of(s.submit("r", "other", 1), Dispatch)
    s.events.take()
    assert touched == [1]  # its app.queued; the placement is not news, and nobody watches
    s.events.watched = True
    calls = [of(s.submit(f"r{i}", "fns", 1), Dispatch)[0] for i in range(2)]
    assert kinds(s) == [("app.queued", "fns")]  # its first call only: the app is new
    s.task_done(calls[0].granule_id, "r0", 0, True)
    assert kinds(s) == []
    assert touched  # a live view is still told that something changed
    s.task_done(calls[1].granule_id, "r1", 0, False)
    assert kinds(s) == [("app.failed", "fns")]


def test_a_dead_host_and_an_eviction_notice_are_recorded() -> None:
    s = recording(("a", 1), ("b", 1))
    s.tick(0.0)
    s.events.take()
    s.evict("a", 0.0, 10.0)
    s.restore_host("a")
    assert kinds(s) == [("host.evicting", "a"), ("host.restored", "a")]
    s.evict("a", 0.0, 10.0)
    s.heartbeat("a", 8.0)
    s.heartbeat("b", 8.0)
    s.tick(10.0)  # the notice runs out
    assert kinds(s) == [("host.evicting", "a"), ("host.evicted", "a")]
    for t in range(11, 17):  # b says nothing more (ticks close together: not a stall of the planner)
        s.tick(float(t))
    (died,) = s.events.take()
    assert died.kind == "host.died" and died.host_id == "b" and "stopped sending heartbeats" in died.text
    add_host(s, "b", 1, now=20.0)
    (back,) = s.events.take()
    assert back.kind == "host.joined" and back.data["incarnation"] == 2 and "again" in back.text
