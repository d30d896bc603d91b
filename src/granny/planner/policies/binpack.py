"""bin-pack: fewest hosts, then fewest cross-host links, then most free slots.

Hosts that already run the app come first (keeping an app together cuts links), then hosts by free
slots, largest first: filling the largest hosts first uses the fewest hosts, and a split into fewer,
larger parts also has the fewest cross-host links between granules.
"""

from __future__ import annotations

from collections.abc import Sequence

from .base import Decision, HostView, NeverFits, Placement, PlacementRequest, Wait


def binpack(hosts: Sequence[HostView], request: PlacementRequest) -> Decision:
    capacity = sum(h.slots for h in hosts)
    if request.n < 1:
        return NeverFits(f"a request needs at least one granule, got {request.n}")
    if not hosts:
        return Wait("no hosts registered yet")
    if request.n > capacity:
        return NeverFits(
            f"request for {request.n} granules can never fit: the whole cluster has {capacity} slots "
            f"on {len(hosts)} host(s)"
        )
    if request.n > sum(h.free for h in hosts):
        return Wait(f"waiting for {request.n} free slots")
    # Prefer a single host that fits the whole request: zero cross-host links.
    whole = [h for h in hosts if h.free >= request.n]
    if whole:
        best = max(whole, key=lambda h: (h.app_granules > 0, h.free, h.host_id))
        return Placement((best.host_id,) * request.n)
    # Fewest hosts first: largest free first is optimal for the count. Keeping the app together
    # only breaks ties, i.e. it is used when it needs no more hosts than that.
    by_free = _greedy(sorted(hosts, key=lambda h: (h.free, h.host_id), reverse=True), request.n)
    with_app = _greedy(sorted(hosts, key=lambda h: (h.app_granules > 0, h.free, h.host_id), reverse=True),
                       request.n)
    chosen = with_app if len(set(with_app)) <= len(set(by_free)) else by_free
    return Placement(tuple(chosen))


def _greedy(order: Sequence[HostView], n: int) -> list[str]:
    out: list[str] = []
    for host in order:
        take = min(host.free, n - len(out))
        out.extend([host.host_id] * take)
        if len(out) == n:
            break
    return out
