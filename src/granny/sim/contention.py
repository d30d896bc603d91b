"""Jobs that share a machine's cores slow each other down: the testbed's contention model.

The live replay's testbed is 4 hosts x 2 slots in network namespaces of one machine, so its 8 slots
share that machine's few physical cores (2 here), while the runtime model (:mod:`.runtime`) was
fitted on jobs that ran alone. On a real cluster every host has its own cores and this model is off
(:attr:`RuntimeModel.contention` is None); only the testbed-calibrated model carries one.

- **Processor sharing.** A job's solo runtime has a part that needs a core (the ranks' all-to-alls,
  their Python, the links' shaping) and a part that does not (the kernels' "compute" is a sleep).
  The machine's runnable tasks are ``background`` (other work: measured during the live run, see
  :mod:`granny.experiment.loadprobe`) plus ``per_slot`` for each slot running a rank; past ``free``
  of them (what the cores absorb without a job noticing) the first part is shared:

      slowdown(kind, busy) = 1 + share[kind] * max(0, background + per_slot * busy - free) / cores

  and a running job progresses at 1 / (its solo runtime x slowdown). ``share`` (per kernel),
  ``per_slot`` and ``free`` are fitted on k concurrent jobs beside 0, 2 or 4 CPU-bound processes
  (``benchmarks/calibrate_testbed.py --contention``, ``benchmarks/fit_contention.py``). The
  simulator re-times every running job when ``busy`` changes (a job starts, ends, moves, freezes or
  resizes).
- **Moves.** The rank that moves starts again in a fresh process on its new host and the world is
  rebuilt: CPU work that the machine's other work stretches, so a move's cost is a line in the
  background, fitted on moves of a 2-rank world beside 0, 2 and 4 CPU-bound processes (it replaces the
  idle machine's ``move_cost`` of testbed.json in the replay's simulated twin).
- **Release.** An MPI rank's process retires after its world (its state must not leak into other
  work) and the worker forks a fresh one: the slot is not free for ``release`` seconds after the job's
  end (measured from the planner's journal: a job's last result to the placement of the job queued
  behind it). OpenMP-style jobs' granules run calls and stay.
It models one machine's cores: re-timing costs O(running jobs) at each change of the busy slots, fine
for the testbed's few slots, and meaningless (and slow) for a simulated cluster of many hosts, which
runs without it. Pure: no I/O; the parameters come from testbed.json (:mod:`granny.experiment.calibration`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ..errors import ConfigError


@dataclass(frozen=True)
class Contention:
    cores: int  # physical cores every slot shares
    share: Mapping[str, float] = field(default_factory=dict)  # fitted kind -> part of its runtime that needs a core
    release: float = 0.0  # seconds an MPI job's slots stay taken after its end (fresh rank processes)
    per_slot: float = 1.0  # runnable tasks a slot running a rank adds
    free: float | None = None  # runnable tasks the cores absorb unnoticed (None: cores)
    background: float = 0.0  # runnable tasks of other work on the same cores, during the run
    move: tuple[float, float] | None = None  # seconds a move adds to a job: move[0] + move[1] * background
    source: str = ""  # the measurements it was fitted on

    def __post_init__(self) -> None:
        if self.cores < 1:
            raise ConfigError(f"a contention model needs cores >= 1, got {self.cores}")
        if min(self.release, self.per_slot, self.background, *self.share.values()) < 0:
            raise ConfigError(f"contention shares, release, per_slot and background must be >= 0: {self}")

    def move_cost(self) -> float | None:
        """Seconds a move (or thaw) adds to a job at this background (None: not measured)."""
        if self.move is None:
            return None
        return max(0.0, self.move[0] + self.move[1] * self.background)

    def over(self, busy: int) -> float:
        """Runnable tasks past what the cores absorb, while ``busy`` slots run ranks (every slowdown is a function of it)."""
        return max(0.0, self.background + self.per_slot * busy - (self.cores if self.free is None else self.free))

    def slowdown(self, kind: str, busy: int) -> float:
        """How many times longer a job of (fitted) ``kind`` takes while ``busy`` slots run ranks."""
        over = self.over(busy)
        if over <= 0:
            return 1.0
        return 1.0 + self.share.get(kind, 0.0) * over / self.cores
