"""One-sided communication (MPI.Win) across testbed hosts: operations on a rank of the other host go
over the TCP streams and are served by the target inside its own MPI calls (rma_remote.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

import granny
from granny.testbed import Testbed

from ..rma_derived import rma_derived_program


@pytest.fixture
def client(testbed: Testbed) -> Iterator[granny.Client]:
    c = granny.connect(address=testbed.address, token=testbed.token)
    try:
        yield c
    finally:
        c.close()


def rma_program() -> Callable[[Any], dict[str, Any]]:
    """Pickled by value (a closure), so the namespaced hosts need not import the tests package."""

    def program(comm: Any) -> dict[str, Any]:
        import os

        import numpy as np
        from mpi4py import MPI

        rank, size = comm.rank, comm.size
        hosts = comm.allgather(os.environ["GRANNY_HOST_ID"])
        other = next(r for r in range(size) if hosts[r] != hosts[rank])  # a rank on the other host
        out: dict[str, Any] = {"hosts": hosts, "other": other}
        for flavor in ("allocate", "create"):
            if flavor == "allocate":
                win = MPI.Win.Allocate(8 * 16, 8, comm=comm)
                mem = np.frombuffer(win.tomemory(), dtype=np.float64)
            else:
                mem = np.zeros(16)
                win = MPI.Win.Create(mem, 8, comm=comm)
            mem[:] = -1.0
            win.Fence()
            win.Put(np.array([float(rank)]), other, rank)  # slot `rank` of the other host's rank
            win.Fence()
            got = np.zeros(1)
            win.Get(got, other, rank)
            win.Fence()
            # every rank adds to slot 15 of rank 0 under a shared lock: atomic across hosts
            win.Lock(0, MPI.LOCK_SHARED)
            win.Accumulate(np.array([float(rank + 1)]), 0, 15, op=MPI.SUM)
            win.Unlock(0)
            comm.Barrier()
            win.Lock(other)
            old = np.zeros(1)
            win.Fetch_and_op(np.array([10.0]), old, other, 14, op=MPI.SUM)
            win.Unlock(other)
            win.Fence()
            out[flavor] = {"mem": mem.tolist(), "got": float(got[0]), "old": float(old[0])}
            win.Free()
        return out

    return program


@pytest.mark.testbed(hosts=2, slots=2, latency="200us")
def test_put_get_accumulate_across_two_hosts(client: granny.Client) -> None:
    results = client.run_mpi(rma_program(), n=4, timeout=120)
    hosts = results[0]["hosts"]
    assert sorted(hosts) == ["h1", "h1", "h2", "h2"]
    for rank, r in enumerate(results):
        for flavor in ("allocate", "create"):
            f = r[flavor]
            assert f["got"] == float(rank), f"{flavor}: rank {rank} read back {f['got']}"
            writers = [q for q in range(4) if results[q]["other"] == rank]
            for q in range(14):
                assert f["mem"][q] == (float(q) if q in writers else -1.0), (flavor, rank, f["mem"])
            fetchers = [q for q in range(4) if results[q]["other"] == rank]
            assert f["mem"][14] == -1.0 + 10.0 * len(fetchers), (flavor, rank, f["mem"])
            if rank == 0:
                assert f["mem"][15] == -1.0 + sum(range(1, 5)), (flavor, f["mem"])


@pytest.mark.testbed(hosts=2, slots=2, latency="200us")
def test_derived_datatypes_across_two_hosts(client: granny.Client) -> None:
    """Put/Get/Accumulate/Get_accumulate with vector, indexed, subarray and resized target datatypes (and a
    derived origin), ranks 2 + 2 on two hosts: every result equals numpy's."""
    assert client.run_mpi(rma_derived_program(), n=4, timeout=300) == [[]] * 4
