"""Buffer Send/Recv between two same-host ranks, with the C ring (granny.mpi._fastring) and with the pure-Python
one (GRANNY_MPI_PURE=1): the same semantics either way (order, tags, status, truncation, a full ring, sleeping
peers, messages that must take the general path)."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import granny
from granny.cluster import LocalCluster
from granny.mpi.shm import PURE_ENV


@pytest.fixture(scope="module", params=["fast", "pure"])
def mode_client(request: pytest.FixtureRequest) -> Iterator[tuple[str, granny.Client]]:
    mode = request.param
    if mode == "fast":
        pytest.importorskip("granny.mpi._fastring", reason="the optional C extension is not built")
    with pytest.MonkeyPatch.context() as mp, tempfile.TemporaryDirectory(prefix="granny-fast-") as tmp:
        if mode == "pure":
            mp.setenv(PURE_ENV, "1")
        else:
            mp.delenv(PURE_ENV, raising=False)
        cluster = LocalCluster(workers=1, slots=2, data_dir=Path(tmp) / "data", heartbeat_timeout=2.0,
                               granule_user="same")
        try:
            client = granny.connect(cluster.address, cluster.token)
            try:
                yield mode, client
            finally:
                client.close()
        finally:
            cluster.stop()


def blocked(fabric: Any, rank: int, what: str) -> None:
    """Return once same-host ``rank`` blocks in its fabric (its sleeping flag is set): a scenario that
    needs a peer waiting waits for that, not for a time. Polls with a deadline (it runs in a rank)."""
    inbox = fabric.peer_inboxes[rank]
    deadline = time.monotonic() + 60
    while not inbox.sleeping:
        if time.monotonic() > deadline:
            raise TimeoutError(f"rank {rank} never blocked {what}")
        time.sleep(0.0002)  # polling with a deadline


def workout(comm: Any) -> dict[str, Any]:
    from mpi4py import MPI

    from granny.mpi import runtime, shm

    rank, peer = comm.rank, 1 - comm.rank
    fabric = runtime.get().world.fabric
    res: dict[str, Any] = {"fast": fabric.fast}
    st = MPI.Status()

    # 1. ping-pong over sizes around the header and alignment boundaries and past the eager limit
    sizes = [0, 1, 8, 31, 32, 33, 64, 1000, 4096, 65536, 65537, 200_000]
    ok = []
    for n in sizes:
        mine = (np.arange(n, dtype=np.int64) * 7 + n + rank).astype(np.uint8)
        got = np.full(n + 5, 0xEE, dtype=np.uint8)
        if rank == 0:
            comm.Send(mine, dest=peer, tag=n % 1000)
            comm.Recv(got, source=peer, tag=MPI.ANY_TAG, status=st)
        else:
            comm.Recv(got, source=peer, tag=MPI.ANY_TAG, status=st)
            comm.Send(mine, dest=peer, tag=n % 1000)
        want = (np.arange(n, dtype=np.int64) * 7 + n + peer).astype(np.uint8)
        ok.append(bool((got[:n] == want).all() and (got[n:] == 0xEE).all()) and st.Get_source() == peer
                  and st.Get_tag() == n % 1000 and st.Get_count(MPI.BYTE) == n)
    res["pingpong"] = ok

    # 2. tags out of order (the second Recv must find the first message in the unexpected queue), then a
    #    receive while an Irecv is posted, then ANY_SOURCE
    a, b = np.zeros(4, np.int32), np.zeros(4, np.int32)
    if rank == 0:
        comm.Send(np.full(4, 5, np.int32), dest=1, tag=5)
        comm.Send(np.full(4, 3, np.int32), dest=1, tag=3)
        comm.Send(np.full(4, 6, np.int32), dest=1, tag=6)
        comm.Send(np.full(4, 7, np.int32), dest=1, tag=7)
        comm.Send(np.full(4, 8, np.int32), dest=1, tag=8)
    else:
        comm.Recv(a, source=0, tag=3)
        comm.Recv(b, source=0, tag=5)
        res["tags"] = [int(a[0]), int(b[0])]
        req = comm.Irecv(a, source=0, tag=7)
        comm.Recv(b, source=0, tag=6)
        req.Wait()
        c = np.zeros(4, np.int32)
        comm.Recv(c, source=MPI.ANY_SOURCE, tag=MPI.ANY_TAG, status=st)
        res["posted"] = [int(a[0]), int(b[0]), int(c[0]), st.Get_source(), st.Get_tag()]

    # 3. truncation fails that receive only; traffic goes on
    if rank == 0:
        comm.Send(np.ones(16, np.uint8), dest=1, tag=1)
        comm.Send(np.full(4, 9, np.uint8), dest=1, tag=1)
    else:
        try:
            comm.Recv(np.zeros(8, np.uint8), source=0, tag=1)
            res["truncate"] = "no error"
        except MPI.Exception as exc:
            res["truncate"] = exc.Get_error_class() == MPI.ERR_TRUNCATE
        small = np.zeros(4, np.uint8)
        comm.Recv(small, source=0, tag=1)
        res["after_truncate"] = small.tolist()

    # 4. a flood that fills the ring (the sender waits for room while the receiver does not read), then
    #    mixed with pickles, synchronous sends and other buffer types, all received in order. Only plain
    #    64-byte records come first (twice the ring: the receiver may have drained some before it
    #    stopped reading), so the first thing the sender can block on is room.
    fill = 2 * shm.RING_DATA // 64
    count = fill + 4000

    def plain(i: int) -> bool:
        return i < fill or all(i % m for m in (997, 991, 983))

    if rank == 0:
        for i in range(count):
            if plain(i):
                comm.Send(np.full(16, i % 251, np.uint8), dest=1, tag=2)
            elif i % 997 == 0:
                comm.send({"i": i}, dest=1, tag=2)
            elif i % 991 == 0:
                comm.Ssend(np.full(16, i % 251, np.uint8), dest=1, tag=2)
            else:
                comm.Send(bytearray([i % 251]) * 16, dest=1, tag=2)
    else:
        blocked(fabric, 0, "for room in a full ring")
        ring = fabric.consumer_of[0]
        words = fabric.inbox.words
        res["flood_full"] = int(words[ring.head_i] - words[ring.tail_i]) > shm.RING_DATA - 64
        bad = []
        buf = np.zeros(16, np.uint8)
        for i in range(count):
            if not plain(i) and i % 997 == 0:
                if comm.recv(source=0, tag=2) != {"i": i}:
                    bad.append(i)
                continue
            target: Any = bytearray(16) if i % 13 == 0 else buf
            comm.Recv(target, source=0, tag=2)
            if bytes(target) != bytes([i % 251]) * 16:
                bad.append(i)
        res["flood_bad"] = bad

    # 5. pickles: small (C), mid-sized (in place, recv_direct), with arrays out of band, past the eager
    #    limit (rendezvous); tags out of order; status
    objs = [None, 1, "x" * 100, {"a": np.arange(3)}, list(range(2000)), np.arange(1000, dtype=np.float64),
            {"big": np.ones(100_000)}, b"y" * 70_000]
    if rank == 0:
        comm.send("second", dest=1, tag=12)
        comm.send("first", dest=1, tag=11)
        for i, o in enumerate(objs):
            comm.send(o, dest=1, tag=20 + i)  # the last two wait for their receive (rendezvous)
    else:
        first, second = comm.recv(source=0, tag=11), comm.recv(source=0, tag=12)
        same, tags = [], []
        for i, o in enumerate(objs):
            got = comm.recv(source=0, tag=MPI.ANY_TAG, status=st)
            tags.append(st.Get_tag())
            if isinstance(o, np.ndarray):
                same.append(bool((got == o).all()))
            elif isinstance(o, dict) and isinstance(o.get("a", o.get("big")), np.ndarray):
                same.append(all(bool((got[k] == v).all()) for k, v in o.items()))
            else:
                same.append(got == o)
        res["pickles"] = [first, second, same, tags]

    # 6. a receiver that has gone to sleep is woken by a fast send (and keeps working after). Its "ready"
    #    comes first: after it, the only wait that sets its sleeping flag is the Recv of tag 4.
    got = np.zeros(8, np.float64)
    if rank == 0:
        comm.Recv(np.zeros(1, np.uint8), source=1, tag=40)
        blocked(fabric, 1, "in its Recv")
        comm.Send(np.full(8, 2.5), dest=1, tag=4)
        comm.Recv(got, source=1, tag=4)
    else:
        comm.Send(np.zeros(1, np.uint8), dest=0, tag=40)
        comm.Recv(got, source=0, tag=4)
        comm.Send(got * 2, dest=0, tag=4)
    res["woken"] = float(got[0])

    # 7. rendezvous (past shm.RNDV_FROM): the C send (send_rndv) and receive (recv_buf copies and ACKs),
    #    and each against the general path: a posted receive of another tag, an Isend, a sleeping
    #    receiver (the sender's spin runs out), truncation; status throughout
    rv: list[Any] = []
    for n in (16 * 1024 + 1, 65536, 1 << 20, 4 << 20):
        mine = np.full(n, (n + rank) % 251, np.uint8)
        mine[-1] = 7
        got = np.zeros(n + 3, np.uint8)
        if rank == 0:
            comm.Send(mine, dest=1, tag=30)
            comm.Recv(got, source=1, tag=MPI.ANY_TAG, status=st)
        else:
            comm.Recv(got, source=0, tag=MPI.ANY_TAG, status=st)
            comm.Send(mine, dest=0, tag=31)
        rv.append(bool((got[:n - 1] == (n + peer) % 251).all() and got[n - 1] == 7 and not got[n:].any())
                  and st.Get_tag() == 30 + peer and st.Get_count(MPI.BYTE) == n)
    big = np.arange(1 << 20, dtype=np.uint8)
    if rank == 0:
        comm.Send(big, dest=1, tag=33)  # while rank 1 has an Irecv of tag 34 posted: the general path
        comm.Send(big[::-1].copy(), dest=1, tag=34)
        comm.Isend(big, dest=1, tag=35).Wait()  # the general send, read by the C receive
        comm.Recv(np.zeros(1, np.uint8), source=1, tag=39)
        blocked(fabric, 1, "waiting for the ACK of its rendezvous")  # its spin for the ACK ran out
        comm.Recv(got[:1 << 20], source=1, tag=36)
        rv.append(bool((got[:1 << 20] == big).all()))
        comm.Send(big, dest=1, tag=37)  # into a receive buffer too small
        comm.Send(np.full(4, 9, np.uint8), dest=1, tag=38)
    else:
        a, b, c = np.zeros(1 << 20, np.uint8), np.zeros(1 << 20, np.uint8), np.zeros(1 << 20, np.uint8)
        req = comm.Irecv(b, source=0, tag=34)
        comm.Recv(a, source=0, tag=33)
        req.Wait()
        comm.Recv(c, source=0, tag=35, status=st)
        rv.append(bool((a == big).all() and (b == big[::-1]).all() and (c == big).all())
                  and st.Get_count(MPI.BYTE) == 1 << 20)
        comm.Send(np.zeros(1, np.uint8), dest=0, tag=39)  # ready: its next wait is for tag 36's ACK
        comm.Send(big, dest=0, tag=36)
        try:
            comm.Recv(np.zeros(1000, np.uint8), source=0, tag=37)
            rv.append("no error")
        except MPI.Exception as exc:
            rv.append(exc.Get_error_class() == MPI.ERR_TRUNCATE)
        small = np.zeros(4, np.uint8)
        comm.Recv(small, source=0, tag=38)
        rv.append(small.tolist() == [9] * 4)
    res["rendezvous"] = rv
    comm.Barrier()
    return res


def test_buffer_send_recv_semantics(mode_client: tuple[str, granny.Client]) -> None:
    mode, client = mode_client
    r0, r1 = client.run_mpi(workout, n=2, timeout=120)
    assert r0["fast"] is r1["fast"] is (mode == "fast")
    assert all(r0["pingpong"]) and all(r1["pingpong"]), (r0["pingpong"], r1["pingpong"])
    assert r1["tags"] == [3, 5]
    assert r1["posted"] == [7, 6, 8, 0, 8]
    assert r1["truncate"] is True and r1["after_truncate"] == [9, 9, 9, 9]
    assert r1["flood_full"] is True and r1["flood_bad"] == []
    assert r0["woken"] == 5.0 and r1["woken"] == 2.5
    assert r1["pickles"] == ["first", "second", [True] * 8, list(range(20, 28))]
    assert r0["rendezvous"] == [True] * 5, r0["rendezvous"]
    assert r1["rendezvous"] == [True] * 7, r1["rendezvous"]


def ping(comm: Any, rounds: int) -> float:
    """A few thousand 8-byte round trips (correctness only; the timing is not asserted)."""
    rank, peer = comm.rank, 1 - comm.rank
    s, r = np.full(8, rank, np.uint8), np.empty(8, np.uint8)
    t0 = time.perf_counter()
    for _ in range(rounds):
        if rank == 0:
            comm.Send(s, dest=peer, tag=1)
            comm.Recv(r, source=peer, tag=1)
        else:
            comm.Recv(r, source=peer, tag=1)
            comm.Send(s, dest=peer, tag=1)
        assert r[0] == peer
    return (time.perf_counter() - t0) / rounds / 2


def test_ping_pong(mode_client: tuple[str, granny.Client]) -> None:
    _, client = mode_client
    one_way = client.run_mpi(ping, n=2, args=(5000,), timeout=60)
    assert all(t > 0 for t in one_way)
    if os.environ.get("GRANNY_TEST_VERBOSE"):
        print(f"{mode_client[0]}: {one_way[0] * 1e6:.2f} µs one-way")
