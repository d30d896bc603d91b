"""Elastic teams' leases and gangs in the pure planner state: revocation and gang abort."""

from __future__ import annotations

from granny.planner.lifecycle import TaskState
from granny.planner.state import Dispatch, Fail, Kill, Revoke

from .test_state import of, planner


def test_a_waiting_request_asks_a_lease_for_its_slots_once() -> None:
    s = planner(("h1", 2))
    lease = s.submit("lease", "team-app", 2, gang=True, lease=True)
    assert len(of(lease, Dispatch)) == 2
    actions = s.submit("call", "other-app", 1)
    assert of(actions, Revoke) == [Revoke("lease", 1)]
    assert of(s.submit("call2", "other-app", 1), Revoke) == []  # the queue head already asked
    # the team gives a granule back: its task ends, and the waiting call is placed there
    granule = s.requests["lease"].tasks[1].granule_id
    accepted, done = s.task_done(granule, "lease", 1, ok=True)
    assert accepted
    assert [(d.req_id, d.granule_id) for d in of(done, Dispatch)] == [("call", granule)]


def test_plain_gangs_are_never_revoked() -> None:
    s = planner(("h1", 2))
    s.submit("world", "mpi-app", 2, gang=True)
    assert of(s.submit("call", "other-app", 1), Revoke) == []


def test_a_failed_gang_member_takes_the_rest_down() -> None:
    s = planner(("h1", 3))
    s.submit("world", "mpi-app", 3, gang=True)
    g0 = s.requests["world"].tasks[0].granule_id
    _, actions = s.task_done(g0, "world", 0, ok=False)
    assert sorted(f.index for f in of(actions, Fail)) == [1, 2]
    assert len(of(actions, Kill)) == 2
    assert [t.state for t in s.requests["world"].tasks] == [TaskState.FAILED, TaskState.CANCELLED,
                                                           TaskState.CANCELLED]


def test_a_teams_surplus_lease_at_the_head_of_the_queue_asks_no_team_back() -> None:
    """A team that leased the same free slots twice (its first lease not placed yet when it looked again):
    the surplus lease waits at the head of the queue. It must not take the team's own first lease
    back (the team would retire the surplus's threads, which hold no slot, and the lease would stay
    at the head for good), nor another team's: growing is taking idle slots only."""
    s = planner(("h1", 2))
    assert len(of(s.submit("first", "team-app", 2, gang=True, lease=True), Dispatch)) == 2
    assert of(s.submit("surplus", "team-app", 2, gang=True, lease=True), Revoke) == []
    s2 = planner(("h1", 2))
    s2.submit("theirs", "other-team", 2, gang=True, lease=True)
    assert of(s2.submit("mine", "team-app", 1, gang=True, lease=True), Revoke) == []

