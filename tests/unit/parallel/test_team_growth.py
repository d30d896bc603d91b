"""An elastic team's growth decisions at forks (parallel/team.py), against a fake planner client.

The fake answers as the planner does between a lease's submission and its placement: the hosts'
``used`` counts do not include the lease yet. The team's board and listener are real (local shm
and a socket); no granule ever joins unless the test marks it present on the board.
"""

from __future__ import annotations

import importlib
import itertools
from collections.abc import Iterator
from typing import Any

import pytest

from granny.hostinfo import HostInfo
from granny.parallel.board import ThreadWord
from granny.parallel.team import Team

team_mod = importlib.import_module("granny.parallel.team")  # (granny.parallel.team is also a function)


class FakeLease:
    def __init__(self, req_id: str) -> None:
        self.req_id = req_id
        self.ended = False

    def done(self) -> bool:
        return self.ended

    def cancelled(self) -> bool:
        return False

    def exception(self) -> BaseException | None:
        return None

    def result(self, timeout: float | None = None) -> list[int]:
        return []

    def cancel(self) -> bool:
        self.ended = True
        return True


class StaleClient:
    """``free`` free slots (of 2) on one host, whatever was leased; the queue as the test sets it."""

    address = "127.0.0.1:1"

    def __init__(self) -> None:
        self.leases: list[tuple[FakeLease, int, int]] = []  # (lease, granules, first thread)
        self.revoked: dict[str, int] = {}
        self.queue: list[dict[str, Any]] = []
        self.free = 2
        self._ids = itertools.count()

    def submit_gang(self, fn: Any, n: int, args: tuple[Any, ...] = (), lease: bool = False) -> FakeLease:
        f = FakeLease(f"lease{next(self._ids)}")
        self.leases.append((f, n, int(args[-1])))
        return f

    def take_revoked(self, req_id: str) -> int:
        return self.revoked.pop(req_id, 0)

    def hosts(self) -> list[HostInfo]:
        return [HostInfo("h1", 2, 2 - self.free, True)]

    def query(self, what: str, arg: str = "") -> Any:
        assert what == "waiting"
        return len(self.queue)


@pytest.fixture
def team(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Team, StaleClient]]:
    monkeypatch.setattr(team_mod, "GROWTH_INTERVAL", -1.0)  # every fork may look (no clock in the test)
    client = StaleClient()
    t = Team(client, 1, elastic=True)
    try:
        yield t, client
    finally:
        t.close()


def join(t: Team, *threads: int) -> None:
    for thread in threads:
        t.board.words[t.board.word(thread, ThreadWord.PRESENT)] = 1


def retired(t: Team, thread: int) -> bool:
    return bool(t.board.words[t.board.word(thread, ThreadWord.RETIRED)])


def test_a_team_does_not_lease_the_same_free_slots_twice(team: tuple[Team, StaleClient]) -> None:
    t, client = team
    t._rescale()  # the first fork: the team's own threads are still joining
    t._rescale()
    assert [(n, first) for _, n, first in client.leases] == [(1, 1), (1, 2)]  # one lease per thread
    for _ in range(3):  # the leases are not placed yet, and the planner's hosts do not count them
        t._rescale()
    assert len(client.leases) == 2 and t.size == 3


def test_a_team_does_not_grow_while_anything_waits_in_the_queue(team: tuple[Team, StaleClient]) -> None:
    t, client = team
    client.queue = [{"req_id": "someone", "granules": 1}]
    for _ in range(3):
        t._rescale()
    assert client.leases == []


def test_a_given_back_thread_is_leased_again_only_once_its_granule_ended(team: tuple[Team, StaleClient]) -> None:
    t, client = team
    t._rescale()
    t._rescale()
    join(t, 1, 2)
    (first, _, _), (second, _, _) = client.leases
    client.revoked[second.req_id] = 1
    t._rescale()
    assert t.size == 2 and t.retired == {2} and retired(t, 2)
    t._rescale()  # thread 2's granule has not ended: its number is not leased again yet
    assert len(client.leases) == 2
    second.ended = True
    client.free = 1
    t._rescale()
    assert [first for _, _, first in client.leases] == [1, 2, 2]
    assert t.size == 3 and t.retired == set() and not retired(t, 2) and not t.board.present(2)
