"""Preemption by pausing in PlannerState (pure; planner/pausing.py): a delay-tolerant call that cannot be
restarted is paused (SIGSTOP) for latency-sensitive work, continued when a slot frees, and continued at
its latest resume time at the latest, so that it still meets its deadline."""

from __future__ import annotations

import math

from hypothesis import event, given, settings
from hypothesis import strategies as st

from granny.planner.state import Dispatch, Fail, Kill, PlannerState, SpawnGranules

from .test_state import add_host, of


def one_slot(granules: int = 2) -> PlannerState:
    s = PlannerState(1000.0)  # no host is declared dead in these tests
    add_host(s, "h1", 1, granules=granules)
    return s


def signals(actions: list[object]) -> list[tuple[str, str]]:
    return [(k.granule_id, k.signal) for k in of(actions, Kill)]  # type: ignore[arg-type]


def test_latency_sensitive_work_pauses_a_call_that_cannot_restart_and_it_continues_after() -> None:
    s = one_slot()
    s.batch.observe("f", 1.0)
    (bg,) = of(s.submit("bg", "a", 1, tolerance=100.0, key="f", now=0.0), Dispatch)
    acts = s.submit("ls", "a", 1, now=0.2)
    assert signals(acts) == [(bg.granule_id, "STOP")]
    (ls,) = of(acts, Dispatch)  # at once, on the spare granule: the paused one lent its slot
    assert ls.req_id == "ls" and ls.granule_id != bg.granule_id and s.batch.counts["paused"] == 1
    assert s.hosts["h1"].busy() == 1
    _, acts = s.task_done(ls.granule_id, "ls", 0, True)
    assert signals(acts) == [(bg.granule_id, "CONT")] and not s.batch.paused
    s.batch_tick(1.5)
    assert s.task_done(bg.granule_id, "bg", 0, True)[0]
    assert s.batch.counts["met"] == 1 and s.batch.counts["resumed"] == 1


def test_without_an_idle_granule_the_host_is_asked_for_one() -> None:
    s = one_slot(granules=1)
    # Asked as soon as a delay-tolerant call takes the last idle granule (pausing.keep_spare), not when a
    # latency-sensitive call needs it: that call then waits for the spare only if it comes before the fork is done.
    assert of(s.submit("bg", "a", 1, tolerance=-1, key="f", now=0.0), SpawnGranules)
    acts = s.submit("ls", "a", 1, now=0.1)
    assert [k.signal for k in of(acts, Kill)] == ["STOP"] and not of(acts, SpawnGranules) and not of(acts, Dispatch)
    acts = s.granule_connected("h1", "h1-spare", None)
    assert [d.req_id for d in of(acts, Dispatch)] == ["ls"]


def test_a_tick_while_the_spare_granule_starts_does_not_continue_the_paused_call() -> None:
    s = one_slot(granules=1)
    (bg,) = of(s.submit("bg", "a", 1, tolerance=-1, key="f", now=0.0), Dispatch)
    assert signals(s.submit("ls", "a", 1, now=0.1)) == [(bg.granule_id, "STOP")]
    # The slot the paused call lent looks free until the spare connects: it is the waiting call's. (It was
    # taken back at the next tick, and the latency-sensitive call then waited for the paused one to end.)
    assert signals(s.tick(0.5)) == [] and s.batch.paused
    acts = s.granule_connected("h1", "h1-spare", None)
    assert [d.req_id for d in of(acts, Dispatch)] == ["ls"]


def test_no_pause_when_the_call_could_then_miss_its_deadline() -> None:
    s = one_slot()
    s.batch.observe("f", 1.0)
    s.submit("bg", "a", 1, tolerance=1.5, key="f", now=0.0)  # 1 s of work left counted twice: 2 s > 1.5 s
    acts = s.submit("ls", "a", 1, now=0.0)
    assert of(acts, Kill) == [] and of(acts, Dispatch) == [] and s.batch.counts["paused"] == 0


def test_a_paused_call_is_continued_at_its_latest_resume_time_even_without_a_free_slot() -> None:
    s = one_slot()
    s.batch.observe("f", 2.0)
    (bg,) = of(s.submit("bg", "a", 1, tolerance=10.0, key="f", now=0.0), Dispatch)
    s.batch.now = 0.5
    s.submit("ls", "a", 1, now=0.5)  # ran 0.5 s of 2: 1.5 s left, counted twice -> resume by 10 - 3 - 0.05
    due = s.batch.next_deadline()
    assert due is not None and abs(due - 6.95) < 1e-6
    assert signals(s.tick(6.9)) == []
    assert signals(s.tick(6.95)) == [(bg.granule_id, "CONT")]  # the latency-sensitive call still runs
    assert s.hosts["h1"].busy() == 2  # oversubscribed for a moment: the deadline comes first


def test_restartable_calls_are_preferred_to_pausing_and_fused_calls_are_never_paused() -> None:
    s = one_slot(granules=3)
    s.hosts["h1"].slots = 2
    (r,) = of(s.submit("r", "a", 1, tolerance=100.0, key="f", now=0.0, restartable=True), Dispatch)
    s.submit("fz", "a", 1, tolerance=100.0, key="g", now=0.0, fuse=True)
    acts = s.submit("ls", "a", 1, now=0.1)
    assert [(k.granule_id, k.signal) for k in of(acts, Kill)] == [(r.granule_id, "")]  # killed, to run again
    assert s.batch.counts["paused"] == 0


def test_a_call_that_ends_as_it_is_paused_gets_its_granule_continued() -> None:
    """Its Done was on its way when the pause was decided: the granule must not stay stopped (found by an
    integration test: the next call dispatched there never ran)."""
    s = one_slot()
    (bg,) = of(s.submit("bg", "a", 1, tolerance=-1, key="f", now=0.0), Dispatch)
    assert signals(s.submit("ls", "a", 1, now=0.1))[0] == (bg.granule_id, "STOP")
    _, acts = s.task_done(bg.granule_id, "bg", 0, True)
    assert signals(acts) == [(bg.granule_id, "CONT")] and not s.batch.paused
    assert not s.granules[bg.granule_id].waiting


def test_cancelling_a_paused_call_kills_its_granule() -> None:
    s = one_slot()
    (bg,) = of(s.submit("bg", "a", 1, tolerance=-1, key="f", now=0.0), Dispatch)
    s.submit("ls", "a", 1, now=0.1)
    assert (bg.granule_id, "") in signals(s.cancel(req_id="bg")) and not s.batch.paused


def test_latency_sensitive_work_pauses_a_delay_tolerant_call_rather_than_queue_behind_another_call() -> None:
    """Waiting behind a running latency-sensitive call (prefetch) costs the rest of that call; a pause
    costs a signal. (Found by benchmarks/dfaas_bench.py: a third of the slow waits were prefetches.)"""
    s = PlannerState(1000.0)
    add_host(s, "h1", 2, granules=3)
    s.submit("ls1", "a", 1, now=0.0, prefetch=True)
    (bg,) = of(s.submit("bg", "a", 1, tolerance=-1, key="f", now=0.0), Dispatch)
    acts = s.submit("ls2", "a", 1, now=0.1, prefetch=True)
    assert signals(acts) == [(bg.granule_id, "STOP")]
    assert [(d.req_id, d.prefetched) for d in of(acts, Dispatch)] == [("ls2", False)]


@settings(max_examples=300, deadline=None)
@given(slots=st.integers(1, 2),
       calls=st.lists(st.tuples(st.floats(0, 6), st.sampled_from([0.5, 1.0, 2.0]),
                                st.sampled_from([0.0, 0.0, -1.0, 3.0, 5.0, 8.0]) | st.floats(0.5, 20)),
                      min_size=2, max_size=20))
def test_a_paused_call_still_meets_its_deadline(slots: int, calls: list[tuple[float, float, float]]) -> None:
    """Latency-sensitive (tolerance 0) and delay-tolerant calls of known runtimes on ``slots``, virtual time;
    a call makes progress unless paused. Every call that was paused and has a deadline ends by it."""
    s = PlannerState(1e9)
    add_host(s, "h1", slots, granules=slots)
    for key in (0.5, 1.0, 2.0):
        s.batch.observe(str(key), key)
    left: dict[str, float] = {}  # running or paused calls -> seconds of work left
    paused: set[str] = set()
    ever_paused: set[str] = set()
    deadline: dict[str, float] = {}
    finished: dict[str, float] = {}
    spawned = [0]

    def apply(actions: list[object]) -> None:
        for a in actions:
            if isinstance(a, Dispatch):
                left[a.req_id] = float(s.requests[a.req_id].app_id)  # the runtime travels as the app id
            elif isinstance(a, Kill) and a.signal:
                rid = s.granules[a.granule_id].tasks[0][0] if s.granules[a.granule_id].tasks else ""
                if a.signal == "STOP" and rid:
                    paused.add(rid)
                    ever_paused.add(rid)
                else:
                    paused.discard(rid)
            elif isinstance(a, SpawnGranules):
                spawned[0] += 1
                apply(s.granule_connected("h1", f"h1-spare{spawned[0]}", None))

    arrivals = sorted(calls)
    now, i = 0.0, 0
    while i < len(arrivals) or left:
        nxt = arrivals[i][0] if i < len(arrivals) else math.inf
        running = [r for r in left if r not in paused]
        end = min((now + left[r] for r in running), default=math.inf)
        due = s.batch.next_deadline()
        t = min(nxt, end, due if due is not None and due > now else math.inf)
        assert math.isfinite(t), "nothing left to happen but calls are still paused or waiting"
        for r in running:
            left[r] -= t - now
        now = s.batch.now = t
        done = [r for r in running if left[r] <= 1e-9]
        if done:
            for r in done:
                del left[r]
                finished[r] = now
                apply(s.task_done(s.requests[r].tasks[0].granule_id, r, 0, True)[1])
        elif i < len(arrivals) and arrivals[i][0] <= now:
            at, runtime, tol = arrivals[i]
            rid = f"c{i}"
            i += 1
            acts = s.submit(rid, str(runtime), 1, tolerance=tol, key=str(runtime), now=at)
            if not of(acts, Fail) and tol > 0:
                deadline[rid] = at + tol
            apply(acts)
        else:
            apply(s.tick(now))
    event("a call with a deadline was paused" if ever_paused & set(deadline) else "no pause of a deadline call")
    for rid in ever_paused & set(deadline):
        assert finished[rid] <= deadline[rid] + 1e-9, f"paused {rid} ended at {finished[rid]:.3f}, after {deadline[rid]:.3f}"


def test_a_call_whose_latest_start_came_pauses_one_with_a_later_deadline_and_not_an_earlier_one() -> None:
    s = one_slot()
    s.batch.observe("long", 0.1)  # its estimate (0.37 s, guarded up to 1.27 s): it runs far longer here
    s.batch.observe("long", 1.0)  # (a host under load, say); its guarded end comes after due's latest start
    s.batch.observe("short", 0.2)
    (bg,) = of(s.submit("bg", "a", 1, tolerance=-1, key="long", now=0.0), Dispatch)
    assert s.submit("due", "a", 1, tolerance=1.0, key="short", now=0.0) == []  # admitted: bg "ends" at 0.37
    due = s.next_deadline()
    assert due is not None and 0.7 < due <= 0.76  # 1 s − 0.2 s estimate − margin
    acts = s.tick(due)  # bg still runs: without a slot, "due" would miss its deadline
    assert signals(acts) == [(bg.granule_id, "STOP")]  # earliest deadline first: bg ("whenever") gives way
    (placed,) = of(acts, Dispatch)
    assert placed.req_id == "due" and placed.granule_id != bg.granule_id
    _, acts = s.task_done(placed.granule_id, "due", 0, True)
    assert signals(acts) == [(bg.granule_id, "CONT")] and s.batch.counts["met"] == 1

    s = one_slot()
    s.batch.observe("long", 0.5)
    s.batch.observe("short", 0.2)
    of(s.submit("first", "a", 1, tolerance=4.9, key="long", now=0.0), Dispatch)
    assert s.submit("later", "a", 1, tolerance=5.0, key="short", now=0.0) == []
    acts = s.tick(4.76)  # its latest start came, but the call on the slot is due sooner: it is not paused
    assert list(s.queue) == ["later"] and s.batch.known["later"].promoted
    assert signals(acts) == [] and of(acts, Dispatch) == [] and "first" not in s.batch.paused


def test_calls_due_behind_a_call_that_overruns_its_estimate_take_its_slot_when_it_overruns() -> None:
    s = one_slot(granules=3)
    for key in ("w", "a"):
        s.batch.observe(key, 0.5)
    of(s.submit("w", "a", 1, tolerance=-1, key="w", now=0.0), Dispatch)  # it will run 5 s, not 0.5 s
    assert s.submit("a1", "a", 1, tolerance=2.0, key="a", now=0.0) == []  # admitted: w ends at 0.5, a1 at 1.0,
    assert s.submit("a2", "a", 1, tolerance=2.0, key="a", now=0.0) == []  # a2 at 1.5 (as estimated)
    # Both latest starts are at 1.45: there a1 pauses w, and a2, waiting behind a1 (due as soon), ends at
    # 2.45, after its deadline. Admission planned on w's slot from 0.5: that is when a1 must get it.
    assert s.next_deadline() == 0.5  # w's estimated end: the planner's tick wakes then
    acts = s.tick(0.5)
    assert signals(acts) == [(s.requests["w"].tasks[0].granule_id, "STOP")]
    (a1,) = of(acts, Dispatch)
    assert a1.req_id == "a1" and s.batch.counts["overrun_promoted"] == 1
    s.batch.now = 1.0
    _, acts = s.task_done(a1.granule_id, "a1", 0, True)  # w's slot frees (w continues), and a2 takes it at once
    assert [d.req_id for d in of(acts, Dispatch)] == ["a2"]
    (a2,) = of(acts, Dispatch)
    s.batch.now = 1.5
    s.task_done(a2.granule_id, "a2", 0, True)
    assert s.batch.counts["met"] == 2 and s.batch.counts["missed"] == 0 and not s.batch.paused  # w goes on


@settings(max_examples=200, deadline=None)
@given(slots=st.integers(1, 2), overruns=st.lists(st.floats(0.6, 30), min_size=1, max_size=2),
       calls=st.lists(st.tuples(st.floats(0, 6), st.sampled_from([0.5, 1.0, 2.0]), st.floats(0.5, 12)),
                      min_size=1, max_size=12))
def test_calls_admitted_behind_calls_that_overrun_their_estimates_meet_their_deadlines(
        slots: int, overruns: list[float], calls: list[tuple[float, float, float]]) -> None:
    """"Whenever" calls estimated at 0.5 s run far longer (``overruns``) from time 0; delay-tolerant calls
    of exact estimates arrive later. Every call admitted with a deadline ends by it: the overrunning
    calls give their slots from their estimated end, as admission planned (virtual time; a call makes
    progress unless paused)."""
    s = PlannerState(1e9)
    add_host(s, "h1", slots, granules=slots)
    for key in (0.5, 1.0, 2.0):
        s.batch.observe(str(key), key)
    left: dict[str, float] = {}
    paused: set[str] = set()
    deadline: dict[str, float] = {}
    finished: dict[str, float] = {}
    spawned = [0]
    runtime = {f"w{j}": w for j, w in enumerate(overruns)}

    def apply(actions: list[object]) -> None:
        for a in actions:
            if isinstance(a, Dispatch):
                left[a.req_id] = runtime[a.req_id]
            elif isinstance(a, Kill) and a.signal:
                rid = s.granules[a.granule_id].tasks[0][0] if s.granules[a.granule_id].tasks else ""
                (paused.add if a.signal == "STOP" else paused.discard)(rid)
            elif isinstance(a, SpawnGranules):
                spawned[0] += 1
                apply(s.granule_connected("h1", f"h1-spare{spawned[0]}", None))

    for rid in runtime:
        apply(s.submit(rid, "a", 1, tolerance=-1, key="0.5", now=0.0))
    arrivals = sorted(calls)
    now, i = 0.0, 0
    while i < len(arrivals) or left:
        nxt = arrivals[i][0] if i < len(arrivals) else math.inf
        running = [r for r in left if r not in paused]
        end = min((now + left[r] for r in running), default=math.inf)
        due = s.batch.next_deadline()
        t = min(nxt, end, due if due is not None and due > now else math.inf)
        assert math.isfinite(t), "nothing left to happen but calls are still paused or waiting"
        for r in running:
            left[r] -= t - now
        now = s.batch.now = t
        done = [r for r in running if left[r] <= 1e-9]
        if done:
            for r in done:
                del left[r]
                finished[r] = now
                apply(s.task_done(s.requests[r].tasks[0].granule_id, r, 0, True)[1])
        elif i < len(arrivals) and arrivals[i][0] <= now:
            at, took, tol = arrivals[i]
            rid = f"c{i}"
            i += 1
            runtime[rid] = took
            acts = s.submit(rid, "a", 1, tolerance=tol, key=str(took), now=at)
            if not of(acts, Fail):
                deadline[rid] = at + tol
            apply(acts)
        else:
            apply(s.tick(now))
    event(f"{len(deadline)} admitted; overrun promotions: {min(s.batch.counts['overrun_promoted'], 2)}")
    for rid, d in deadline.items():
        assert finished[rid] <= d + 1e-9, f"{rid} ended at {finished[rid]:.3f}, after its deadline {d:.3f}"
