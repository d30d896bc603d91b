"""granny-spot-late in the simulator: the spot policy's option to stay on a host under notice until the last point."""

from __future__ import annotations

import pytest

from granny.sim import EvictionSchedule, Job, KindModel, RuntimeModel, Simulator, scheduler_named

MODEL = RuntimeModel({"long": KindModel(100, 0, 0)})


@pytest.mark.parametrize(("scheduler", "moved_at"), [("granny-spot", 10.0), ("granny-spot-late", 25.0)])
def test_a_job_with_room_elsewhere_leaves_at_once_or_at_its_last_point(scheduler: str, moved_at: float) -> None:
    # h0001 (the job's host) gets a 30 s notice at 5, so it is taken back at 35; h0000 is free. The job has a
    # point every 5 s. Under granny-spot it moves at its next point (10). Under granny-spot-late it keeps using
    # h0001 while its next point but one comes more than LATE_MARGIN (1 s) before the deadline, so its last point
    # there is 25 (35 - 25 = 10 <= 2 x 5 + 1). Either way it loses no work: 1 s for the move, 100 s of work.
    schedule = EvictionSchedule(every=1000, grace=30, start=5, hosts=("h0001",))
    sim = Simulator(scheduler_named(scheduler), 2, 4, MODEL, evictions=schedule)
    r = sim.run([Job(0, "long", 2, 0)])
    (move,) = [e for e in r.events if e.what == "move"]
    assert move.t == pytest.approx(moved_at) and move.counts == (("h0000", 2),)
    assert [(e.what, e.t) for e in r.events if e.what in ("end", "evicted", "freeze")] == [("end", pytest.approx(101))]
    assert sim.state.policy.name == scheduler.removeprefix("granny-")
