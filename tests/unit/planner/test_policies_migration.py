"""Property tests of the policies' migration and placement rules (pure functions over plain data).

Random clusters are built from host sizes and running apps (``build_view`` derives each host's free
slots, placements and tenants), so every view is one a planner could be in.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from hypothesis import given, settings
from hypothesis import strategies as st

from granny.planner.policies import (
    POLICIES,
    ClusterView,
    Compact,
    Freeze,
    Move,
    NeverFits,
    Placement,
    PlacementRequest,
    RunningApp,
    Spot,
    Stay,
    Wait,
    binpack,
    build_view,
    links,
)

TENANTS = ("t1", "t2", "")


@st.composite
def clusters(draw: st.DrawFn, max_hosts: int = 6, evicting: bool = False, one_tenant_per_host: bool = False
             ) -> ClusterView:
    slots = {f"h{i}": draw(st.integers(1, 8)) for i in range(draw(st.integers(1, max_hosts)))}
    left = dict(slots)
    owner: dict[str, str] = {}
    apps = []
    for k in range(draw(st.integers(1, 4))):
        tenant = draw(st.sampled_from(TENANTS))
        placement = []
        for _ in range(draw(st.integers(1, 10))):
            candidates = [h for h in slots if left[h] > 0 and (not one_tenant_per_host or owner.get(h, tenant) == tenant)]
            if not candidates:
                break
            host = draw(st.sampled_from(candidates))
            placement.append(host)
            left[host] -= 1
            owner[host] = tenant
        if placement:
            apps.append(RunningApp(f"app{k}", tuple(placement), tenant, migrate=draw(st.booleans())
                                   if draw(st.integers(0, 9)) == 0 else True))
    # Now and then a slot is busy with nothing the view names (a granule being replaced, say).
    busy = {h: draw(st.integers(0, left[h])) if draw(st.integers(0, 4)) == 0 else 0 for h in slots}
    gone = draw(st.sets(st.sampled_from(sorted(slots)))) if evicting else set()
    return build_view(slots, apps, gone, busy)


def key(counts: dict[str, int]) -> tuple[int, int]:
    parts = [c for c in counts.values() if c]
    return len(parts), links(parts)


def feasible(caps: list[int], n: int) -> Iterator[list[int]]:
    """Every way to put n granules on hosts of these capacities."""
    if not caps:
        if n == 0:
            yield []
        return
    for take in range(min(caps[0], n) + 1):
        for rest in feasible(caps[1:], n - take):
            yield [take, *rest]


def check_move(view: ClusterView, app: RunningApp, move: Move, allowed: set[str] | None = None) -> dict[str, int]:
    """The move is consistent and fits; returns its per-host counts."""
    assert move.app_id == app.app_id
    assert len(move.placement) == len(app.placement)
    assert dict(Counter(move.placement)) == dict(move.counts)
    moved = {m.index for m in move.moves}
    for m in move.moves:
        assert m.source == app.placement[m.index] != m.target == move.placement[m.index]
    for i, (old, new) in enumerate(zip(app.placement, move.placement, strict=True)):
        assert (old != new) == (i in moved)
    for host_id, count in move.counts:
        host = view.host(host_id)
        assert host is not None
        assert count <= host.free + host.granules_of(app.app_id), f"{count} granules on {host_id} do not fit"
        if allowed is not None:
            assert host_id in allowed
    # The fewest moves those counts allow: each host keeps min(old, new) of the app's granules.
    old = Counter(app.placement)
    assert len(move.moves) == len(app.placement) - sum(min(old[h], c) for h, c in move.counts)
    return dict(move.counts)


def empty_hosts(view: ClusterView, app: RunningApp | None = None, new: dict[str, int] | None = None) -> int:
    def used(h_id: str, base: int) -> int:
        if app is None or new is None:
            return base
        return base - Counter(app.placement)[h_id] + new.get(h_id, 0)
    return sum(1 for h in view.hosts if used(h.host_id, h.used) == 0)


# --- bin-pack ---------------------------------------------------------------------------------------
@settings(max_examples=300)
@given(view=clusters())
def test_binpack_migration_is_optimal_and_never_worse(view: ClusterView) -> None:
    for app in view.apps.values():
        decision = binpack.migrate(view, app.app_id)
        before = key(dict(Counter(app.placement)))
        caps = [h.free + h.granules_of(app.app_id) for h in view.hosts]
        best = min(key(dict(zip((h.host_id for h in view.hosts), c, strict=True)))
                   for c in feasible(caps, len(app.placement)))
        if not app.migrate:
            assert isinstance(decision, Stay)
            continue
        if isinstance(decision, Move):
            after = key(check_move(view, app, decision))
            assert after[0] <= before[0] and after[1] <= before[1], (before, after)
            assert after < before
            assert after == best
        else:
            assert isinstance(decision, Stay), decision
            assert before == best, f"stayed at {before} though {best} was possible"


@given(view=clusters(), data=st.data())
def test_placements_never_exceed_free_slots(view: ClusterView, data: st.DataObject) -> None:
    n = data.draw(st.integers(1, sum(h.slots for h in view.hosts) + 2))
    request = PlacementRequest("new", n, tenant=data.draw(st.sampled_from(TENANTS)))
    for policy in POLICIES.values():
        decision = policy.place(view, request)
        if isinstance(decision, Placement):
            assert len(decision.hosts) == n
            for host_id, count in Counter(decision.hosts).items():
                host = view.host(host_id)
                assert host is not None and count <= host.free, (policy.name, host_id, count)
        elif n > sum(h.slots for h in view.hosts):
            assert isinstance(decision, NeverFits)
        else:
            assert isinstance(decision, Wait), (policy.name, decision)


# --- compact ----------------------------------------------------------------------------------------
@settings(max_examples=300)
@given(view=clusters(one_tenant_per_host=True))
def test_compact_migration_never_loses_empty_hosts_nor_mixes_tenants(view: ClusterView) -> None:
    compact = Compact()
    for app in view.apps.values():
        decision = compact.migrate(view, app.app_id)
        if isinstance(decision, Move):
            clean = {h.host_id for h in view.hosts if h.tenants <= {app.tenant}}
            new = check_move(view, app, decision, allowed=clean)
            assert empty_hosts(view, app, new) > empty_hosts(view)
        else:
            assert isinstance(decision, Stay), decision


@given(view=clusters(), data=st.data())
def test_compact_places_no_app_beside_another_tenant(view: ClusterView, data: st.DataObject) -> None:
    tenant = data.draw(st.sampled_from(TENANTS))
    n = data.draw(st.integers(1, sum(h.slots for h in view.hosts)))
    decision = Compact().place(view, PlacementRequest("new", n, tenant=tenant))
    clean_free = sum(h.free for h in view.hosts if h.tenants <= {tenant})
    if isinstance(decision, Placement):
        for host_id in set(decision.hosts):
            host = view.host(host_id)
            assert host is not None and host.tenants <= {tenant}, (host_id, host.tenants, tenant)
    else:
        assert isinstance(decision, Wait) and n > clean_free


@given(view=clusters(), data=st.data())
def test_compact_keeps_empty_hosts_when_the_partly_used_ones_have_room(view: ClusterView, data: st.DataObject) -> None:
    partly = sum(h.free for h in view.hosts if h.used > 0 and not h.tenants - {""})
    if partly == 0:
        return
    n = data.draw(st.integers(1, partly))
    decision = Compact().place(view, PlacementRequest("new", n))
    assert isinstance(decision, Placement)
    assert all(view.host(h).used > 0 for h in decision.hosts)  # type: ignore[union-attr]


# --- spot -------------------------------------------------------------------------------------------
@settings(max_examples=300)
@given(view=clusters(evicting=True))
def test_spot_leaves_evicting_hosts_when_it_can_and_freezes_otherwise(view: ClusterView) -> None:
    spot = Spot()
    safe = {h.host_id for h in view.hosts if not h.evicting}
    for app in view.apps.values():
        decision = spot.migrate(view, app.app_id)
        if not app.migrate:
            assert isinstance(decision, Stay)
            continue
        on_evicting = any(h not in safe for h in app.placement)
        room = sum(h.free + h.granules_of(app.app_id) for h in view.hosts if h.host_id in safe)
        if on_evicting and room >= len(app.placement):
            assert isinstance(decision, Move), decision
            check_move(view, app, decision, allowed=safe)
        elif on_evicting:
            assert isinstance(decision, Freeze) and decision.app_id == app.app_id
        elif isinstance(decision, Move):  # clear of evicting hosts: bin-pack's rule, on safe hosts
            before = key(dict(Counter(app.placement)))
            assert key(check_move(view, app, decision, allowed=safe)) < before
        else:
            assert isinstance(decision, Stay)


@given(view=clusters(evicting=True), data=st.data())
def test_spot_never_places_on_an_evicting_host(view: ClusterView, data: st.DataObject) -> None:
    n = data.draw(st.integers(1, sum(h.slots for h in view.hosts)))
    decision = Spot().place(view, PlacementRequest("new", n))
    safe_free = sum(h.free for h in view.hosts if not h.evicting)
    if n <= safe_free:
        assert isinstance(decision, Placement)
        assert not any(view.host(h).evicting for h in decision.hosts)  # type: ignore[union-attr]
    else:
        assert isinstance(decision, Wait)


# --- pinned placements --------------------------------------------------------------------------------
@given(view=clusters(), data=st.data())
def test_pinned_placement_is_exact_or_refused(view: ClusterView, data: st.DataObject) -> None:
    pins = data.draw(st.lists(st.tuples(st.sampled_from([h.host_id for h in view.hosts]), st.integers(1, 8)),
                              min_size=1, max_size=3, unique_by=lambda p: p[0]))
    request = PlacementRequest("new", sum(c for _, c in pins), hosts=tuple(pins))
    decision = binpack.place(view, request)
    slots = {h.host_id: h for h in view.hosts}
    if any(c > slots[h].slots for h, c in pins):
        assert isinstance(decision, NeverFits)
    elif any(c > slots[h].free for h, c in pins):
        assert isinstance(decision, Wait)
    else:
        assert decision == Placement(tuple(h for h, c in pins for _ in range(c)))
