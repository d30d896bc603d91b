"""How long a job runs: a model fitted on measurements (see benchmarks/calibrate_runtime.py).

For a job of ``kind`` whose ``n`` ranks are split over hosts as ``counts``:

    runtime = (a + b / n) * (1 + beta * links(counts) / n)

- ``a + b / n`` is strong scaling (a fixed problem over more ranks: Amdahl's serial ``a`` and a
  parallel ``b``), on one host, or on as few as the job needs;
- ``links / n`` is the number of cross-host partners per rank (halved): zero on one host, and it
  grows as a job is split into more, smaller parts. ``beta`` is the slowdown per such link and
  rank, so that locality matters as much as it did in the measurements.
Migrations cost nothing yet (the migration micro-benchmark will calibrate that). That is a job alone
on its hosts; the testbed-calibrated model also says how jobs that share the machine's cores slow
each other down (``contention``, :mod:`.contention`; None on a real cluster). Pure: no I/O; the
fitted parameters are loaded by :mod:`granny.experiment.calibration`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from ..errors import ConfigError
from ..planner.policies import links
from .contention import Contention


@dataclass(frozen=True)
class KindModel:
    a: float  # seconds that do not shrink with more ranks
    b: float  # rank-seconds of parallel work
    beta: float  # slowdown per cross-host link and rank
    source: str = ""  # the measurements it was fitted on

    def runtime(self, counts: Iterable[int]) -> float:
        parts = [c for c in counts if c > 0]
        n = sum(parts)
        if n < 1:
            raise ConfigError("a job needs at least one rank")
        return (self.a + self.b / n) * (1.0 + self.beta * links(parts) / n)


@dataclass(frozen=True)
class RuntimeModel:
    kinds: Mapping[str, KindModel]
    aliases: Mapping[str, str] = field(default_factory=dict)  # trace App name -> fitted kind
    contention: Contention | None = None  # jobs sharing the testbed's cores (None: each host has its own)

    def of(self, kind: str) -> KindModel:
        model = self.kinds.get(self.aliases.get(kind, kind))
        if model is None:
            known = sorted({*self.kinds, *self.aliases})
            raise ConfigError(f"no runtime model for jobs of kind {kind!r}; known: {', '.join(known)}")
        return model

    def runtime(self, kind: str, counts: Iterable[int]) -> float:
        return self.of(kind).runtime(counts)

    def slowdown(self, kind: str, busy: int) -> float:
        """How many times its solo runtime a job of ``kind`` takes while ``busy`` slots run ranks."""
        if self.contention is None:
            return 1.0
        return self.contention.slowdown(self.aliases.get(kind, kind), busy)


def optimal_counts(n: int, slots: int) -> list[int]:
    """The split of ``n`` ranks over hosts of ``slots`` with the fewest hosts and cross-host links."""
    full, rest = divmod(n, slots)
    return [slots] * full + ([rest] if rest else [])
