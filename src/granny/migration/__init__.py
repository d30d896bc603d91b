"""Migration points: where a running MPI world may move its ranks to other hosts.

``granny.migration_point(resume, *args)`` is collective over the world. Usually it returns at once; when
the planner moves some ranks, each of them ends here and a granule on its new host runs
``resume(*args)`` as the same rank, while the others return with the world rebuilt around them. See
docs/migration.md, :mod:`.point` (the protocol) and :mod:`.ship` (how state travels).
"""

from __future__ import annotations

from typing import Any

from .control import Control, MigratedAway, Order

__all__ = ["Control", "MigratedAway", "Order", "migration_point"]


def __getattr__(name: str) -> Any:
    # Loaded on first use: the protocol needs the MPI runtime, which a granule loads only for MPI tasks.
    if name == "migration_point":
        from .point import migration_point

        return migration_point
    raise AttributeError(f"module 'granny.migration' has no attribute {name!r}")
