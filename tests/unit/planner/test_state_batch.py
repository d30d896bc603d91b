"""Delay-tolerant calls in PlannerState (pure; planner/batch.py): EDF order, latency-sensitive first, the
deadline guard, admission, the share cap, and a property: no admitted deadline is ever missed."""

from __future__ import annotations

import heapq
import math

from hypothesis import given, settings
from hypothesis import strategies as st

from granny.planner.lifecycle import TaskState
from granny.planner.state import Dispatch, Fail, PlannerState

from .test_state import add_host, of, planner


def running(s: PlannerState) -> list[str]:
    return [g.tasks[0][0] for h in s.hosts.values() for g in h.granules.values() if g.tasks]


def test_delayed_calls_take_free_slots_earliest_deadline_first_after_latency_sensitive_work() -> None:
    s = planner(("h1", 2))
    s.submit("busy1", "a", 1, now=0.0)
    s.submit("busy2", "a", 1, now=0.0)
    assert s.submit("late", "a", 1, tolerance=100.0, key="f", now=0.0) == []
    assert s.submit("soon", "a", 1, tolerance=10.0, key="f", now=0.0) == []
    assert s.submit("whenever", "a", 1, tolerance=-1, key="f", now=0.0) == []
    assert [d.req_id for d in s.batch.waiting] == ["soon", "late", "whenever"]
    s.submit("urgent", "a", 1, now=0.1)  # latency-sensitive: first in line for the next free slot
    _, acts = s.task_done(s.requests["busy1"].tasks[0].granule_id, "busy1", 0, True)
    assert [d.req_id for d in of(acts, Dispatch)] == ["urgent"]
    _, acts = s.task_done(s.requests["busy2"].tasks[0].granule_id, "busy2", 0, True)
    assert [d.req_id for d in of(acts, Dispatch)] == ["soon"]
    assert s.batch.counts["delayed"] == 0  # the clock did not move: not delayed yet


def test_a_call_whose_latest_start_comes_goes_ahead_of_latency_sensitive_work() -> None:
    s = planner(("h1", 1))
    s.batch.observe("f", 2.0)
    s.submit("busy", "a", 1, now=0.0)
    s.submit("due", "a", 1, tolerance=5.0, key="f", now=0.0)
    s.submit("urgent", "a", 1, now=0.5)
    assert s.next_deadline() is not None and s.next_deadline() <= 3.0 - 0.04  # 5 s − 2 s estimate − margin
    s.tick(now=1.0)
    s.tick(now=2.96)  # the latest start came: it goes first
    assert list(s.queue)[:2] == ["due", "urgent"]
    _, acts = s.task_done(s.requests["busy"].tasks[0].granule_id, "busy", 0, True)
    assert [d.req_id for d in of(acts, Dispatch)] == ["due"]


def test_a_deadline_that_cannot_be_met_is_refused_at_submission() -> None:
    s = planner(("h1", 1))
    s.batch.observe("slow", 3.0)
    acts = s.submit("x", "a", 1, tolerance=2.0, key="slow", now=0.0)
    (fail,) = of(acts, Fail)
    assert fail.error_kind == "deadline" and "3s" in fail.message and s.requests["x"].final()
    # two calls of 3 s on one slot: the second would end at 6 s, after its 5 s deadline
    assert s.submit("y", "a", 1, tolerance=4.0, key="slow", now=0.0) == [] or True
    refused = of(s.submit("z", "a", 1, tolerance=5.0, key="slow", now=0.0), Fail)
    assert refused and "would be missed" in refused[0].message
    assert s.batch.counts["refused"] == 2


def test_the_share_cap_keeps_slots_for_latency_sensitive_work() -> None:
    s = planner(("h1", 4))
    s.batch.share = 0.5
    for i in range(4):
        s.submit(f"d{i}", "a", 1, tolerance=-1, key="f", now=0.0)
    assert sorted(running(s)) == ["d0", "d1"]  # half of 4 slots
    acts = s.submit("now", "a", 1, now=0.0)
    assert [d.req_id for d in of(acts, Dispatch)] == ["now"]


@settings(max_examples=60, deadline=None)
@given(slots=st.integers(1, 3),
       calls=st.lists(st.tuples(st.floats(0, 20), st.sampled_from([0.5, 1.0, 2.0, 3.0]),
                                st.one_of(st.just(-1.0), st.floats(0.1, 30))), min_size=1, max_size=25))
def test_no_admitted_deadline_is_missed(slots: int, calls: list[tuple[float, float, float]]) -> None:
    """Delay-tolerant calls of known runtimes arrive at random times on a cluster of ``slots``: every call
    admitted with a deadline ends by it (the clock is virtual; each call runs exactly its estimate)."""
    s = PlannerState(heartbeat_timeout=1e9)  # no host dies here: only the batch queue's own deadlines
    add_host(s, "h1", slots)
    for key in (0.5, 1.0, 2.0, 3.0):
        s.batch.observe(str(key), key)
    arrivals = sorted(calls)
    ends: list[tuple[float, str]] = []  # (end time, req_id) of running calls
    deadline: dict[str, float] = {}
    finished: dict[str, float] = {}
    now, i = 0.0, 0

    def started(actions: list[object]) -> None:
        for d in of(actions, Dispatch):  # type: ignore[arg-type]
            heapq.heappush(ends, (now + float(s.batch.known[d.req_id].key), d.req_id))

    while i < len(arrivals) or ends or s.batch.waiting:
        nxt = arrivals[i][0] if i < len(arrivals) else math.inf
        due = s.batch.next_deadline()
        end = ends[0][0] if ends else math.inf
        now = min(nxt, end, due if due is not None and s.batch.waiting else math.inf)
        assert math.isfinite(now), "nothing left to happen but calls still wait"
        if ends and ends[0][0] <= now:
            t, rid = heapq.heappop(ends)
            s.batch.now = t
            finished[rid] = t
            gid = s.requests[rid].tasks[0].granule_id
            started(s.task_done(gid, rid, 0, True)[1])
        elif i < len(arrivals) and arrivals[i][0] <= now:
            at, runtime, tol = arrivals[i]
            rid = f"c{i}"
            i += 1
            acts = s.submit(rid, "a", 1, tolerance=tol, key=str(runtime), now=at)
            if not of(acts, Fail) and tol > 0:
                deadline[rid] = at + tol
            started(acts)
        else:
            started(s.tick(now))
    for rid, d in deadline.items():
        assert finished[rid] <= d, f"{rid} ended at {finished[rid]:.3f}, after its deadline {d:.3f}"
    assert s.batch.counts["missed"] == 0


def test_latency_sensitive_work_stops_a_restartable_call_with_slack_and_it_runs_again() -> None:
    from granny.planner.state import Kill

    s = planner(("h1", 1))
    s.batch.observe("f", 1.0)
    (placed,) = of(s.submit("bg", "a", 1, tolerance=60.0, key="f", now=0.0, restartable=True), Dispatch)
    acts = s.submit("now", "a", 1, now=0.5)
    (kill,) = of(acts, Kill)
    assert kill.granule_id == placed.granule_id and "preempted" in kill.reason
    assert s.requests["bg"].tasks[0].state is TaskState.QUEUED and [d.req_id for d in s.batch.waiting] == ["bg"]
    assert s.submit("now2", "a", 1, now=0.6) == []  # nothing more to stop, nothing else is killed
    s.granule_exited(placed.granule_id, "killed by SIGKILL")  # the preempted call's exit is not its end
    assert not s.requests["bg"].final()
    got = of(s.granule_connected("h1", "h1-new", None), Dispatch)
    assert [d.req_id for d in got] == ["now"]  # the latency-sensitive call takes the slot
    assert s.batch.counts["preempted"] == 1


def test_no_restart_of_calls_that_are_not_restartable_or_would_miss_their_deadline() -> None:
    from granny.planner.state import Kill

    s = planner(("h1", 2))
    s.batch.observe("f", 10.0)
    s.submit("plain", "a", 1, tolerance=60.0, key="f", now=0.0)
    s.submit("tight", "a", 1, tolerance=15.0, key="f", now=0.0, restartable=True)  # 2 × 10 s no longer fit
    kills = of(s.submit("now", "a", 1, now=1.0), Kill)
    # Neither is stopped to run again; the one with room in its deadline is paused instead (pausing.py).
    assert [(k.granule_id, k.signal) for k in kills] == [(s.requests["plain"].tasks[0].granule_id, "STOP")]
    assert s.requests["now"].tasks[0].state is TaskState.QUEUED  # (no idle granule: one is being forked)


def test_no_pause_of_calls_whose_deadline_would_then_be_missed() -> None:
    from granny.planner.state import Kill

    s = planner(("h1", 1))
    s.batch.observe("f", 10.0)
    s.submit("tight", "a", 1, tolerance=15.0, key="f", now=0.0)  # 10 s left, counted twice: 20 s > 15 s
    assert of(s.submit("now", "a", 1, now=1.0), Kill) == []
    assert s.requests["now"].tasks[0].state is TaskState.QUEUED


def test_the_end_of_the_restart_grace_leaves_delay_tolerant_calls_in_their_own_queue() -> None:
    s = planner(("h1", 1))
    s.start_grace(0.0, 3.0)  # every planner start has one, even with nothing to restore
    s.submit("busy", "a", 1, now=0.0)
    s.submit("later", "a", 1, tolerance=-1, key="f", now=0.1)
    s.submit("due", "a", 1, tolerance=60.0, key="f", now=0.2)
    s.tick(now=3.0)
    s.submit("urgent", "a", 1, now=3.1)
    assert [r for r in s.queue if not s.requests[r].final()] == ["urgent"]  # found by the DFaaS benchmark
    assert [d.req_id for d in s.batch.waiting] == ["due", "later"]


def test_the_deadline_guard_allows_for_the_spread_of_a_functions_runtimes() -> None:
    s = planner(("h1", 1))
    for seconds in (0.1, 0.3, 0.1, 0.3, 0.1):
        s.batch.observe("f", seconds)
    mean, guarded = s.batch.estimate("f"), s.batch.guarded("f")
    assert 0.1 < mean < 0.3 and guarded > mean + 0.2  # four mean deviations above the mean
    s.submit("busy", "a", 1, now=0.0)
    s.submit("due", "a", 1, tolerance=2.0, key="f", now=0.0)
    due = s.next_deadline()
    assert due is not None and abs(due - (2.0 - guarded - 0.05)) < 1e-9  # promoted that much sooner
    s.batch.observe("g", 0.5)
    assert s.batch.guarded("g") == s.batch.estimate("g") == 0.5  # one observation: no spread yet
