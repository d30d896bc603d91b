"""Pieces every policy is made of: capacity checks, greedy filling, pinned placements, minimal moves.

A *capacity* here is what a host can take for the app being placed: its free slots, plus, when a
running app is re-packed, the slots that app holds there itself (it gives them back first).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence

from .base import (
    ClusterView,
    Counts,
    Decision,
    GranuleMove,
    HostView,
    MigrationDecision,
    Move,
    NeverFits,
    Placement,
    PlacementRequest,
    RunningApp,
    Stay,
    Wait,
    counts_of,
    links,
)

Capacity = tuple[HostView, int]  # a host and how many of the app's granules it can take


def check_size(hosts: Sequence[HostView], request: PlacementRequest, free: int, what: str = "free slots") -> Decision | None:
    """NeverFits / Wait when ``request`` cannot be placed on ``free`` slots; None when it can."""
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
    if request.n > free:
        return Wait(f"waiting for {request.n} {what}")
    return None


def fill(order: Sequence[Capacity], n: int) -> Counts:
    """Take each host's capacity in turn until ``n`` granules have a place (the caller checked they fit)."""
    out: dict[str, int] = {}
    for host, cap in order:
        take = min(cap, n - sum(out.values()))
        if take > 0:
            out[host.host_id] = take
        if sum(out.values()) == n:
            break
    return tuple(sorted(out.items()))


def fewest_links(caps: Sequence[Capacity], n: int, app_id: str) -> Counts:
    """The per-host counts with the fewest hosts and, among those, the fewest cross-host links.

    Filling the largest capacities first is optimal for both: its k largest parts hold as many
    granules as any k hosts can, so its count vector majorizes every other feasible one, and
    Σ n_h² (links = (N² − Σ n_h²)/2) is Schur-convex. Among equal capacities, hosts that already run
    the app come first, and the last, partial part goes to whichever unused host that fits it runs
    most of the app: neither changes the counts' multiset, both save moves."""
    usable = [(h, c) for h, c in caps if c > 0]
    usable.sort(key=lambda hc: (hc[1], hc[0].granules_of(app_id), hc[0].host_id), reverse=True)
    chosen: list[Capacity] = []
    left = n
    for host, cap in usable:
        if cap >= left:
            break
        chosen.append((host, cap))
        left -= cap
    rest = [(h, c) for h, c in usable if c >= left and all(h is not x for x, _ in chosen)]
    last = max(rest, key=lambda hc: (hc[0].granules_of(app_id), hc[1], hc[0].host_id))
    return fill([*chosen, last], n)


def expand(counts: Counts, order: Iterable[str] | None = None) -> tuple[str, ...]:
    """The host of each granule index: hosts in ``order`` (default: as listed), each as often as its count."""
    table = dict(counts)
    return tuple(h for h in (order if order is not None else table) for _ in range(table.get(h, 0)))


def pinned(view: ClusterView, request: PlacementRequest,
           refuse: Callable[[HostView], str | None] | None = None) -> Decision:
    """Place ``request`` exactly where its ``hosts`` say, in that order (granules 0.. on the first)."""
    wanted: dict[str, int] = {}
    for host_id, count in request.hosts:
        if count < 1:
            return NeverFits(f"pinned placement asks for {count} granules on {host_id}; give at least 1")
        wanted[host_id] = wanted.get(host_id, 0) + count
    total = sum(wanted.values())
    if total != request.n:
        return NeverFits(f"pinned placement names {total} granules for a request of {request.n}")
    hosts: list[tuple[HostView, int]] = []
    for host_id, count in wanted.items():
        host = view.host(host_id)
        if host is None:
            return NeverFits(f"pinned placement names host {host_id!r}, which is not in the cluster")
        if count > host.slots:
            return NeverFits(f"pinned placement puts {count} granules on {host_id}, which has {host.slots} slots")
        hosts.append((host, count))
    for host, count in hosts:
        why = refuse(host) if refuse is not None else None
        if why:
            return Wait(why)
        if count > host.free:
            return Wait(f"waiting for {count} free slots on pinned host {host.host_id} ({host.free} free)")
    return Placement(expand(tuple(wanted.items())))


def runnable(view: ClusterView, app_id: str) -> RunningApp | Stay:
    """The app, if a migration rule may consider it at all."""
    app = view.apps.get(app_id)
    if app is None or not app.placement:
        return Stay(f"app {app_id} has no granules running")
    if not app.migrate:
        return Stay(f"app {app_id} was submitted with migrate=False")
    missing = sorted({h for h in app.placement if view.host(h) is None})
    if missing:
        return Stay(f"app {app_id} runs on host(s) the view does not list: {', '.join(missing)}")
    return app


def freed(hosts: Iterable[HostView], app_id: str) -> list[Capacity]:
    """Each host's capacity once the app gave its own slots back."""
    return [(h, h.free + h.granules_of(app_id)) for h in hosts]


def minimal_move(app: RunningApp, target: Counts, reason: str) -> Move:
    """Move to ``target`` counts moving as few granules as those counts allow: each host keeps
    min(old, new) of the app's granules (its lowest indices); the rest go, in index order, to the
    hosts short of their new count, in host order."""
    new = dict(target)
    keep = {h: min(c, new.get(h, 0)) for h, c in Counter(app.placement).items()}
    placement = list(app.placement)
    movers: list[int] = []
    for index, host in enumerate(app.placement):
        if keep.get(host, 0) > 0:
            keep[host] -= 1
        else:
            movers.append(index)
    moving = set(movers)
    have = Counter(h for i, h in enumerate(app.placement) if i not in moving)
    targets = [h for h, c in target for _ in range(c - have.get(h, 0))]
    moves = []
    for index, host in zip(movers, targets, strict=True):
        moves.append(GranuleMove(index, placement[index], host))
        placement[index] = host
    return Move(app.app_id, target, tuple(placement), tuple(moves), reason)


def moves_needed(before: Counts, after: Counts) -> int:
    """The fewest granules that must move to turn ``before`` counts into ``after``."""
    old = dict(before)
    return sum(after_n - min(after_n, old.get(h, 0)) for h, after_n in after)


def describe(counts: Counts) -> str:
    return f"{len(counts)} host(s), {links(c for _, c in counts)} link(s)"


def improve_or_stay(app: RunningApp, target: Counts) -> MigrationDecision:
    """bin-pack's acceptance rule: fewer hosts, or as many hosts and fewer links."""
    before = counts_of(app.placement)
    key_before = (len(before), links(c for _, c in before))
    key_after = (len(target), links(c for _, c in target))
    if key_after < key_before:
        return minimal_move(app, target, f"{describe(before)} -> {describe(target)}")
    return Stay(f"nothing to gain: {describe(before)} now, {describe(target)} after re-packing")
