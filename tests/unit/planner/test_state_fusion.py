"""Function fusion in PlannerState (pure; planner/fusion.py): fusable delay-tolerant calls of one app share a
granule and count as one slot; cancelling one is a Skip; a dead fused granule fails all its calls."""

from __future__ import annotations

from granny.planner.lifecycle import TaskState
from granny.planner.state import Dispatch, Fail, Kill, PlannerState, Skip

from .test_state import of, planner


def fused(s: PlannerState, app: str, n: int, prefix: str = "c", now: float = 0.0) -> list[Dispatch]:
    acts: list[Dispatch] = []
    for i in range(n):
        acts += of(s.submit(f"{prefix}{i}", app, 1, tolerance=-1, key="f", now=now, fuse=True), Dispatch)
    return acts


def test_fusable_calls_of_one_app_share_one_granule_and_count_as_one_slot() -> None:
    s = planner(("h1", 2))
    acts = fused(s, "a", 5)
    assert len({d.granule_id for d in acts}) == 1 and all(d.fused for d in acts)
    assert s.hosts["h1"].busy() == 1 and s.batch.running() == 1
    assert s.batch.counts["fused"] == 5 and s.batch.counts["fused_peak"] == 5
    other = fused(s, "b", 1, prefix="b")  # another app's call never joins that process
    assert other[0].granule_id != acts[0].granule_id and s.hosts["h1"].busy() == 2


def test_the_fusion_cap_bounds_the_calls_of_one_granule() -> None:
    s = planner(("h1", 2))
    s.batch.fuse_cap = 3
    acts = fused(s, "a", 5)
    per_granule = sorted([d.granule_id for d in acts].count(g) for g in {d.granule_id for d in acts})
    assert per_granule == [2, 3]


def test_fused_calls_take_one_share_of_the_slots_and_leave_the_rest_to_latency_sensitive_work() -> None:
    s = planner(("h1", 2))
    s.batch.share = 0.5  # one slot of two for delay-tolerant work
    fused(s, "a", 4)
    assert of(s.submit("plain", "a", 1, tolerance=-1, key="g", now=0.0), Dispatch) == []  # the share is used
    assert [d.req_id for d in of(s.submit("now", "a", 1, now=0.0), Dispatch)] == ["now"]
    assert len(fused(s, "a", 2, prefix="late")) == 2  # still fused: no slot more


def test_cancelling_a_fused_call_skips_it_and_the_others_run_on() -> None:
    s = planner(("h1", 1))
    acts = fused(s, "a", 3)
    gid = acts[0].granule_id
    out = s.cancel(req_id="c1")
    assert of(out, Kill) == [] and [(k.req_id, k.granule_id) for k in of(out, Skip)] == [("c1", gid)]
    assert s.requests["c0"].tasks[0].state is TaskState.RUNNING
    for rid in ("c0", "c2"):
        assert s.task_done(gid, rid, 0, True)[0]
    assert s.granules[gid].tasks == [] and s.hosts["h1"].busy() == 0 and not s.batch.fused
    assert s.batch.running() == 0 and s.batch.fused_calls == 0


def test_a_dead_fused_granule_fails_all_its_calls_without_running_them_again() -> None:
    s = planner(("h1", 1))
    acts = fused(s, "a", 3)
    out = s.granule_exited(acts[0].granule_id, "killed")
    assert sorted(f.req_id for f in of(out, Fail)) == ["c0", "c1", "c2"]
    assert all(s.requests[f"c{i}"].final() for i in range(3)) and not s.queue and not s.batch.fused


def test_latency_sensitive_and_unfusable_calls_are_not_fused() -> None:
    s = planner(("h1", 2))
    assert not of(s.submit("ls", "a", 1, now=0.0, fuse=True), Dispatch)[0].fused  # tolerance 0: runs alone
    s.batch.fuse_cap = 1
    assert not any(d.fused for d in fused(s, "a", 1))
