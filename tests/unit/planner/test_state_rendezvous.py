"""The MPI rendezvous in PlannerState (pure): ranks join, the full table goes to every rank."""

from __future__ import annotations

from granny.planner.state import Fail, JoinRefused, PlannerState, RankAddress, WorldReady

from .test_state import of, planner


def addr(rank: int, host: str = "h1") -> RankAddress:
    return RankAddress(host, 100 + rank, "10.0.0.1", 5000 + rank)


def world(n: int = 3) -> tuple[PlannerState, dict[int, str]]:
    """A planner running one n-rank gang ``w``; returns it and rank -> granule."""
    s = planner(("h1", 2), ("h2", 2))
    dispatched = s.submit("w", "run-1", n, app_kind="script", gang=True)
    assert len(dispatched) == n
    return s, {i: t.granule_id for i, t in enumerate(s.requests["w"].tasks)}


def test_the_table_goes_out_once_every_rank_joined_in_rank_order() -> None:
    s, gids = world(3)
    assert s.mpi_join(gids[2], "w", 2, addr(2)) == []
    assert s.mpi_join(gids[0], "w", 0, addr(0)) == []
    assert s.rendezvous.pending("w") == 2
    (ready,) = s.mpi_join(gids[1], "w", 1, addr(1))
    assert ready == WorldReady("w", (gids[0], gids[1], gids[2]), (addr(0), addr(1), addr(2)))
    assert len(s.rendezvous) == 0  # nothing kept once sent


def test_a_rank_joining_twice_does_not_complete_the_world() -> None:
    s, gids = world(2)
    assert s.mpi_join(gids[0], "w", 0, addr(0)) == []
    assert s.mpi_join(gids[0], "w", 0, addr(0, "h9")) == []  # the later address wins, still one rank
    (ready,) = s.mpi_join(gids[1], "w", 1, addr(1))
    assert isinstance(ready, WorldReady) and ready.ranks[0].host_id == "h9"


def test_only_the_granule_running_a_rank_may_join_as_it() -> None:
    s, gids = world(2)
    refused = [s.mpi_join(gids[1], "w", 0, addr(0)),  # another rank's granule
               s.mpi_join("h1-g9", "w", 0, addr(0)),  # no such granule
               s.mpi_join(gids[0], "w", 5, addr(5)),  # no such rank
               s.mpi_join(gids[0], "nope", 0, addr(0))]  # no such request
    for actions in refused:
        assert len(actions) == 1 and isinstance(actions[0], JoinRefused)
        assert "is not running here" in actions[0].reason
    assert s.rendezvous.pending("w") == 0


def test_a_half_joined_world_is_dropped_when_its_request_ends() -> None:
    s, gids = world(3)
    s.mpi_join(gids[0], "w", 0, addr(0))
    s.mpi_join(gids[1], "w", 1, addr(1))
    _, actions = s.task_done(gids[2], "w", 2, False)  # a rank fails: the gang ends
    assert len(of(actions, Fail)) == 2 and s.requests["w"].final()
    assert len(s.rendezvous) == 0
    # A straggler of the ended world is refused, never given a table.
    (refused,) = s.mpi_join(gids[2], "w", 2, addr(2))
    assert isinstance(refused, JoinRefused)


def test_forgetting_a_request_drops_its_world() -> None:
    s, gids = world(2)
    s.mpi_join(gids[0], "w", 0, addr(0))
    s.cancel(req_id="w")
    s.forget(["w"])
    assert len(s.rendezvous) == 0
