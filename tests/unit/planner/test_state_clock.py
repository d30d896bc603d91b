"""PlannerState driven by a virtual clock that jumps from deadline to deadline (``next_deadline`` only),
as the simulator will drive it: through a restart grace and a host death."""

from __future__ import annotations

from granny.planner.grace import Held
from granny.planner.retention import Known
from granny.planner.state import Action, Dispatch, Fail, ForgetHost, GraceEnded, PlannerState, Pruned

TIMEOUT, GRACE = 4.0, 3.0


def run(s: PlannerState, until: float, beating: set[str]) -> list[tuple[float, Action]]:
    """Jump the clock to each deadline the state names, up to ``until``; at each, the hosts in
    ``beating`` heartbeat first. Returns every action with the virtual time it came at."""
    out: list[tuple[float, Action]] = []
    last = -1.0
    while (due := s.next_deadline()) is not None and due <= until:
        assert due > last, "a deadline that a tick does not move on would spin a virtual clock"
        last = due
        for host_id in beating:
            s.heartbeat(host_id, due)
        out += [(due, a) for a in s.tick(due)]
    return out


def test_a_virtual_clock_drives_a_restart_grace_and_a_host_death() -> None:
    s = PlannerState(TIMEOUT)
    s.restore("r1", "app", 2, finished=[], app_kind="functions", name="")
    s.hold(Held("big", "app", 1, frozenset(), "functions", ""))
    s.start_grace(0.0, GRACE)
    for host_id in ("h1", "h2"):
        s.register_host(host_id, 1, 0.0)
        s.granule_connected(host_id, f"{host_id}-g0", None)

    events = run(s, 20.0, beating={"h1"})  # h2's worker never heartbeats

    at = {(type(a).__name__, getattr(a, "req_id", getattr(a, "host_id", ""))): t for t, a in events}
    assert at[("GraceEnded", "")] == GRACE
    assert at[("Fail", "big")] == GRACE  # its client never came back with the payload
    assert sorted((a.granule_id, t) for t, a in events if isinstance(a, Dispatch)) == [("h1-g0", GRACE),
                                                                                        ("h2-g0", GRACE)]
    (died,) = [(t, a) for t, a in events if isinstance(a, Fail) and a.error_kind == "host_died"]
    assert died[0] == TIMEOUT and died[1].req_id == "r1" and died[1].host_id == "h2"  # at the expiry, exactly
    assert [(t, a.host_id) for t, a in events if isinstance(a, ForgetHost)] == [(TIMEOUT, "h2")]
    assert len(events) == len({id(a) for _, a in events}) and sum(isinstance(a, GraceEnded) for _, a in events) == 1
    assert s.hosts["h1"].alive and not s.hosts["h2"].alive
    assert s.liveness.stalls == 0  # deadline to deadline is never read as the planner's own stall


def test_with_no_host_alive_and_no_grace_the_clock_can_stop() -> None:
    s = PlannerState(TIMEOUT)
    s.register_host("h1", 1, 0.0)
    events = run(s, 100.0, beating=set())
    assert [(t, type(a).__name__) for t, a in events] == [(TIMEOUT, "ForgetHost")]
    assert s.next_deadline() is None  # nothing is due until the next event


def test_retention_passes_are_deadlines_too_and_stop_when_nothing_is_left() -> None:
    retain = 8.0  # a pass every 2 s while anything is left to look at
    s = PlannerState(TIMEOUT, retain=retain)
    s.tick(0.0)  # the clock starts
    assert s.next_deadline() is None  # nothing finished, no host: nothing is due
    s.register_host("h1", 1, 0.0)
    s.granule_connected("h1", "h1-g0", None)
    (d,) = s.submit("r1", "app", 1)
    s.task_done(d.granule_id, "r1", 0, True)
    events = run(s, 12.0, beating={"h1"})
    (pruned,) = [(t, a) for t, a in events if isinstance(a, Pruned)]
    # Stamped by the first pass after it finished (at 2 s), forgotten by the first pass a window later.
    assert pruned[0] == 2.0 + retain and pruned[1].requests == [("r1", 1)]
    assert "r1" not in s.requests and s.retention.lookup("r1") is Known.PRUNED
    run(s, 30.0, beating={"h1"})
    # Its tombstone is dropped a window later; then retention needs no more passes.
    assert s.retention.lookup("r1") is None and s.retention.next_pass(s) is None
