"""The MPI rendezvous: each rank of a world reports where it listens; the full table goes to all.

Theory of operation: a world is one gang request. Each of its ranks, once running, sends the planner
its address (``MpiJoin``). A join counts only from the granule the rank's task is assigned to and
while that task runs; anything else is refused, so a granule cannot take another rank's place. When
the last rank joined, :class:`~granny.planner.state.PlannerState` emits a
:class:`~granny.planner.records.WorldReady` action: the driver sends the table (with a fresh key for
the world's data plane) to every rank. A world whose request ends, or is forgotten, is dropped.
Pure: no sockets, threads or clocks.
"""

from __future__ import annotations

from .records import RankAddress


class Rendezvous:
    def __init__(self) -> None:
        self._worlds: dict[str, dict[int, RankAddress]] = {}  # req_id -> rank -> address

    def join(self, req_id: str, n: int, index: int, address: RankAddress) -> tuple[RankAddress, ...] | None:
        """Record rank ``index`` of an ``n``-rank world; the whole table once every rank joined."""
        world = self._worlds.setdefault(req_id, {})
        world[index] = address
        if len(world) < n:
            return None
        del self._worlds[req_id]
        return tuple(world[i] for i in range(n))

    def drop(self, req_id: str) -> None:
        self._worlds.pop(req_id, None)

    def pending(self, req_id: str) -> int:
        """How many ranks of an incomplete world have joined."""
        return len(self._worlds.get(req_id, ()))

    def __len__(self) -> int:
        return len(self._worlds)
