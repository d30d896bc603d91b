"""The kept host views (capacity.py) decide exactly as views built from scratch on every placement.

Two states get the same random events: one keeps its views, the other builds them from scratch with
the planner's former ``cluster_view`` (copied below as it was), and both must answer with the same
actions after every event, whatever the policy.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from granny.experiment import load_model
from granny.planner.capacity import HostViews
from granny.planner.lifecycle import GranuleState, TaskState
from granny.planner.policies import POLICIES, BinPack, HostView, Policy, binpack
from granny.planner.records import Host, Request
from granny.planner.state import Action, PlannerState
from granny.sim import Simulator, poisson_trace
from granny.sim.schedulers import Scheduler


def old_cluster_view_hosts(hosts: Iterable[Host], requests: Mapping[str, Request],
                           evicting: set[str]) -> tuple[HostView, ...]:
    """``cluster_view(..., with_apps=False).hosts`` as the planner built it before capacity.py."""
    views: list[HostView] = []
    busy_state, idle_state = GranuleState.BUSY, GranuleState.IDLE
    for host in hosts:
        if not host.alive:
            continue
        here: dict[str, int] = {}
        tenants: set[str] = set()
        busy = idle = 0
        for g in host.granules.values():
            tasks = g.tasks
            if tasks:
                req = requests.get(tasks[0][0])
                if req is not None:
                    here[req.app_id] = here.get(req.app_id, 0) + 1
                    tenants.add(req.tenant)
            state = g.state
            if state is busy_state:
                if not g.waiting:
                    busy += 1
            elif state is idle_state and g.connected and not tasks:
                idle += 1
        free = max(0, min(host.slots - busy, idle))
        views.append(HostView(host.host_id, host.slots, free, 0, here, host.host_id in evicting, frozenset(tenants)))
    if evicting:
        views = [replace(v, free=0) if v.evicting else v for v in views]
    return tuple(views)


def from_scratch(s: PlannerState) -> PlannerState:
    """``s`` with its views built from scratch every time, and _full as it was."""
    s.views.views = lambda requests, evicting: old_cluster_view_hosts(s.hosts.values(), requests, evicting)  # type: ignore[method-assign]
    s.views.full = lambda requests, evicting: not any(  # type: ignore[method-assign]
        h.alive and h.slots - h.busy() > 0 for h in s.hosts.values())
    return s


HOSTS = ["h0", "h1", "h2", "h3"]
event = st.one_of(
    st.tuples(st.just("host"), st.sampled_from(HOSTS), st.integers(1, 4), st.booleans()),
    st.tuples(st.just("submit"), st.integers(1, 6), st.sampled_from(["a", "b", "c"]), st.sampled_from(["", "t1"]),
              st.booleans(), st.booleans()),
    st.tuples(st.just("done"), st.integers(0, 50), st.booleans()),
    st.tuples(st.just("exit"), st.integers(0, 50)),
    st.tuples(st.just("connect"), st.sampled_from(HOSTS)),
    st.tuples(st.just("waiting"), st.integers(0, 50), st.booleans()),
    st.tuples(st.just("evicting"), st.sampled_from(HOSTS), st.booleans()),
    st.tuples(st.just("cancel"), st.integers(0, 50)),
    st.tuples(st.just("forget"),),
    st.tuples(st.just("call"), st.sampled_from(["a", "b", "c"])),  # a short call: prefetched when all is busy
    st.tuples(st.just("evict"), st.sampled_from(HOSTS)),
)


def apply(s: PlannerState, ev: tuple[Any, ...], n: int) -> list[Action]:
    """One event; ``n`` numbers new ids. Choices read only what both states share (ids, task states)."""
    kind = ev[0]
    granules = sorted(s.granules)
    if kind == "host":
        _, host_id, slots, restart = ev
        boot = f"b{n}" if restart else "b"
        actions = s.register_host(host_id, slots, 0.0, boot=boot)
        for i in range(slots):
            actions += s.granule_connected(host_id, f"{host_id}-{n}-{i}", None)
        return actions
    if kind == "submit":
        _, size, app, tenant, prefetch, pin = ev
        live = [h for h in HOSTS if h in s.hosts and s.hosts[h].alive]
        hosts = ((live[0], size),) if pin and live else ()
        return s.submit(f"r{n}", app, size, prefetch=prefetch and size == 1, tenant=tenant, hosts=hosts)
    if kind == "done":
        running = sorted((g.granule_id, g.tasks[0]) for g in s.granules.values() if g.tasks)
        if not running:
            return []
        gid, (rid, index) = running[ev[1] % len(running)]
        return s.task_done(gid, rid, index, ev[2])[1]
    if kind == "exit" and granules:
        return s.granule_exited(granules[ev[1] % len(granules)], "crashed")
    if kind == "connect" and ev[1] in s.hosts:
        return s.granule_connected(ev[1], f"{ev[1]}-c{n}", None)
    if kind == "waiting" and granules:
        return s.granule_waiting(granules[ev[1] % len(granules)], ev[2])
    if kind == "evicting" and ev[1] in s.hosts:
        return s.mark_evicting(ev[1], ev[2])
    if kind == "cancel" and s.requests:
        rids = sorted(s.requests)
        return s.cancel(rids[ev[1] % len(rids)])
    if kind == "call":
        return s.submit(f"r{n}", ev[1], 1, prefetch=True)
    if kind == "evict" and ev[1] in s.hosts and s.hosts[ev[1]].alive:
        return s.evict(ev[1], 0.0, 0.0) + s.tick(0.0)
    if kind == "forget":
        done = [r for r in s.finished if r in s.requests and s.requests[r].final() and r not in s.queue]
        s.finished[:] = [r for r in s.finished if r not in done]  # the queue drops its own lazily (as retention.py)
        s.forget(done)
    return []


@pytest.mark.parametrize("policy", sorted(POLICIES))
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(events=st.lists(event, min_size=1, max_size=60))
def test_kept_views_place_as_views_from_scratch(policy: str, events: list[tuple[Any, ...]],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(HostViews, "check", False)  # the comparison here is of decisions, not of views
    p: Policy = POLICIES[policy]
    kept, scratch = PlannerState(5.0, p), from_scratch(PlannerState(5.0, p))
    for n, ev in enumerate(events):
        assert apply(kept, ev, n) == apply(scratch, ev, n), ev
        assert [t.state for r in kept.requests.values() for t in r.tasks] == \
               [t.state for r in scratch.requests.values() for t in r.tasks]
        # and what the next placement would see, even where no decision has differed yet
        assert kept.views.views(kept.requests, kept.evicting) == old_cluster_view_hosts(
            kept.hosts.values(), kept.requests, kept.evicting), ev


def test_a_call_that_starts_behind_another_changes_its_hosts_view() -> None:
    """Granule.drop marks the host: the call prefetched behind the finished one now runs there."""
    s = PlannerState(5.0)
    s.register_host("h", 1, 0.0)
    s.granule_connected("h", "g", None)
    s.submit("a", "app-a", 1, prefetch=True)
    s.submit("b", "app-b", 1, prefetch=True)  # prefetched behind a on the only granule
    assert s.granules["g"].tasks == [("a", 0), ("b", 0)]
    s.task_done("g", "a", 0, True)  # b starts there: the host now runs app-b
    assert s.views.views(s.requests, s.evicting)[0].placements == {"app-b": 1}
    assert TaskState.RUNNING is s.requests["b"].tasks[0].state


class UnknownBinPack(BinPack):
    """bin-pack under another type: migration.hints cannot tell what its rule reads, so it checks
    every world after every event, as it did before it kept quiet worlds."""


def test_hints_skip_only_worlds_whose_check_would_say_the_same() -> None:
    jobs = poisson_trace(150, 0.9 * 6 * 8 / (8.5 * 200), "mpi-migrate", range(2, 12), seed=3)
    runs = [Simulator(Scheduler("granny-migrate", policy, 0.1), 6, 8, load_model()) for policy in (binpack, UnknownBinPack())]
    kept, every = (sim.run(jobs) for sim in runs)
    assert kept.events == every.events
    assert any(e.what == "move" for e in kept.events)  # the trace does migrate
    assert runs[0].state.migrations.counts == runs[1].state.migrations.counts
