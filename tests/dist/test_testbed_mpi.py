"""MPI worlds spanning testbed hosts (network namespaces): ranks on different hosts talk over TCP,
ranks on the same host over shared memory, and collectives go through one leader per host."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

import granny
from granny.testbed import Testbed

from ..span_collectives import span_program


@pytest.fixture
def client(testbed: Testbed) -> Iterator[granny.Client]:
    c = granny.connect(address=testbed.address, token=testbed.token)
    try:
        yield c
    finally:
        c.close()


def world_program() -> Callable[[Any], dict[str, Any]]:
    """Pickled by value (a closure), so the namespaced hosts need not import the tests package."""

    def program(comm: Any) -> dict[str, Any]:
        import os

        import numpy as np
        from mpi4py import MPI

        rank, size = comm.rank, comm.size
        hosts = comm.allgather(os.environ["GRANNY_HOST_ID"])
        # point-to-point around the ring: neighbours are on the other host half of the time
        nxt, prv = (rank + 1) % size, (rank - 1) % size
        big = np.arange(1_000_000, dtype=np.float64) + rank  # 8 MB
        got = np.empty_like(big)
        comm.Sendrecv(big, dest=nxt, sendtag=5, recvbuf=got, source=prv, recvtag=5)
        ring_ok = bool(np.array_equal(got, np.arange(1_000_000, dtype=np.float64) + prv))
        obj = comm.sendrecv({"rank": rank}, dest=nxt, source=prv)
        # ANY_SOURCE across hosts
        if rank == 0:
            senders = sorted(comm.recv(source=MPI.ANY_SOURCE, tag=9) for _ in range(size - 1))
        else:
            comm.send(rank, dest=0, tag=9)
            senders = []
        small = comm.allreduce(rank, op=MPI.SUM)
        vec = np.full(300_000, float(rank + 1))
        out = np.empty_like(vec)
        comm.Allreduce(vec, out, op=MPI.SUM)
        data = np.arange(16, dtype=np.int32) if rank == 3 else np.zeros(16, dtype=np.int32)
        comm.Bcast(data, root=3)
        comm.Barrier()
        return {"hosts": hosts, "ring_ok": ring_ok, "obj": obj["rank"], "senders": senders, "small": small,
                "allreduce": (float(out.min()), float(out.max())), "bcast": int(data.sum())}

    return program


@pytest.mark.testbed(hosts=2, slots=2, latency="200us")
def test_world_across_two_hosts(client: granny.Client) -> None:
    results = client.run_mpi(world_program(), n=4, timeout=120)
    hosts = results[0]["hosts"]
    assert sorted(hosts) == ["h1", "h1", "h2", "h2"]  # gang-placed two per host
    for rank, r in enumerate(results):
        assert r["hosts"] == hosts
        assert r["ring_ok"], f"rank {rank} got the wrong 8 MB array"
        assert r["obj"] == (rank - 1) % 4
        assert r["small"] == 6
        assert r["allreduce"] == (10.0, 10.0)
        assert r["bcast"] == sum(range(16))
    assert results[0]["senders"] == [1, 2, 3]


def dies_on_second_host() -> Callable[[Any], None]:
    def program(comm: Any) -> None:
        import os

        hosts = comm.allgather(os.environ["GRANNY_HOST_ID"])
        if comm.rank == max(i for i, h in enumerate(hosts) if h != hosts[0]):
            os._exit(9)
        comm.recv(source=comm.size - 1, tag=77)  # never sent: the world must be torn down

    return program


@pytest.mark.testbed(hosts=2, slots=2)
def test_a_rank_dying_on_another_host_aborts_the_world(client: granny.Client) -> None:
    with pytest.raises(granny.GranuleCrashedError, match="exited with code 9"):
        client.run_mpi(dies_on_second_host(), n=4, timeout=120)
    assert client.run_mpi(world_program(), n=4, timeout=120)[0]["small"] == 6  # the slots came back


@pytest.mark.testbed(hosts=2, slots=3, latency="200us")
def test_collectives_across_two_hosts_equal_numpy(client: granny.Client) -> None:
    """Reduce, Allreduce (non-commutative too), Gather, Scatter, Allgather over two hosts, 2+2 and 3+1: the
    per-host legs go through each host's region, the results are numpy's."""
    for hosts in ("h1:2,h2:2", "h1:3,h2:1"):
        results = client.options(hosts=hosts).run_mpi(span_program(), n=4, timeout=300)
        for rank, r in enumerate(results):
            assert r["bad"] == [], (hosts, rank, r["bad"])
            assert r["kind"] == "SpanColl"
            assert r["region"] is (r["hosts"].count(r["hosts"][rank]) > 1)
            if r["region"]:
                large = r["used"].pop("Allreduce large")  # hierarchical only when the hosts hold as many ranks
                assert all(r["used"].values()) and large is r["even"], (hosts, rank, r["used"], large)
        want = [h for part in hosts.split(",") for h in [part.split(":")[0]] * int(part.split(":")[1])]
        assert sorted(results[0]["hosts"]) == want
