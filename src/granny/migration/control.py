"""What a migration point needs from the process it runs in (the granule provides it).

Outside a granule nothing is set, and a migration point does nothing. In a plain function call (not an
MPI world) the control is the call's own: the planner may freeze the call there (see migration.point).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ..mpi.world import Exchange


@dataclass(frozen=True)
class Order:
    """The planner's answer at a point: the ranks that move (rank, source host, target host) into world
    generation ``gen``; no moves: stay."""

    gen: int
    moves: tuple[tuple[int, str, str], ...]
    reason: str = ""
    freeze: bool = False  # every rank saves its state to the planner and ends (no room anywhere)
    checkpoint: int = 0  # every rank saves its state to the planner as this checkpoint, and goes on


class PointControl(Protocol):
    """What every migration point needs: a plain call's control has only this (worker/call_ctl.py)."""

    gen: int  # the world's generation (how many times it was rebuilt)
    plain: bool  # a plain function call's control (no MPI world; see migration.point._plain)

    def should_ask(self) -> bool:
        """Rank 0: has the planner hinted that the world would gain from moving (or never been asked)?"""

    def ask(self, ready: bool, why: str) -> Order:
        """Rank 0: ask the planner now (one round trip); it also says whether a checkpoint is due."""

    def served(self, gen: int, ip: str, port: int, key: bytes, nbytes: int, checkpoint: int = 0) -> None:
        """A moving (or checkpointing) rank: tell the planner where its packed state waits."""

    def route_ip(self) -> str:
        """The address other hosts reach this one at."""


class Control(PointControl, Protocol):
    """An MPI rank's control (worker/migrate_ctl.py)."""

    def checkpointed(self) -> None:
        """Rank 0: a checkpoint was taken (the cadence counts from now)."""

    def exchange(self, gen: int) -> Exchange:
        """The rendezvous of generation ``gen`` of this rank's world."""

    def world_id(self, gen: int) -> str: ...


class MigratedAway(BaseException):  # it is not an error: the rank goes on elsewhere
    """Raised in a moving rank's old process once its state is handed over: the granule reports the rank
    moved (not finished) and the process ends. A BaseException, so that ``except Exception`` in user
    code does not stop it (``finally`` blocks do run)."""

    def __init__(self, gen: int, target: str) -> None:
        super().__init__(f"rank moved to host {target} (world generation {gen})")
        self.gen, self.target = gen, target


_current: list[PointControl | None] = [None]


def set_current(control: PointControl | None) -> None:
    _current[0] = control


def current() -> PointControl | None:
    return _current[0]
