"""Whether a result takes the result lane: the rules the planner, the granule and the client share."""

from __future__ import annotations

from granny.config import JOURNAL_COPY_MAX
from granny.transport import lane_policy
from granny.wire import Kind, Run, Submit


def _sub(**kw: object) -> Submit:
    return Submit(req_id="r", app_id="a", kind=kw.pop("kind", Kind.PICKLED), **kw)  # type: ignore[arg-type]


def test_only_a_plain_call_is_offered_the_lane() -> None:
    assert lane_policy.offered(_sub())
    for not_plain in (_sub(n=2, gang=True), _sub(n=2, mpi=True), _sub(mpi=True), _sub(keyed=True),
                      _sub(kind=Kind.SCRIPT)):
        assert not lane_policy.offered(not_plain)


def test_a_waiter_reads_the_lane_only_for_small_calls_the_lane_can_serve() -> None:
    assert lane_policy.waiter_reads_lane(_sub(), lane_policy.LANE_WAIT_MAX)
    assert not lane_policy.waiter_reads_lane(_sub(), lane_policy.LANE_WAIT_MAX + 1)
    assert not lane_policy.waiter_reads_lane(_sub(keyed=True), 10)  # its result never comes over the lane


def test_the_granule_hands_over_one_call_at_a_time() -> None:
    run = Run(req_id="r", index=0, n=1, app_id="a", kind=Kind.PICKLED, reply_to="@lane")
    assert lane_policy.hand_over(run, more_waiting=False, moved=False)
    assert not lane_policy.hand_over(run, more_waiting=True, moved=False)
    assert not lane_policy.hand_over(run, more_waiting=False, moved=True)
    run.prefetched = True
    assert not lane_policy.hand_over(run, more_waiting=False, moved=False)
    assert not lane_policy.hand_over(Run(req_id="r", index=0, n=1, app_id="a", kind=Kind.PICKLED), False, False)


def test_what_is_copied_to_the_planner_is_what_its_journal_keeps() -> None:
    assert lane_policy.copy_to_planner(JOURNAL_COPY_MAX)
    assert not lane_policy.copy_to_planner(JOURNAL_COPY_MAX + 1)
