"""dfaas in the simulator (sim/dfaas.py): function calls with a delay tolerance go through the planner's
batch queue (EDF, admission, deadline guard); the synthetic mixed trace is reproducible. Timelines by hand."""

from __future__ import annotations

import io

from granny.experiment.dfaas import summarise
from granny.sim import Job, Simulator, parse_trace, scheduler_named, to_csv
from granny.sim.dfaas import function_model, mixed_trace
from granny.sim.events import JobEvent


def run(scheduler: str, jobs: list[Job], slots: int) -> list[JobEvent]:
    return Simulator(scheduler_named(scheduler), 1, slots, function_model(), evictions=None).run(jobs).events


def starts(events: list[JobEvent]) -> dict[int, float]:
    return {e.job_id: e.t for e in events if e.what == "start"}


def test_latency_sensitive_calls_go_before_waiting_delay_tolerant_ones() -> None:
    # one slot; call 0 runs 0-2; calls 1 and 2 may wait 100 s, call 3 may not
    jobs = [Job(0, "fn2", 1, 0.0), Job(1, "fn2", 1, 0.5, 100.0), Job(2, "fn2", 1, 0.6, 100.0), Job(3, "fn2", 1, 1.0)]
    assert starts(run("granny", jobs, 1)) == {0: 0.0, 1: 2.0, 2: 4.0, 3: 6.0}  # FIFO, tolerance ignored
    assert starts(run("dfaas", jobs, 1)) == {0: 0.0, 3: 2.0, 1: 4.0, 2: 6.0}


def test_a_call_that_cannot_meet_its_deadline_is_refused() -> None:
    # fn5 ran once (5 s): a call of it that must be done within 3 s cannot be, and is refused at submission
    events = run("dfaas", [Job(0, "fn5", 1, 0.0), Job(1, "fn5", 1, 6.0, 3.0)], 1)
    assert [(e.job_id, e.what) for e in events if e.what in ("fail", "end")] == [(0, "end"), (1, "fail")]
    assert "deadline" in next(e.detail for e in events if e.what == "fail")


def test_the_deadline_guard_starts_a_call_ahead_of_latency_sensitive_work() -> None:
    # two slots: fn2 (0-2) teaches the planner fn2's runtime; fn10 0-10 and 2.5-12.5 fill both slots.
    # Call 3 (fn2, due at 3 + 9 = 12) waits in the batch queue; call 4 (latency-sensitive) queues at 4.
    # At its latest start (12 - 2 - 0.05) the guard puts call 3 first: it takes the slot freed at 10
    # and meets its deadline; call 4 waits for the next slot (12).
    jobs = [Job(0, "fn2", 1, 0.0), Job(1, "fn10", 1, 0.0), Job(2, "fn10", 1, 2.5), Job(3, "fn2", 1, 3.0, 9.0),
            Job(4, "fn5", 1, 4.0)]
    events = run("dfaas", jobs, 2)
    assert starts(events) == {0: 0.0, 1: 0.0, 2: 2.5, 3: 10.0, 4: 12.0}
    assert summarise(jobs, events).outcomes == {"met": 1, "missed": 0, "refused": 0, "whenever": 0}


def test_the_mixed_trace_is_reproducible_and_survives_its_csv() -> None:
    a = mixed_trace(300, 16, seed=3, burst=10, burst_every=20.0)
    assert a == mixed_trace(300, 16, seed=3, burst=10, burst_every=20.0) != mixed_trace(300, 16, seed=4)
    assert len(a) == 300 and {j.tolerance == 0 for j in a} == {True, False}
    assert any(j.tolerance < 0 for j in a)
    back = parse_trace(io.StringIO(to_csv(a)))
    assert [(j.job_id, j.kind, j.tolerance) for j in back] == [(j.job_id, j.kind, j.tolerance) for j in a]
    assert all(abs(x.arrival - y.arrival) < 1e-6 for x, y in zip(a, back, strict=True))
