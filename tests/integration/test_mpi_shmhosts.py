"""Buffer collectives of a world over two hosts (two local workers): the per-host legs of Reduce, Allreduce
(non-commutative ops too), Gather, Scatter and Allgather go through each host's region (shmhosts.py), and
every result equals numpy's, at sizes on both sides of a region slot, even and uneven splits, with the C
region and the pure-Python one, and on a communicator whose hosts hold interleaved ranks."""

from __future__ import annotations

from pathlib import Path

import pytest

import granny
from granny.cluster import LocalCluster
from granny.mpi import shmcoll
from granny.mpi.shm import PURE_ENV

from ..span_collectives import span_program


@pytest.mark.parametrize(("hosts", "pure"), [("local1:2,local2:2", False), ("local1:3,local2:1", False),
                                             ("local1:2,local2:2", True)])
def test_span_collectives_equal_numpy_and_use_the_host_regions(tmp_path: Path, hosts: str, pure: bool,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(shmcoll.ENV, raising=False)
    if pure:
        monkeypatch.setenv(PURE_ENV, "1")
    else:
        monkeypatch.delenv(PURE_ENV, raising=False)
    c = LocalCluster(workers=2, slots=4, data_dir=tmp_path / "data", granule_user="same")
    try:
        with granny.connect(c.address, c.token) as client:
            results = client.options(hosts=hosts).run_mpi(span_program(), n=4, timeout=300)
    finally:
        c.stop()
    per_host = [int(h.split(":")[1]) for h in hosts.split(",")]
    for rank, r in enumerate(results):
        assert r["bad"] == [], (rank, r["bad"])
        assert r["kind"] == "SpanColl"
        assert r["region"] is (r["hosts"].count(r["hosts"][rank]) > 1)
        if r["region"]:
            large = r["used"].pop("Allreduce large")  # hierarchical only when the hosts hold as many ranks
            assert all(r["used"].values()) and large is r["even"], (rank, r["used"], large)
    assert sorted(results[0]["hosts"]) == sorted(h for h, k in zip(("local1", "local2"), per_host, strict=True) for _ in range(k))
