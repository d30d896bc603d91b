"""A slot that frees goes to a latency-sensitive call prefetched behind a running one, not to a waiting
delay-tolerant call (pure; planner/prefetch.py): found in the DFaaS benchmark's latency-sensitive tail."""

from __future__ import annotations

from granny.planner.state import Dispatch, Skip

from .test_state import of, planner


def test_a_freed_slot_takes_the_prefetched_latency_sensitive_call_before_batch_work() -> None:
    s = planner(("h1", 2))
    (a,) = of(s.submit("a", "app", 1, prefetch=True, now=0.0), Dispatch)
    (b,) = of(s.submit("b", "app", 1, prefetch=True, now=0.0), Dispatch)
    assert s.submit("bg", "app", 1, tolerance=60.0, key="f", now=0.0) == []  # no free slot: it waits
    (c,) = of(s.submit("c", "app", 1, prefetch=True, now=0.1), Dispatch)
    assert c.prefetched  # queued behind a running call: no delay-tolerant call to pause
    behind = c.granule_id
    _, acts = s.task_done(b.granule_id, "b", 0, True)
    assert [(d.req_id, d.prefetched) for d in of(acts, Dispatch)] == [("c", False)]
    assert [(k.granule_id, k.req_id) for k in of(acts, Skip)] == [(behind, "c")]
    assert s.requests["c"].tasks[0].granule_id == b.granule_id and [d.req_id for d in s.batch.waiting] == ["bg"]
    _, acts = s.task_done(a.granule_id, "a", 0, True)
    assert [d.req_id for d in of(acts, Dispatch)] == ["bg"]  # the next free slot is the batch queue's
