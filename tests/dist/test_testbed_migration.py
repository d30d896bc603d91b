"""Migration across testbed hosts (network namespaces): a world that starts split over two hosts moves
ranks mid-run at its migration points; its results equal those of the same run left in place."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import granny
from granny.testbed import Testbed

from .conftest import wait_for


@pytest.fixture
def client(testbed: Testbed) -> Iterator[granny.Client]:
    c = granny.connect(address=testbed.address, token=testbed.token)
    try:
        yield c
    finally:
        c.close()


def kernel() -> Callable[..., dict[str, Any]]:
    """Pickled by value (a closure), so the namespaced hosts need not import the tests package. An MPI
    function: ranks exchange a large array around the ring and reduce, with a migration point every 3
    steps; a moved rank resumes with ``step`` and its state."""

    def step_loop(comm: Any, start: int, state: Any, seen: list[str]) -> dict[str, Any]:
        import os

        import numpy as np
        from mpi4py import MPI

        import granny as g

        world = MPI.COMM_WORLD
        rank, size = world.Get_rank(), world.Get_size()
        for step in range(start, 9):
            seen.append(os.environ["GRANNY_HOST_ID"])
            got = np.empty_like(state)
            world.Sendrecv(state, dest=(rank + 1) % size, recvbuf=got, source=(rank - 1) % size)
            state = state * 0.5 + got * 0.5 + step
            total = world.allreduce(float(state[:10].sum()), op=MPI.SUM)
            if step % 3 == 2:
                g.migration_point(step_loop, comm, step + 1, state, seen)
        return {"total": total, "checksum": float(state.sum()), "hosts": seen,
                "world": world.allgather(os.environ["GRANNY_HOST_ID"])}

    def program(comm: Any) -> dict[str, Any]:
        import numpy as np

        return step_loop(comm, 0, np.arange(500_000, dtype=np.float64) + comm.Get_rank(), [])

    return program


@pytest.mark.testbed(hosts=2, slots=4, bandwidth="1gbit", latency="200us")
def test_ranks_move_mid_run_and_the_results_equal_a_run_left_in_place(client: granny.Client) -> None:
    split = client.options(hosts="h1:2,h2:2", migrate=False).run_mpi(kernel(), n=4, timeout=180)
    moved = client.options(hosts="h1:2,h2:2").run_mpi(kernel(), n=4, timeout=180)
    assert [r["checksum"] for r in moved] == [r["checksum"] for r in split]
    assert [r["total"] for r in moved] == [r["total"] for r in split]
    assert all(sorted(r["world"]) == ["h1", "h1", "h2", "h2"] for r in split)
    final = {h for r in moved for h in r["world"]}
    assert len(final) == 1  # consolidated on one host
    travelled = [r["hosts"] for r in moved if len(set(r["hosts"])) == 2]
    assert len(travelled) == 2  # two ranks ran their first steps on one host and the rest on the other
    for hosts in travelled:
        assert hosts[:3] != hosts[3:] and len(set(hosts[3:])) == 1


def gated_kernel(gate: str) -> Callable[..., dict[str, Any]]:
    """Ten steps with a migration point after each; at step 6 the world waits for ``gate`` to exist."""

    def steps(comm: Any, start: int, state: Any) -> dict[str, Any]:
        import os
        import time

        import numpy as np
        from mpi4py import MPI

        import granny as g

        world = MPI.COMM_WORLD
        for step in range(start, 10):
            if step == 6:
                while not world.bcast(os.path.exists(gate), root=0):
                    time.sleep(0.01)
            out = np.empty_like(state)
            world.Allreduce(state, out)
            state = out / world.Get_size() + step * (world.Get_rank() + 1)
            g.migration_point(steps, comm, step + 1, state)
        return {"checksum": float(state.sum()), "host": os.environ["GRANNY_HOST_ID"]}

    def program(comm: Any) -> dict[str, Any]:
        import numpy as np

        return steps(comm, 0, np.arange(200_000, dtype=np.float64) + comm.Get_rank())

    return program


@pytest.mark.testbed(hosts=2, slots=4, heartbeat_timeout=2.0)
def test_a_world_cut_off_from_a_host_restarts_from_its_checkpoint(testbed: Testbed, client: granny.Client,
                                                                  tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    gate.write_text("open")
    calm = client.options(hosts="h1:2,h2:2", migrate=False).run_mpi(gated_kernel(str(gate)), n=4, timeout=180)
    gate.unlink()
    future = client.options(hosts="h1:2,h2:2", migrate=False, checkpoint=2).submit_mpi(gated_kernel(str(gate)), 4)
    try:
        wait_for(lambda: client.query("counters")["migration"].get("checkpoints", 0) >= 3, timeout=120,
                 what="three checkpoints")
        testbed.cut("h2")  # no notice: h2 just vanishes from the network
        wait_for(lambda: client.query("counters")["migration"].get("recovered", 0) >= 1, timeout=120,
                 what="the world restarted from its checkpoint on h1")
    finally:
        gate.write_text("open")
    hit = future.result(timeout=180)
    testbed.restore("h2")
    assert [r["checksum"] for r in hit] == [r["checksum"] for r in calm]
    assert {r["host"] for r in hit} == {"h1"} and {r["host"] for r in calm} == {"h1", "h2"}
