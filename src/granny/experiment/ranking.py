"""Ranking schedulers by makespan when live runs are noisy: a partial order with ties.

Live makespans of the same scheduler vary from rep to rep (on our shared testbed by ±2% when the
machine is quiet, by 10-30% when other work loads it), so a strict order of schedulers whose
makespans are that close flips between reps and says nothing. Each rep runs every scheduler back to
back on one testbed, so reps are compared pairwise: a live scheduler ``a`` is faster than ``b`` only
when it is in every rep, each time by more than ``floor`` (2%: the quiet machine's rep-to-rep
spread). Otherwise the two are tied. The simulator's (deterministic) order is *consistent* with the
live one when it orders every pair the live runs order, the same way; pairs tied live may come in
any order in the simulation. How many pairs the live runs order at all says how much the check
can tell.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

NOISE_FLOOR = 0.02  # the least relative gap that counts as a difference, whatever the reps' spread


@dataclass(frozen=True)
class LiveOrder:
    mean: dict[str, float]
    spread: dict[str, float]  # (max - min) / min over the reps (reported: the noise of each scheduler)
    before: frozenset[tuple[str, str]]  # (a, b): a is faster than b in every rep, each time by > floor
    floor: float = NOISE_FLOOR

    def faster(self, a: str, b: str) -> bool:
        return (a, b) in self.before

    def tied(self, a: str, b: str) -> bool:
        return not self.faster(a, b) and not self.faster(b, a)

    def text(self) -> str:
        """Tiers, fastest first: ``{granny, slurm} < batch`` (by mean makespan, a scheduler joins the
        tier before it when it is tied with one of its members)."""
        names = sorted(self.mean, key=lambda n: (self.mean[n], n))
        tiers: list[list[str]] = []
        for name in names:
            if tiers and any(self.tied(name, other) for other in tiers[-1]):
                tiers[-1].append(name)
            else:
                tiers.append([name])
        return " < ".join(t[0] if len(t) == 1 else "{" + ", ".join(t) + "}" for t in tiers)


    def ordered(self) -> str:
        """The pairs the live runs order, e.g. ``granny < batch, slurm < batch`` ("none" if all are tied)."""
        return ", ".join(f"{a} < {b}" for a, b in sorted(self.before)) or "none"


def live_order(reps: Sequence[Mapping[str, float]], floor: float = NOISE_FLOOR) -> LiveOrder:
    """The partial order of the schedulers over live reps (each a scheduler -> makespan map)."""
    names = sorted(set().union(*reps)) if reps else []
    runs = {n: [r[n] for r in reps if n in r] for n in names}
    mean = {n: statistics.fmean(v) for n, v in runs.items()}
    spread = {n: (max(v) - min(v)) / min(v) for n, v in runs.items()}
    before = set()
    for a in names:
        for b in names:
            both = [(r[a], r[b]) for r in reps if a in r and b in r]
            if a != b and both and all((mb - ma) / ma > floor for ma, mb in both):
                before.add((a, b))
    return LiveOrder(mean, spread, frozenset(before), floor)


@dataclass(frozen=True)
class Agreement:
    consistent: bool  # the simulator orders every pair the live runs order, the same way
    contradicted: list[tuple[str, str]] = field(default_factory=list)  # (a, b): live a < b, sim b <= a
    sim_only: list[tuple[str, str, float]] = field(default_factory=list)  # tied live, sim apart by >= tie


def agree(live: LiveOrder, sim: Mapping[str, float], tie: float = 0.05) -> Agreement:
    """Compare the simulator's makespans with the live partial order (``tie``: a sim gap worth noting
    between schedulers the live runs tie)."""
    contradicted = sorted((a, b) for a, b in live.before if not sim[a] < sim[b])
    sim_only = []
    names = sorted(sim)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            if live.tied(a, b):
                gap = abs(sim[a] - sim[b]) / min(sim[a], sim[b])
                if gap >= tie:
                    sim_only.append((a, b, gap))
    return Agreement(not contradicted, contradicted, sim_only)
