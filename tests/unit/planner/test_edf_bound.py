"""The fast admission test (planner/edf_bound.py) is sufficient: whenever it admits a call, the exact
replay of earliest-deadline-first list scheduling (batch.refusal without it) admits it too; and the
batch queue's per-function counts follow its changes."""

from __future__ import annotations

import math
from unittest import mock

from hypothesis import given, settings
from hypothesis import strategies as st

from granny.planner import batch, edf_bound
from granny.planner.batch import Delayed
from granny.planner.batch_queue import EdfQueue
from granny.planner.state import PlannerState

from .test_state import add_host


@settings(max_examples=300, deadline=None)
@given(slots=st.integers(1, 3), busy=st.lists(st.sampled_from([0.5, 1.0, 3.0]), max_size=3),
       waiting=st.lists(st.tuples(st.sampled_from([0.5, 1.0, 3.0]), st.one_of(st.just(-1.0), st.floats(0.5, 40))),
                        max_size=20),
       new=st.tuples(st.sampled_from([0.5, 1.0, 3.0]), st.floats(0.5, 60)))
def test_what_the_fast_test_admits_the_replay_admits(slots: int, busy: list[float],
                                                     waiting: list[tuple[float, float]],
                                                     new: tuple[float, float]) -> None:
    s = PlannerState(heartbeat_timeout=1e9)
    add_host(s, "h1", slots)
    for key in (0.5, 1.0, 3.0):
        s.batch.observe(str(key), key)
    with mock.patch.object(edf_bound, "admits", return_value=False):  # fill the queue as the replay allows
        for i, key in enumerate(busy + [k for k, _ in waiting]):
            tol = -1.0 if i < len(busy) else waiting[i - len(busy)][1]
            s.submit(f"r{i}", "a", 1, tolerance=tol, key=str(key), now=0.0)
    key, tol = new
    d = Delayed(tol, 0.0, 10_000, "new", str(key))
    slots_used = max(1, math.floor(s.batch.share * slots))
    if edf_bound.admits(s, d, float(key), slots_used, batch.MARGIN):
        with mock.patch.object(edf_bound, "admits", return_value=False):
            assert batch.refusal(s, d, tol) == ""


def test_the_queue_counts_its_finite_deadline_calls_per_function() -> None:
    import bisect

    q = EdfQueue()
    a, b, c = Delayed(5.0, 0.0, 1, "a", "f"), Delayed(math.inf, 0.0, 2, "b", "f"), Delayed(3.0, 0.0, 3, "c", "g")
    for d in (a, b, c):
        bisect.insort(q, d)
    assert list(q) == [c, a, b] and q.finite == {"f": 1, "g": 1}
    q.pop(0)
    q.remove(b)
    assert q.finite == {"f": 1}
    q.clear()
    assert not q.finite and not q
