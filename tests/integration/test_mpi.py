"""MPI on granules: real planner, worker and granule processes; ranks talk over shared memory."""

from __future__ import annotations

import concurrent.futures as cf
import glob
import os
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import granny
from granny.cluster import LocalCluster
from granny.errors import MpiError, NeverFitsError

from .test_cli import clean_env
from .test_cli import granny as granny_cli

_BEFORE: set[str] = set()


@pytest.fixture(autouse=True)
def _shm_baseline() -> None:
    _BEFORE.clear()
    _BEFORE.update(glob.glob("/dev/shm/granny-mpi-*"))


def _shm_leftovers() -> list[str]:
    """MPI segments this test left behind (other users of the machine may have their own)."""
    return sorted(set(glob.glob("/dev/shm/granny-mpi-*")) - _BEFORE)


def ranks_and_p2p(comm: Any) -> dict[str, Any]:
    from mpi4py import MPI  # the shim, inside an MPI granule

    assert comm is MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.size
    peer = (rank + 1) % size
    prev = (rank - 1) % size
    got = comm.sendrecv({"from": rank}, dest=peer, source=prev)
    out = np.arange(10, dtype=np.float64) * (rank + 1)
    back = np.empty(10, dtype=np.float64)
    comm.Sendrecv(out, dest=peer, sendtag=7, recvbuf=back, source=prev, recvtag=7)
    big = np.full(300_000, rank, dtype=np.int64)  # 2.4 MB: the single-copy rendezvous path
    bigback = np.empty_like(big)
    reqs = [comm.Irecv(bigback, source=prev, tag=9), comm.Isend(big, dest=peer, tag=9)]
    MPI.Request.Waitall(reqs)
    probed: tuple[int, int] | None = None
    if rank == 0:
        comm.send("probe-me", dest=1, tag=42)
    elif rank == 1:
        status = MPI.Status()
        comm.Probe(source=MPI.ANY_SOURCE, tag=MPI.ANY_TAG, status=status)
        probed = (status.Get_source(), status.Get_tag())
        assert comm.recv(source=0, tag=42) == "probe-me"
    return {"rank": rank, "size": size, "got": got["from"], "buf": float(back[1]), "big": int(bigback[0]),
            "probed": probed}


def test_run_mpi_point_to_point(client: granny.Client) -> None:
    results = client.run_mpi(ranks_and_p2p, n=2)
    assert [r["rank"] for r in results] == [0, 1]
    assert all(r["size"] == 2 for r in results)
    assert [r["got"] for r in results] == [1, 0]
    assert [r["buf"] for r in results] == [2.0, 1.0]  # element 1 of the previous rank's array
    assert [r["big"] for r in results] == [1, 0]
    assert results[1]["probed"] == (0, 42)


def collectives(comm: Any, n: int) -> dict[str, Any]:
    from mpi4py import MPI

    rank, size = comm.rank, comm.size
    out: dict[str, Any] = {}
    out["bcast"] = comm.bcast({"k": [1, 2]} if rank == 0 else None, root=0)
    out["allreduce"] = comm.allreduce(rank + 1, op=MPI.SUM)
    out["gather"] = comm.gather(rank * 10, root=0)
    out["allgather"] = comm.allgather(rank)
    out["scatter"] = comm.scatter([i * i for i in range(size)] if rank == 0 else None, root=0)
    out["alltoall"] = comm.alltoall([(rank, j) for j in range(size)])
    out["scan"] = comm.scan(rank + 1)
    out["exscan"] = comm.exscan(rank + 1)
    comm.barrier()
    a = np.full(n, rank + 1, dtype=np.float64)
    r = np.empty_like(a)
    comm.Allreduce(a, r, op=MPI.SUM)
    out["Allreduce"] = (float(r.min()), float(r.max()))
    comm.Allreduce(MPI.IN_PLACE, a, op=MPI.MAX)
    out["Allreduce_inplace_max"] = float(a[0])
    b = np.arange(4, dtype=np.int32) if rank == 0 else np.zeros(4, dtype=np.int32)
    comm.Bcast(b, root=0)
    out["Bcast"] = b.tolist()
    g = np.empty(size * 2, dtype=np.int64) if rank == 0 else None
    comm.Gather(np.array([rank, rank], dtype=np.int64), g, root=0)
    out["Gather"] = g.tolist() if g is not None else None
    ag = np.empty(size, dtype=np.int32)
    comm.Allgather(np.array([rank], dtype=np.int32), ag)
    out["Allgather"] = ag.tolist()
    red = np.empty(3, dtype=np.int64)
    comm.Reduce(np.array([rank, 1, 2], dtype=np.int64), red if rank == 0 else None, op=MPI.SUM, root=0)
    out["Reduce"] = red.tolist() if rank == 0 else None
    sc = np.empty(2, dtype=np.float32)
    comm.Scatter(np.arange(size * 2, dtype=np.float32) if rank == 0 else None, sc, root=0)
    out["Scatter"] = sc.tolist()
    at = np.empty(size, dtype=np.int32)
    comm.Alltoall(np.array([rank * 100 + j for j in range(size)], dtype=np.int32), at)
    out["Alltoall"] = at.tolist()
    sb = np.empty(1, dtype=np.int32)
    comm.Scan(np.array([rank + 1], dtype=np.int32), sb)
    out["Scan"] = int(sb[0])
    sub = comm.Split(color=rank % 2, key=-rank)
    out["split"] = (sub.size, sub.rank, sub.allreduce(rank))
    dup = comm.Dup()
    out["dup"] = (dup.Compare(comm), dup.allreduce(1))
    cart = comm.Create_cart([size], periods=[True])
    out["cart"] = cart.Shift(0, 1)
    return out


@pytest.mark.parametrize("n", [10, 200_000])  # small (tree) and large (reduce-scatter + allgather) Allreduce
def test_run_mpi_collectives(client: granny.Client, n: int) -> None:
    results = client.run_mpi(collectives, n=2, args=(n,))
    r0, r1 = results
    for r in results:
        assert r["bcast"] == {"k": [1, 2]}
        assert r["allreduce"] == 3
        assert r["allgather"] == [0, 1]
        assert r["Allreduce"] == (3.0, 3.0)
        assert r["Allreduce_inplace_max"] == 2.0
        assert r["Bcast"] == [0, 1, 2, 3]
        assert r["Allgather"] == [0, 1]
        assert r["split"][0] == 1 and r["split"][1] == 0
        assert r["dup"] == (1, 2)  # CONGRUENT, and the duplicate works
    assert r0["gather"] == [0, 10] and r1["gather"] is None
    assert [r["scatter"] for r in results] == [0, 1]
    assert r0["alltoall"] == [(0, 0), (1, 0)] and r1["alltoall"] == [(0, 1), (1, 1)]
    assert [r["scan"] for r in results] == [1, 3]
    assert [r["exscan"] for r in results] == [None, 1]
    assert r0["Gather"] == [0, 0, 1, 1]
    assert r0["Reduce"] == [1, 2, 4]
    assert [r["Scatter"] for r in results] == [[0.0, 1.0], [2.0, 3.0]]
    assert r0["Alltoall"] == [0, 100] and r1["Alltoall"] == [1, 101]
    assert [r["Scan"] for r in results] == [1, 3]
    assert r0["cart"] == (1, 1) and r1["cart"] == (0, 0)
    assert _shm_leftovers() == []


def rank_one_raises(comm: Any) -> None:
    if comm.rank == 1:
        raise ValueError("rank one is broken")
    comm.recv(source=1)  # would wait forever: the world must be aborted instead


def test_a_failing_rank_aborts_the_world(client: granny.Client) -> None:
    with pytest.raises(ValueError, match="rank one is broken") as info:
        client.run_mpi(rank_one_raises, n=2, timeout=60)
    assert any("rank 1 of 2 failed" in note for note in info.value.__notes__)
    assert client.submit(int, "5").result(timeout=30) == 5  # the slots came back
    assert _shm_leftovers() == []


def rank_dies(comm: Any) -> None:
    if comm.rank == 0:
        os._exit(7)
    comm.recv(source=0)


def test_a_dying_rank_aborts_the_world(client: granny.Client) -> None:
    with pytest.raises(granny.GranuleCrashedError, match="exited with code 7"):
        client.run_mpi(rank_dies, n=2, timeout=60)
    assert _shm_leftovers() == []


def truncates(comm: Any) -> str:
    from mpi4py import MPI

    if comm.rank == 0:
        comm.Send(np.zeros(8, dtype=np.uint8), dest=1)
        return ""
    try:
        comm.Recv(np.zeros(4, dtype=np.uint8), source=0)
    except MPI.Exception as exc:
        return f"{exc.Get_error_class() == MPI.ERR_TRUNCATE}:{exc}"
    return "no error"


def bad_rank(comm: Any) -> str:
    try:
        comm.send("x", dest=5)
    except MpiError as exc:
        return str(exc)
    return "no error"


def test_truncation_and_bad_rank_raise_mpi_errors(client: granny.Client) -> None:
    _, msg = client.run_mpi(truncates, n=2)
    assert msg.startswith("True:") and "truncated" in msg and "8 bytes" in msg
    msgs = client.run_mpi(bad_rank, n=2)
    assert all("invalid rank 5" in m for m in msgs)


def test_world_larger_than_cluster_fails_at_once(client: granny.Client) -> None:
    with pytest.raises(NeverFitsError, match="never fit|2 slots"):
        client.run_mpi(ranks_and_p2p, n=3, timeout=30)


def hold(comm: Any, path: str) -> int:
    import time

    while not os.path.exists(path):
        time.sleep(0.01)  # polling for a file the test creates
    return -1 if comm is None else int(comm.rank)


def test_world_that_does_not_fit_now_queues_then_runs(client: granny.Client, tmp_path: Path) -> None:
    release = tmp_path / "go"
    blocker = client.submit(hold, None, str(release))  # holds one of the two slots
    world = client.submit_mpi(ranks_and_p2p, n=2)
    with pytest.raises(cf.TimeoutError):
        world.result(timeout=0.5)
    assert not world.done()  # queued, not failed and not half-started
    release.touch()
    assert blocker.result(timeout=30) == -1
    assert [r["rank"] for r in world.result(timeout=60)] == [0, 1]


def test_unmodified_mpi4py_script_with_abort(cluster: LocalCluster, tmp_path: Path) -> None:
    env = clean_env(GRANNY_ADDRESS=cluster.address, GRANNY_TOKEN=cluster.token)
    prog = tmp_path / "prog.py"
    prog.write_text(textwrap.dedent("""
        from mpi4py import MPI
        import numpy as np
        comm = MPI.COMM_WORLD
        data = np.arange(4.0) if comm.rank == 0 else np.empty(4)
        comm.Bcast(data, root=0)
        total = comm.allreduce(float(data.sum()) * (comm.rank + 1))
        if comm.rank == 0:
            print(f"size={comm.Get_size()} total={total}", flush=True)
    """))
    proc = granny_cli("run", "-n", "2", str(prog), env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "size=2 total=18.0"

    abort = tmp_path / "abort.py"
    abort.write_text(textwrap.dedent("""
        from mpi4py import MPI
        comm = MPI.COMM_WORLD
        if comm.rank == 1:
            MPI.COMM_WORLD.Abort(5)
        comm.recv(source=1)
    """))
    proc = granny_cli("run", "-n", "2", str(abort), env=env)
    assert proc.returncode == 5, (proc.stdout, proc.stderr)
    assert "MPI_ABORT was invoked on rank 1" in proc.stderr
    assert _shm_leftovers() == []


def test_embedded_cluster_oversubscribes_like_mpirun(tmp_path: Path) -> None:
    cores = os.cpu_count() or 1
    n = cores * 2
    prog = tmp_path / "prog.py"
    prog.write_text(textwrap.dedent("""
        from mpi4py import MPI
        comm = MPI.COMM_WORLD
        s = comm.allreduce(comm.rank)
        comm.Barrier()
        if comm.rank == 0:
            print(f"ranks={comm.size} sum={s}")
    """))
    env = clean_env(GRANNY_DATA_DIR=str(tmp_path / "data"))
    proc = granny_cli("run", "-n", str(n), str(prog), env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"ranks={n} sum={n * (n - 1) // 2}"
    assert "oversubscribing" in proc.stderr


def objects_with_arrays(comm: Any) -> list[Any]:
    """Lowercase methods move large arrays out of band; the received arrays are ordinary, writable ones."""
    peer = 1 - comm.rank
    mine = {"big": np.arange(300_000, dtype=np.float64) + comm.rank, "small": np.arange(3), "tag": comm.rank}
    got = comm.sendrecv(mine, dest=peer, source=peer)
    got["big"][0] = -1.0  # writable
    everyone = comm.allgather(mine["big"][:10_000])
    req = comm.isend({"x": np.ones(5000)}, dest=peer, tag=3)
    again = comm.recv(source=peer, tag=3)
    req.wait()
    return [got["tag"], float(got["big"][1]), got["small"].tolist(), [float(a[0]) for a in everyone],
            float(again["x"].sum())]


def test_objects_with_large_arrays_travel_out_of_band(client: granny.Client) -> None:
    r0, r1 = client.run_mpi(objects_with_arrays, n=2)
    assert r0 == [1, 2.0, [0, 1, 2], [0.0, 1.0], 5000.0]
    assert r1 == [0, 1.0, [0, 1, 2], [0.0, 1.0], 5000.0]
