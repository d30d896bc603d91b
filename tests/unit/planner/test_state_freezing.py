"""Preemption by freezing (pure; planner/freezing.py): a delay-tolerant call with migration points is
hinted first (before restart or pause), frozen at its next point, stored, requeued with its deadline and
thawed; a call that would then miss its deadline, or is latency-sensitive, is never frozen."""

from __future__ import annotations

from granny.planner.lifecycle import TaskState
from granny.planner.records import Hint, MigrateAnswer, StoreState
from granny.planner.state import Dispatch, Kill
from granny.wire.messages import NOT_PREEMPTIBLE

from .test_state import of, planner


def test_a_call_with_points_is_frozen_rather_than_restarted_and_thaws_later() -> None:
    s = planner(("h1", 1))
    s.batch.observe("f", 4.0)
    (placed,) = of(s.submit("bg", "a", 1, tolerance=60.0, key="f", now=0.0, restartable=True), Dispatch)
    gid = placed.granule_id
    (stay,) = of(s.migrate_ask(gid, "bg", 0, True, "", now=0.1), MigrateAnswer)
    assert not stay.freeze and stay.reason != NOT_PREEMPTIBLE  # its first point: the planner learns it has some
    s.migrate_ask(gid, "bg", 0, True, "", now=0.2, interval=0.1)
    acts = s.submit("now", "a", 1, now=1.0)
    assert of(acts, Kill) == [] and of(acts, Hint) == [Hint(gid, "bg")]  # freeze first: no restart, no pause
    (order,) = of(s.migrate_ask(gid, "bg", 0, True, "", now=1.1), MigrateAnswer)
    assert order.freeze
    (store,) = of(s.migrate_served(gid, "bg", 0, order.gen, "127.0.0.1", 1, b"k"), StoreState)
    s.state_stored("bg", 0, store.slot, "", now=1.2)
    assert s.requests["bg"].tasks[0].state is TaskState.QUEUED and [d.req_id for d in s.batch.waiting] == ["bg"]
    assert s.batch.known["bg"].ran > 1.0  # what it ran counts: its latest start is later than a fresh call's
    s.granule_disconnected(gid)  # as the server does on the moved Done: the old process retires
    s.moved_away(gid, "bg", 0)
    s.granule_exited(gid, "exited")  # not the call's end
    assert not s.requests["bg"].final()
    got = of(s.granule_connected("h1", "h1-new", None), Dispatch)
    assert [d.req_id for d in got] == ["now"]  # the latency-sensitive call takes the slot
    _, acts = s.task_done("h1-new", "now", 0, True)
    (thaw,) = of(acts, Dispatch)
    assert thaw.req_id == "bg" and thaw.thaw == order.gen  # it resumes from the stored state
    assert s.batch.counts["frozen"] == 1 and s.batch.counts.get("preempted", 0) == 0
    assert s.batch.counts["freezes"] == 1 and s.batch.known["bg"].freezes == 1
    # A frozen call is not an MPI world: the migration counters (worlds) count none of this.
    assert not {"freezes", "frozen", "failed"} & set(s.migrations.counts), s.migrations.counts


def test_no_freeze_that_would_miss_the_deadline_and_none_of_latency_sensitive_calls() -> None:
    s = planner(("h1", 2))
    s.batch.observe("f", 10.0)
    (tight,) = of(s.submit("tight", "a", 1, tolerance=15.0, key="f", now=0.0), Dispatch)  # 2 × 10 s left > 15 s
    (urgent,) = of(s.submit("ls", "a", 1, now=0.0), Dispatch)
    for now, interval in ((0.1, 0.0), (0.2, 0.1)):
        s.migrate_ask(tight.granule_id, "tight", 0, True, "", now=now, interval=interval)
    (answer,) = of(s.migrate_ask(urgent.granule_id, "ls", 0, True, "", now=0.2), MigrateAnswer)
    assert answer.reason == NOT_PREEMPTIBLE and not answer.freeze  # it stops asking
    assert of(s.submit("now", "a", 1, now=1.0), Hint) == []
    (again,) = of(s.migrate_ask(tight.granule_id, "tight", 0, True, "", now=1.1), MigrateAnswer)
    assert not again.freeze


def test_a_hinted_call_that_reaches_no_point_in_time_is_passed_over_and_paused() -> None:
    s = planner(("h1", 1))
    s.batch.observe("f", 4.0)
    (placed,) = of(s.submit("bg", "a", 1, tolerance=60.0, key="f", now=0.0), Dispatch)
    gid = placed.granule_id
    s.migrate_ask(gid, "bg", 0, True, "", now=0.1)
    s.migrate_ask(gid, "bg", 0, True, "", now=0.2, interval=0.1)
    assert of(s.submit("now", "a", 1, now=1.0), Hint) == [Hint(gid, "bg")]
    assert of(s.tick(now=1.0), Kill) == []  # the wait for its point starts (on the tick's clock)
    due = s.next_deadline()
    assert due is not None and 1.0 < due <= 1.5  # three of its intervals (and a margin) to reach a point
    kills = of(s.tick(now=due), Kill)
    assert [(k.granule_id, k.signal) for k in kills] == [(gid, "STOP")]  # the last resort after all
    assert s.batch.counts["freeze_missed"] == 1
    (late,) = of(s.migrate_ask(gid, "bg", 0, True, "", now=due + 0.1), MigrateAnswer)
    assert not late.freeze  # a point reached after all comes too late: it is not frozen now
