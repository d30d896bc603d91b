"""One-sided operations with derived, non-contiguous datatypes (vector, hvector, indexed, subarray, resized)
at the target and at the origin, on Allocate and Create windows, checked against numpy: ranks on one host
(shared mapping, process_vm_readv/writev) and on two hosts (requests served by the target). The same
program passes under mpi4py on Open MPI (``mpirun -n 2 python tests/rma_derived.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest

import granny
from granny.cluster import LocalCluster

from ..rma_derived import rma_derived_program


@pytest.mark.parametrize(("workers", "hosts", "n"), [(1, None, 2), (1, None, 3), (2, "local1:1,local2:1", 2),
                                                     (2, "local1:2,local2:1", 3)])
def test_rma_with_derived_datatypes_equals_numpy(tmp_path: Path, workers: int, hosts: str | None, n: int) -> None:
    c = LocalCluster(workers=workers, slots=3, data_dir=tmp_path / "data", granule_user="same")
    try:
        with granny.connect(c.address, c.token) as client:
            runner = client.options(hosts=hosts) if hosts else client
            results = runner.run_mpi(rma_derived_program(), n=n, timeout=300)
    finally:
        c.stop()
    assert results == [[]] * n, results
