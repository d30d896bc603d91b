"""Would bin-pack move a world? A check in O(n log n) per world, for the migration hints.

Theory of operation
- bin-pack's migration rule (binpack.migrate_within) re-packs a world of n granules on each host's
  capacity for it (its free slots, plus the world's own granules there), largest capacities first,
  and moves when that uses fewer hosts, or as many hosts with fewer cross-host links. The per-host
  counts that fill produces depend only on the capacity *values*: the largest ones, until n are placed.
- So only a few hosts matter: the world's own (at most n) and the hosts with the most free slots
  among the others (at most n + the world's own hosts, since n granules never need more). The hints
  take those largest free values once per pass over the cluster (O(hosts)), and then each world costs
  O(n log n), not O(hosts): the pass is O(hosts + worlds x n), where asking the rule for every
  world was O(hosts x worlds).
- The check says exactly whether bin-pack would move the world now (the counts it would reach have the
  same sizes, so the same hosts and links); the hints then ask the rule itself only for worlds that
  would move. ``tests/unit/planner/test_gather.py`` compares the two on random clusters.
Pure: no I/O, no clock.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

from .policies.base import HostView, links


def largest_free(hosts: Iterable[HostView], k: int) -> list[tuple[int, str]]:
    """The ``k`` largest (free slots, host id) pairs of ``hosts`` with a free slot, largest first."""
    return heapq.nlargest(k, ((h.free, h.host_id) for h in hosts if h.free > 0))


def would_move(placement: Sequence[str], hosts: Mapping[str, HostView], largest: Sequence[tuple[int, str]]) -> bool:
    """Would bin-pack's migration rule move a world whose granules run on ``placement``?

    ``hosts``: the live hosts' views by id (every host of ``placement`` among them); ``largest``: at least
    ``len(placement)`` + (its number of hosts) of the largest free values (:func:`largest_free`)."""
    here = Counter(placement)
    n = len(placement)
    caps = [hosts[h].free + c for h, c in here.items()]
    caps += [free for free, h in largest if h not in here]
    caps.sort(reverse=True)
    after: list[int] = []
    left = n
    for cap in caps:
        if left <= 0:
            break
        take = min(cap, left)
        after.append(take)
        left -= take
    if left > 0:  # (cannot happen: the world's own slots hold it) nothing to compare
        return False
    return (len(after), links(after)) < (len(here), links(here.values()))
