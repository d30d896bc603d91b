"""What the state's helper modules use of :class:`~granny.planner.state.PlannerState`, as Protocols.

batch, eviction, fusion, leases, migration and pausing take the state as ``st`` (or are mixed into it)
and the state calls them. Typed with these Protocols instead of PlannerState, they need not import
state.py, so the import graph points one way: state -> helpers -> protocols (issue 17). PlannerState
satisfies each one; mypy checks that wherever the state passes itself to a helper.

:class:`StateCore` is what most of them use. A helper that needs more extends it in its own module
with its own records (eviction.EvictionState, migration.MigrationState, leases.LeaseState,
batch.BatchState), so that this module imports leaves only.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Mapping
from typing import Protocol

from .batch_queue import Batch
from .capacity import HostViews
from .policies import ClusterView, Policy
from .records import Action, App, Granule, Host, Request


class HeldSlots(Protocol):
    """holds.Holds, as the helpers see it (holds.py is their sibling: they may not import it)."""

    def view(self, view: ClusterView, app_id: str, requests: Mapping[str, Request]) -> ClusterView: ...

    @property
    def moving(self) -> dict[str, tuple[str, Counter[str], str]]: ...  # (make_room.py)

    @property
    def room(self) -> dict[str, tuple[str, Counter[str]]]: ...


class StateCore(Protocol):
    hosts: dict[str, Host]
    granules: dict[str, Granule]
    requests: dict[str, Request]
    apps: dict[str, App]
    queue: deque[str]  # the FIFO queue of request ids
    evicting: set[str]  # hosts under an eviction notice
    policy: Policy
    views: HostViews  # the hosts' placement views

    @property
    def holds(self) -> HeldSlots:  # slots held for teams (holds.py): other apps' placements must not take them
        ...

    def schedule(self) -> list[Action]:
        """The placement pass: place what waits, where the policy finds room."""
        ...


class BatchedState(StateCore, Protocol):
    """What fusion.py and pausing.py use: the core and the batch queue."""

    batch: Batch
