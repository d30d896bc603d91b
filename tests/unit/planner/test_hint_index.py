"""The incremental hints under bin-pack (planner/hint_index.py) hint exactly the worlds that asking
bin-pack's rule about every world at every pass would hint: whole simulated runs come out the same."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from granny.experiment import load_model
from granny.planner.gather import largest_free
from granny.planner.hint_index import NEVER, HintIndex, need
from granny.planner.policies import BinPack, RunningApp, build_view
from granny.sim import Simulator, poisson_trace, scheduler_named


class EveryWorld(BinPack):
    """bin-pack's rules, under another type: the hints then ask the rule about every world at every pass."""


def events(policy: BinPack, hosts: int, jobs: int, seed: int, rate: float, reserve: bool) -> list[object]:
    sched = replace(scheduler_named("granny-migrate"), policy=policy)
    trace = poisson_trace(jobs, rate, "mpi-locality", range(2, 16), seed=seed)
    return Simulator(sched, hosts, 8, load_model(), submit_gap=1.0 if reserve else None).run(trace).events


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 10_000), hosts=st.integers(2, 8), rate=st.sampled_from([0.02, 0.05, 0.2]),
       reserve=st.booleans())
def test_incremental_hints_make_the_same_run_as_asking_about_every_world(seed: int, hosts: int, rate: float,
                                                                         reserve: bool) -> None:
    share = 0.1 if reserve else 0.0
    ours = events(BinPack(share), hosts, 30, seed, rate, reserve)
    every = events(EveryWorld(share), hosts, 30, seed, rate, reserve)
    assert ours == every


def test_a_runs_moves_are_the_same_on_a_trace_that_migrates() -> None:
    ours = events(BinPack(), 6, 40, 7, 0.2, False)
    assert sum(e.what == "move" for e in ours) >= 3  # this trace does migrate
    assert ours == events(EveryWorld(), 6, 40, 7, 0.2, False)


def test_a_worlds_need_is_the_room_one_more_host_must_have() -> None:
    # 4 + 4 on two full hosts: one more host with 5 free would let bin-pack re-pack it 5 + 3.
    view = build_view({"a": 8, "b": 8, "c": 8}, [RunningApp("w", ("a",) * 4 + ("b",) * 4),
                                                 RunningApp("o", ("a",) * 4 + ("b",) * 4 + ("c",) * 8)])
    hosts = {h.host_id: h for h in view.hosts}
    assert need(("a",) * 4 + ("b",) * 4, hosts, largest_free(view.hosts, 16), 8) == 5
    assert need(("a",) * 8, hosts, [], 8) == NEVER  # one host: bin-pack never moves it


def test_the_index_makes_due_the_worlds_a_changed_host_may_move() -> None:
    view = build_view({"a": 8, "b": 8, "c": 8}, [RunningApp("o", ("c",) * 8)])
    hosts = {h.host_id: h for h in view.hosts}
    index = HintIndex()
    assert index.due(["a", "b", "c"], hosts) == set()
    index.record("w", ("a", "b"), 5)
    index.record("x", ("c",), NEVER)
    assert index.due(["a"], hosts) == {"w"}  # a host it runs on changed
    roomy = build_view({"a": 8, "b": 8, "c": 8}, [])
    assert index.due(["c"], {h.host_id: h for h in roomy.hosts}) == {"w"}  # c now has 8 free >= its need
    assert [free for free, _ in index.largest(2)] == [8, 8]
    index.forget("w")
    assert index.due(["a", "b", "c"], hosts) == set()
