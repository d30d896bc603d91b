"""Scheduled evictions on the testbed, like the original's fault injector: the plan, as data. Pure.

A topology file's ``evictions`` section::

    evictions:
      every: 60s       # a round every 60 s (the first one at `start`, default one period after `up`)
      fraction: 0.25   # of the hosts per round, at least one (or `hosts: 1`)
      for: 60s         # how long an evicted host stays away, counted from its eviction
      grace: 10s       # the notice before each eviction (default: the planner's --eviction-grace)

Round ``r`` gives notices to the next hosts in round-robin order that are not away; each is evicted
``grace`` later, and comes back (notice lifted, worker restarted: :mod:`.evictor`) ``for`` after that.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from ..durations import parse_duration
from ..errors import TestbedError


@dataclass(frozen=True)
class EvictionPlan:
    every: float
    away: float  # "for"
    fraction: float = 0.0  # of the hosts per round (0: use `hosts`)
    hosts: int = 0
    grace: float | None = None  # None: the planner's default
    start: float | None = None  # the first round (None: one period after `up`)

    def per_round(self, n: int) -> int:
        k = self.hosts if self.hosts else math.ceil(self.fraction * n)
        return max(1, min(n, k))

    def to_dict(self) -> dict[str, Any]:
        return {"every": self.every, "away": self.away, "fraction": self.fraction, "hosts": self.hosts,
                "grace": self.grace, "start": self.start}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> EvictionPlan:
        return cls(**raw)

    @classmethod
    def parse(cls, raw: Any, what: str) -> EvictionPlan:
        """The ``evictions`` section of a topology file; TestbedError says what is wrong."""
        if not isinstance(raw, dict):
            raise TestbedError(f"{what}: expected a mapping (every, fraction or hosts, for, grace, start)")
        unknown = set(raw) - {"every", "fraction", "hosts", "for", "grace", "start"}
        if unknown or "every" not in raw or "for" not in raw or ("fraction" in raw) == ("hosts" in raw):
            raise TestbedError(f"{what}: give every, for, and one of fraction or hosts (and optionally grace, "
                               f"start){'; unknown: ' + ', '.join(sorted(unknown)) if unknown else ''}")
        try:
            every = parse_duration(raw["every"], f"{what} every")
            away = parse_duration(raw["for"], f"{what} for")
            grace = None if raw.get("grace") is None else _seconds(raw["grace"], f"{what} grace")
            start = None if raw.get("start") is None else _seconds(raw["start"], f"{what} start")
        except ValueError as exc:
            raise TestbedError(str(exc)) from None
        fraction, hosts = float(raw.get("fraction", 0.0)), int(raw.get("hosts", 0))
        if "fraction" in raw and not 0 < fraction <= 1:
            raise TestbedError(f"{what}: fraction must be in (0, 1], got {fraction}")
        if "hosts" in raw and hosts < 1:
            raise TestbedError(f"{what}: hosts must be at least 1, got {hosts}")
        return cls(every, away, fraction, hosts, grace, start)


@dataclass(frozen=True)
class Step:
    at: float  # seconds after `up`
    host: str
    action: Literal["evict", "restore"]


def steps(plan: EvictionPlan, hosts: list[str], until: float) -> list[Step]:
    """Every step of ``plan`` due up to ``until`` seconds after `up`, in time order (evictions before
    restores at the same time). A host is notified again only after it came back."""
    out: list[Step] = []
    back = dict.fromkeys(hosts, 0.0)  # when each host is back
    grace = plan.grace or 0.0
    k, cursor = plan.per_round(len(hosts)), 0
    at = plan.every if plan.start is None else plan.start
    while at <= until:
        for _ in range(k):
            for _ in range(len(hosts)):  # the next host in round-robin order that is back
                name = hosts[cursor % len(hosts)]
                cursor += 1
                if back[name] <= at:
                    out.append(Step(at, name, "evict"))
                    back[name] = at + grace + plan.away
                    if back[name] <= until:
                        out.append(Step(back[name], name, "restore"))
                    break
        at += plan.every
    return sorted(out, key=lambda s: (s.at, s.action != "evict", s.host))


def _seconds(raw: Any, what: str) -> float:
    """A duration that may be 0."""
    if raw in (0, "0", "0s"):
        return 0.0
    return parse_duration(raw, what)
