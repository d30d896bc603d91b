"""Ranking schedulers with ties (experiment/ranking.py): live reps give a partial order, the
simulator's order must agree with every pair it orders."""

from __future__ import annotations

import pytest

from granny.experiment.ranking import agree, live_order

# two reps of the mpi-locality_10 trace on 4 x 2 (session 6's numbers): batch far behind, the others within 2%
REPS = [{"batch": 24.5, "slurm": 17.6, "granny": 17.2, "granny-migrate": 18.2},
        {"batch": 24.3, "slurm": 17.2, "granny": 17.4, "granny-migrate": 18.1}]


def test_schedulers_within_the_noise_are_tied_and_a_clear_gap_orders_them() -> None:
    order = live_order(REPS)
    assert order.faster("granny", "batch") and order.faster("slurm", "batch")
    assert order.tied("granny", "slurm")  # they swap between reps
    # granny-migrate is slower than granny in both reps, by 5.8% and 4.0%: beyond the 2% floor
    assert order.faster("granny", "granny-migrate")
    assert order.text() == "{granny, slurm} < granny-migrate < batch"


def test_a_gap_within_the_noise_in_any_rep_is_a_tie() -> None:
    reps = [{"a": 10.0, "b": 10.4}, {"a": 10.6, "b": 10.7}]  # a below b in each rep, but by 0.9% in the second
    assert live_order(reps).tied("a", "b")
    reps = [{"a": 10.0, "b": 10.4}, {"a": 13.0, "b": 13.5}]  # a loaded machine slows both in rep 2: still ordered
    assert live_order(reps).faster("a", "b")
    assert live_order([{"a": 10.0, "b": 10.1}]).tied("a", "b")  # one rep: the 2% floor
    assert live_order([{"a": 10.0, "b": 10.5}]).faster("a", "b")


def test_the_sim_agrees_when_it_orders_every_pair_the_live_runs_order() -> None:
    order = live_order(REPS)
    ok = agree(order, {"batch": 23.5, "slurm": 17.1, "granny": 17.1, "granny-migrate": 17.15})
    # the simulator has granny-migrate barely slower than granny: consistent; slurm/granny: live tie
    assert ok.consistent and ok.contradicted == [] and ok.sim_only == []
    bad = agree(order, {"batch": 23.5, "slurm": 17.1, "granny": 17.1, "granny-migrate": 17.0})
    assert not bad.consistent and bad.contradicted == [("granny", "granny-migrate"), ("slurm", "granny-migrate")]


def test_a_sim_gap_between_live_ties_is_reported() -> None:
    order = live_order([{"a": 10.0, "b": 10.1}, {"a": 10.1, "b": 10.0}])
    result = agree(order, {"a": 10.0, "b": 11.0})
    assert result.consistent and result.sim_only == [("a", "b", pytest.approx(0.1))]
