"""Fabric.wait_until: a condition with side effects (send's try_put) runs once per success, never twice."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from granny.mpi.fabric import Fabric


@pytest.fixture
def fabric() -> Iterator[Fabric]:
    f = Fabric(f"t{os.getpid()}", 0, 1)
    yield f
    f.close()


@pytest.mark.parametrize("succeed_at", [1, 5, 18, 19, 25])
def test_wait_until_calls_a_true_condition_once(fabric: Fabric, succeed_at: int) -> None:
    """The first call that returns True is the last call, in the spin phase and in the sleeping phase
    alike (with no spin budget, the 18th call is the first one after the spin loop gave up)."""
    fabric.spin, fabric.yield_spin = 0.0, False
    calls = 0

    def cond() -> bool:
        nonlocal calls
        calls += 1
        return calls >= succeed_at

    fabric.wait_until(cond)
    assert calls == succeed_at
