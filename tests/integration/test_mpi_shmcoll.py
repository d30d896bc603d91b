"""Collectives of one-host communicators through their shared-memory region (granny.mpi.shmcoll), with the C
Region and with the pure-Python one: results equal the definitions for every collective the region covers, at
sizes on both sides of the slot, for several ops and dtypes, on derived communicators, with oversized pickles
and with more ranks than cores; no shared-memory file is left behind."""

from __future__ import annotations

import glob
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import granny
from granny.cluster import LocalCluster
from granny.config import worker_shm_tag
from granny.mpi import shmcoll
from granny.mpi.shm import PURE_ENV


@pytest.fixture(scope="module", params=["fast", "pure", "off"])
def mode_client(request: pytest.FixtureRequest) -> Iterator[tuple[str, granny.Client, LocalCluster]]:
    mode = request.param
    if mode == "fast":
        pytest.importorskip("granny.mpi._fastring", reason="the optional C extension is not built")
    with pytest.MonkeyPatch.context() as mp, tempfile.TemporaryDirectory(prefix="granny-coll-") as tmp:
        if mode == "pure":
            mp.setenv(PURE_ENV, "1")
        else:
            mp.delenv(PURE_ENV, raising=False)
        if mode == "off":  # no regions: every collective takes the point-to-point schedules
            mp.setenv(shmcoll.ENV, "0")
        else:
            mp.delenv(shmcoll.ENV, raising=False)
        cluster = LocalCluster(workers=1, slots=4, data_dir=Path(tmp) / "data", heartbeat_timeout=2.0,
                               granule_user="same")
        try:
            client = granny.connect(cluster.address, cluster.token)
            try:
                yield mode, client, cluster
            finally:
                client.close()
        finally:
            cluster.stop()


def _mine(cluster: LocalCluster) -> set[str]:
    """The MPI segments of this cluster's workers (other users of the machine may have their own)."""
    names = set(glob.glob("/dev/shm/granny-mpi-*"))
    tags = {f"-w{worker_shm_tag(h, cluster.address)}-" for h in ("local", "local1", "local2")}
    return {n for n in names if any(t in n for t in tags)}


def workout(comm: Any) -> dict[str, Any]:
    from mpi4py import MPI

    from granny.mpi import runtime, shmcoll

    rank, size = comm.rank, comm.size
    res: dict[str, Any] = {"fast": runtime.get().world.fabric.fast}
    comm.Barrier()
    res["region"] = type(comm._coll).__name__
    res["reg"] = type(comm._coll.reg).__name__ if comm._coll else None
    res["half_size"] = 0
    bad: list[str] = []

    def check(name: str, ok: Any) -> None:
        if not bool(ok):
            bad.append(name)

    tot = size * (size - 1) // 2
    # 2048 float64 fill the 16 KiB slot; past it: point-to-point; from 64 KiB Allreduce reads the others' memory
    for n in (1, 3, 1000, 2048, 2049, 5000, 20_001, 300_000):
        for dt in (np.float64, np.int32, np.uint8, np.float32, np.int64):
            a = (np.arange(n) % 7 + rank).astype(dt)
            r = np.empty_like(a)
            comm.Allreduce(a, r, op=MPI.SUM)
            check(f"Allreduce {n} {dt.__name__}", (r == (size * (np.arange(n) % 7) + tot).astype(dt)).all())
            comm.Allreduce(a, r, op=MPI.MAX)
            check(f"Allreduce MAX {n} {dt.__name__}", (r == (np.arange(n) % 7 + size - 1).astype(dt)).all())
        b = np.arange(n, dtype=np.int64) if rank == 1 % size else np.zeros(n, np.int64)
        comm.Bcast(b, root=1 % size)
        check(f"Bcast {n}", (b == np.arange(n)).all())
        red = np.zeros(n, np.int64)
        comm.Reduce(np.full(n, rank + 1, np.int64), red, op=MPI.PROD, root=size - 1)
        if rank == size - 1:
            import math

            check(f"Reduce {n}", (red == math.factorial(size)).all())
        g = np.zeros(n * size, np.int16)
        comm.Allgather(np.full(n, rank, np.int16), g)
        check(f"Allgather {n}", (g == np.repeat(np.arange(size), n)).all())
        gg = np.zeros(n * size, np.float32) if rank == 0 else None
        comm.Gather(np.full(n, rank + 0.5, np.float32), gg, root=0)
        if rank == 0:
            check(f"Gather {n}", (gg == np.repeat(np.arange(size) + 0.5, n)).all())
        sc = np.zeros(n, np.int32)
        comm.Scatter(np.repeat(np.arange(size, dtype=np.int32) * 3, n) if rank == 0 else None, sc, root=0)
        check(f"Scatter {n}", (sc == 3 * rank).all())

    # Alltoall(v): single-copy reads, pairwise
    for n in (1, 1000, 300_000):
        a = np.array([rank * 1000 + j for j in range(size) for _ in range(n)], np.int64)
        r = np.empty_like(a)
        comm.Alltoall(a, r)
        check(f"Alltoall {n}", (r == np.repeat(np.arange(size) * 1000 + rank, n)).all())
        comm.Alltoall(MPI.IN_PLACE, a)
        check(f"Alltoall IN_PLACE {n}", (a == r).all())
    # plain arrays skip parse_buffer (shmcoll._plain_blocks): 2-D, float, a plain receive with a [buf, type]
    # send; a read-only receive buffer is still refused
    a2 = np.array([[rank + 0.25 * j] * 3 for j in range(size)])
    r2 = np.zeros((size, 3))
    comm.Alltoall(a2, r2)
    check("Alltoall 2-D float", (r2 == np.array([[i + 0.25 * rank] * 3 for i in range(size)])).all())
    r3 = np.zeros(size * 2, np.int32)
    comm.Alltoall([np.repeat(np.arange(size, dtype=np.int32) + 10 * rank, 2), MPI.INT], r3)
    check("Alltoall mixed specs", (r3 == np.repeat(np.arange(size) * 10 + rank, 2)).all())
    ro = np.zeros(size * 2, np.int32)
    ro.flags.writeable = False
    try:
        comm.Alltoall(np.zeros(size * 2, np.int32), ro)  # refused by every rank before any exchange
        check("Alltoall refuses a read-only receive buffer", False)
    except Exception:  # whatever parse_buffer raises, as before
        pass
    counts = [(rank + j) % 3 for j in range(size)]  # rank sends (rank + j) % 3 items to j
    sdispl = [sum(counts[:j]) for j in range(size)]
    rcounts = [(i + rank) % 3 for i in range(size)]
    rdispl = [sum(rcounts[:i]) + i for i in range(size)]  # with gaps
    sv = np.array([100 * rank + j for j in range(size) for _ in range(counts[j])], np.int32)
    rv = np.full(sum(rcounts) + size, -1, np.int32)
    comm.Alltoallv([sv, (counts, sdispl), MPI.INT], [rv, (rcounts, rdispl), MPI.INT])
    want = np.full(sum(rcounts) + size, -1, np.int32)
    for i in range(size):
        want[rdispl[i]:rdispl[i] + rcounts[i]] = 100 * i + rank
    check("Alltoallv", (rv == want).all())

    # blocks of nothing
    sc0 = np.zeros(0, np.int32)
    comm.Scatter(np.zeros(0, np.int32) if rank == 0 else None, sc0, root=0)
    g0 = np.zeros(0, np.int32)
    comm.Gather(np.zeros(0, np.int32), g0 if rank == 0 else None, root=0)
    comm.Allgather(np.zeros(0, np.int32), g0)

    # NaN propagates as with numpy; IN_PLACE; a non-commutative user op keeps rank order; MAXLOC pairs
    x = np.array([np.nan if rank == 0 else 1.0, rank])
    comm.Allreduce(MPI.IN_PLACE, x, op=MPI.MAX)
    check("NaN MAX", np.isnan(x[0]) and x[1] == size - 1)
    y = np.array([rank + 1.0])
    comm.Allreduce(MPI.IN_PLACE, y, op=MPI.SUM)
    check("IN_PLACE", y[0] == size * (size + 1) / 2)
    big = np.arange(100_003, dtype=np.float64) * (rank + 1)
    comm.Allreduce(MPI.IN_PLACE, big, op=MPI.SUM)
    check("IN_PLACE large", (big == np.arange(100_003) * (size * (size + 1) / 2)).all())

    def concat(a: Any, b: Any, dt: Any) -> None:  # (digits, 10**len) pairs: associative, not commutative
        i, o = np.frombuffer(a, np.int64), np.frombuffer(b, np.int64)
        o[0], o[1] = i[0] * o[1] + o[0], i[1] * o[1]

    op = MPI.Op.Create(concat, commute=False)
    d = np.empty(2, np.int64)
    comm.Allreduce(np.array([rank + 1, 10], np.int64), d, op=op)
    check("user op order", d[0] == int("".join(str(i + 1) for i in range(size))))
    op.Free()
    pairs = np.array([(float(rank % 2), rank)], dtype=np.dtype([("v", "f8"), ("i", "i4")], align=True))
    comm.Allreduce(MPI.IN_PLACE, [pairs, MPI.DOUBLE_INT], op=MPI.MAXLOC)
    check("MAXLOC", pairs[0]["v"] == (1.0 if size > 1 else 0.0) and pairs[0]["i"] == (1 if size > 1 else 0))

    # pickled forms, small and past the slot (those go point-to-point)
    for big in (False, True):
        item = ("x" * 40_000 if big else "x", rank)
        check(f"allreduce {big}", comm.allreduce(rank) == tot)
        check(f"allgather {big}", comm.allgather(item) == [(item[0], i) for i in range(size)])
        got = comm.bcast(item if rank == 0 else None, root=0)
        check(f"bcast {big}", got == (item[0], 0))
        gathered = comm.gather(item if rank % 2 or not big else ("y", rank), root=size - 1)
        if rank == size - 1:
            want = [(item[0] if i % 2 or not big else "y", i) for i in range(size)]
            check(f"gather {big}", gathered == want)
        else:
            check(f"gather {big} off-root", gathered is None)
        check(f"reduce {big}", comm.reduce([rank], op=MPI.SUM, root=0) == (list(range(size)) if rank == 0 else None))
        big_sum = comm.allreduce([rank] * (5000 if big else 1))  # list + is concatenation: rank order
        check(f"allreduce list {big}", big_sum == [i for i in range(size) for _ in range(5000 if big else 1)])
        comm.barrier()

    # derived communicators have their own regions; a freed one releases its region
    dup = comm.Dup()
    half = comm.Split(color=rank % 2, key=-rank)
    cart = comm.Create_cart([size], periods=[True])
    check("dup", dup.allreduce(1) == size)
    check("half", half.allreduce(rank) == sum(r for r in range(size) if r % 2 == rank % 2))
    check("half order", half.allgather(rank) == sorted((r for r in range(size) if r % 2 == rank % 2), reverse=True))
    check("cart", cart.allreduce(rank) == tot)
    copy = MPI.Intracomm(dup)  # another handle to the same communicator shares its region
    dup.Barrier()
    check("copy", copy.allreduce(2) == 2 * size and copy._coll is dup._coll)
    res["kinds"] = [type(c._coll).__name__ for c in (dup, half, cart)]
    res["half_size"] = half.size
    regions = len(shmcoll._registry)
    dup.Free()
    res["freed"] = regions - len(shmcoll._registry)
    res["bad"] = bad
    comm.Barrier()
    return res


@pytest.mark.parametrize("n", [2, 3, 4])  # 3 and 4 ranks on 2 cores: oversubscribed, the ranks yield
def test_collectives_through_the_region(mode_client: tuple[str, granny.Client, LocalCluster], n: int) -> None:
    mode, client, cluster = mode_client
    results = client.run_mpi(workout, n=n, timeout=300)
    region = "bool" if mode == "off" else "ShmColl"
    for rank, r in enumerate(results):
        assert r["bad"] == [], (rank, r["bad"])
        assert r["fast"] is (mode != "pure")
        assert r["region"] == region
        assert r["reg"] == {"fast": "Region", "pure": "PyRegion", "off": None}[mode]
        assert r["kinds"] == [region, region if r["half_size"] > 1 else "bool", region]
        assert r["freed"] == (0 if mode == "off" else 1)
    assert _mine(cluster) == set()


MOVING = '''
import numpy as np
from mpi4py import MPI
import granny

def step(half, when):
    world = MPI.COMM_WORLD
    r = world.Get_rank()
    a = np.array([float(r)])
    world.Allreduce(MPI.IN_PLACE, a)
    kinds = [type(world._coll).__name__, type(half._coll).__name__]
    print(f"rank {r} {when} world {a[0]} half {half.allreduce(r)} {kinds[0]} {type(half._coll).__name__}")

world = MPI.COMM_WORLD
half = world.Split(color=world.Get_rank() // 2, key=0)
step(half, "before")
granny.migration_point(step, half, "after")
step(half, "again")
'''


def test_a_world_that_moves_gets_new_regions_and_leaks_none(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Split over two hosts, the world has only host legs (SpanColl) and its halves have regions; once it has moved
    onto one host, the rebuilt world has one too, the halves have new ones, and /dev/shm is clean."""
    script = tmp_path / "moving.py"
    script.write_text(MOVING)
    monkeypatch.delenv(shmcoll.ENV, raising=False)  # the module's "off" cluster may still have it set
    c = LocalCluster(workers=2, slots=4, data_dir=tmp_path / "data", granule_user="same")
    try:
        with granny.connect(c.address, c.token) as client:
            out: list[str] = []
            results = client.options(hosts="local1:2,local2:2").run_script(
                str(script), 4, [], mpi=True, on_log=lambda m: out.append(m.data) if m.stream == "stdout" else None)
            assert [r.status.value for r in results] == ["ok"] * 4, [r.message for r in results]
    finally:
        c.stop()
    lines = sorted("".join(out).splitlines())
    assert len(lines) == 8, lines
    for r in range(4):  # the moved ranks run step(.., "after") on their new host, the others go on ("again")
        half = 1 if r < 2 else 5
        assert f"rank {r} before world 6.0 half {half} SpanColl ShmColl" in lines, lines
        assert (f"rank {r} after world 6.0 half {half} ShmColl ShmColl" in lines) != (
            f"rank {r} again world 6.0 half {half} ShmColl ShmColl" in lines), lines
    assert _mine(c) == set()


def affinity(comm: Any) -> list[int]:
    import os

    comm.Barrier()
    return sorted(os.sched_getaffinity(0))


def unbound() -> list[int]:
    import os

    return sorted(os.sched_getaffinity(0))


def test_ranks_are_bound_to_cores_and_unbound_after(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """As Open MPI binds ranks to cores (here forced with GRANNY_MPI_BIND=1, the default only when a world
    fills its host): each rank runs on one core, round-robin, and the warm granule is unbound after."""
    import os

    cpus = sorted(os.sched_getaffinity(0))
    monkeypatch.setenv("GRANNY_MPI_BIND", "1")
    c = LocalCluster(workers=1, slots=2, data_dir=tmp_path / "data", granule_user="same")
    try:
        with granny.connect(c.address, c.token) as client:
            r0, r1 = client.run_mpi(affinity, n=2, timeout=60)
            assert r0 == [cpus[0]] and r1 == [cpus[1 % len(cpus)]]
            for _ in range(4):  # both granules, warm again: their CPU sets are whole again
                assert client.submit(unbound).result(60) == cpus
    finally:
        c.stop()


def spanning(comm: Any) -> dict[str, Any]:
    """Collectives of a world over two hosts: the host legs go through the hosts' regions (shmhosts.py)."""
    from mpi4py import MPI

    rank, size = comm.rank, comm.size
    bad: list[str] = []

    def check(name: str, ok: Any) -> None:
        if not bool(ok):
            bad.append(name)

    for _ in range(3):
        comm.Barrier()
        comm.barrier()
    for n in (1, 7, 2048, 5000):
        for op, want in ((MPI.SUM, lambda k: size * k + size * (size - 1) // 2), (MPI.MAX, lambda k: k + size - 1)):
            a = np.arange(n, dtype=np.int64) + rank
            r = np.empty_like(a)
            comm.Allreduce(a, r, op=op)
            check(f"Allreduce {n} {op.name}", (r == want(np.arange(n))).all())
        x = np.full(n, rank + 1.0)
        comm.Allreduce(MPI.IN_PLACE, x, op=MPI.PROD)
        check(f"Allreduce IN_PLACE {n}", (x == float(np.prod(np.arange(1, size + 1)))).all())
        for root in range(size):
            b = np.arange(n, dtype=np.float32) + root if rank == root else np.zeros(n, np.float32)
            comm.Bcast(b, root=root)
            check(f"Bcast {n} root {root}", (b == np.arange(n) + root).all())

    def concat(a: Any, b: Any, dt: Any) -> None:  # not commutative: the general schedules
        i, o = np.frombuffer(a, np.int64), np.frombuffer(b, np.int64)
        o[0], o[1] = i[0] * o[1] + o[0], i[1] * o[1]

    op = MPI.Op.Create(concat, commute=False)
    d = np.empty(2, np.int64)
    comm.Allreduce(np.array([rank + 1, 10], np.int64), d, op=op)
    check("non-commutative", d[0] == int("".join(str(i + 1) for i in range(size))))
    op.Free()
    check("allreduce", comm.allreduce(rank) == size * (size - 1) // 2)
    check("bcast", comm.bcast(rank if rank == 2 else None, root=2) == 2)
    check("gather", comm.gather(rank, root=1) == (list(range(size)) if rank == 1 else None))
    g = np.empty(size, np.int32)
    comm.Allgather(np.array([rank], np.int32), g)
    check("Allgather", g.tolist() == list(range(size)))
    return {"bad": bad, "kind": type(comm._coll).__name__,
            "local": len(comm._coll.local), "has_region": comm._coll.reg is not None}


@pytest.mark.parametrize(("hosts", "pure"), [("local1:2,local2:2", False), ("local1:2,local2:2", True),
                                             ("local1:3,local2:1", False)])
def test_a_world_over_two_hosts_uses_the_regions_for_its_host_legs(tmp_path: Path, hosts: str, pure: bool,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(shmcoll.ENV, raising=False)
    if pure:
        monkeypatch.setenv(PURE_ENV, "1")
    else:
        monkeypatch.delenv(PURE_ENV, raising=False)
    c = LocalCluster(workers=2, slots=4, data_dir=tmp_path / "data", granule_user="same")
    try:
        with granny.connect(c.address, c.token) as client:
            results = client.options(hosts=hosts).run_mpi(spanning, n=4, timeout=120)
        per_host = [int(h.split(":")[1]) for h in hosts.split(",")]
        locals_ = [per_host[0]] * per_host[0] + [per_host[1]] * per_host[1]
        for rank, r in enumerate(results):
            assert r["bad"] == [], (rank, r["bad"])
            assert r["kind"] == "SpanColl" and r["local"] == locals_[rank]
            assert r["has_region"] is (locals_[rank] > 1)
        assert _mine(c) == set()
    finally:
        c.stop()


def flood_then_barrier(comm: Any) -> list[int]:
    """Rank 1 sends 2 MB of small messages (twice its ring) before a Barrier that rank 0 enters first: rank 1's
    sends wait for room, which rank 0 makes only if it keeps the point-to-point engine going while it
    waits in the Barrier. Then rank 0 receives them all, in order."""
    import time

    got = []
    if comm.rank == 1:
        for i in range(2000):
            comm.Send(np.full(1024, i % 251, np.uint8), dest=0, tag=3)
    elif comm.rank == 0:
        time.sleep(0.1)
    comm.Barrier()
    if comm.rank == 0:
        buf = np.empty(1024, np.uint8)
        for i in range(2000):
            comm.Recv(buf, source=1, tag=3)
            if buf[0] != i % 251:
                got.append(i)
    return got


def test_a_rank_waiting_in_a_collective_keeps_point_to_point_moving(
        mode_client: tuple[str, granny.Client, LocalCluster]) -> None:
    _, client, _ = mode_client
    assert client.run_mpi(flood_then_barrier, n=2, timeout=120) == [[], []]


def dies_before_the_barrier(comm: Any) -> None:
    import os

    comm.Barrier()  # the region is set up
    if comm.rank == 1:
        os._exit(7)
    comm.Barrier()  # rank 0 waits in the region for a rank that is gone: the world must be stopped


def test_a_rank_dying_while_the_others_wait_in_the_region_aborts_the_world(
        mode_client: tuple[str, granny.Client, LocalCluster]) -> None:
    _, client, cluster = mode_client
    with pytest.raises(granny.GranuleCrashedError, match="exited with code 7"):
        client.run_mpi(dies_before_the_barrier, n=2, timeout=60)
    assert client.submit(int, "5").result(timeout=30) == 5  # the slots came back
    assert _mine(cluster) == set()
