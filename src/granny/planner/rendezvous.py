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

from .lifecycle import TaskState
from .records import Action, JoinRefused, RankAddress, Request, WorldReady


class Rendezvous:
    def __init__(self) -> None:
        self._worlds: dict[str, dict[int, RankAddress]] = {}  # req_id -> rank -> address
        self._gens: dict[str, int] = {}  # req_id -> the generation being joined

    def join(self, granule_id: str, req_id: str, req: Request | None, index: int, address: RankAddress,
             gen: int = 0, current: int = 0) -> list[Action]:
        """Rank ``index`` of ``req`` (None: unknown) joins generation ``gen`` from ``granule_id``; the table
        once all joined. ``current`` is the world's generation now (it grows with every migration)."""
        task = req.tasks[index] if req is not None and 0 <= index < req.n else None
        if req is None or task is None or task.granule_id != granule_id or task.state is not TaskState.RUNNING:
            return [JoinRefused(granule_id, req_id, f"rank {index} of {req_id} is not running here", gen)]
        if gen != current:
            return [JoinRefused(granule_id, req_id, f"generation {gen} of world {req_id} is not its current one "
                                                    f"({current})", gen)]
        if self._gens.get(req_id, gen) != gen:  # an older generation's incomplete table is void
            self._worlds.pop(req_id, None)
        self._gens[req_id] = gen
        world = self._worlds.setdefault(req_id, {})
        world[index] = address
        if len(world) < req.n:
            return []
        del self._worlds[req_id]
        del self._gens[req_id]
        return [WorldReady(req_id, tuple(t.granule_id for t in req.tasks), tuple(world[i] for i in range(req.n)), gen)]

    def drop(self, req_id: str) -> None:
        self._worlds.pop(req_id, None)
        self._gens.pop(req_id, None)

    def pending(self, req_id: str) -> int:
        """How many ranks of an incomplete world have joined."""
        return len(self._worlds.get(req_id, ()))

    def __len__(self) -> int:
        return len(self._worlds)
