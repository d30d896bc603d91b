"""A program checking the buffer collectives of a world that spans hosts against numpy, shared by the
local two-worker test (tests/integration/test_mpi_shmhosts.py) and the namespace testbed one
(tests/dist/test_testbed_mpi.py). A factory returning a closure, so that it is pickled by value and the
namespaced hosts need not import the tests package."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def span_program() -> Callable[[Any], dict[str, Any]]:
    def program(comm: Any) -> dict[str, Any]:
        import os

        import numpy as np
        from mpi4py import MPI

        bad: list[str] = []

        def check(name: str, got: Any, want: Any) -> None:
            if not np.array_equal(np.asarray(got), np.asarray(want)):
                bad.append(f"{name}: got {np.asarray(got).ravel()[:6]} want {np.asarray(want).ravel()[:6]}")

        def matmul(a: Any, b: Any, dt: Any) -> None:  # b = a @ b per 2x2 matrix: associative, not commutative
            x, y = np.frombuffer(a, np.int64).reshape(-1, 2, 2), np.frombuffer(b, np.int64).reshape(-1, 2, 2)
            y[...] = x @ y

        matop = MPI.Op.Create(matmul, commute=False)

        def mats(r: int, k: int) -> Any:  # k matrices of rank r: [[r+1+j, 1], [1, 0]] (no two commute)
            m = np.zeros((k, 2, 2), np.int64)
            m[:, 0, 0], m[:, 0, 1], m[:, 1, 0] = r + 1 + np.arange(k) % 3, 1, 1
            return m

        def run(c: Any, tag: str) -> None:
            rank, size = c.rank, c.size
            for n in (1, 7, 1000, 2048, 5000):  # 2048 int64 fill a region slot exactly; 5000 do not fit
                inputs = [np.arange(n, dtype=np.int64) * (r + 1) - r for r in range(size)]
                for op, fold in ((MPI.SUM, np.add), (MPI.MAX, np.maximum), (MPI.PROD, np.multiply)):
                    want = inputs[0].copy()
                    for x in inputs[1:]:
                        want = fold(want, x)
                    for root in range(size):
                        out = np.full(n, -7, np.int64)
                        c.Reduce(inputs[rank], out, op=op, root=root)
                        if rank == root:
                            check(f"{tag} Reduce {n} {op.name} root {root}", out, want)
                    out = np.empty(n, np.int64)
                    c.Allreduce(inputs[rank], out, op=op)
                    check(f"{tag} Allreduce {n} {op.name}", out, want)
                root = size - 1
                buf = inputs[rank].copy()
                c.Reduce(MPI.IN_PLACE if rank == root else buf, buf if rank == root else None, op=MPI.SUM,
                         root=root)
                if rank == root:
                    check(f"{tag} Reduce IN_PLACE {n}", buf, sum(inputs))
            for n in (3000, 100_000):  # above a slot: hierarchical (hosts with equal rank counts), else the ring
                inputs = [(np.arange(n, dtype=np.int64) % 1000) * (r + 1) - r for r in range(size)]
                for op, fold in ((MPI.SUM, np.add), (MPI.MAX, np.maximum), (MPI.PROD, np.multiply)):
                    want = inputs[0].copy()
                    for x in inputs[1:]:
                        want = fold(want, x)
                    out = np.empty(n, np.int64)
                    c.Allreduce(inputs[rank], out, op=op)
                    check(f"{tag} Allreduce {n} {op.name}", out, want)
                buf = inputs[rank].copy()
                c.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
                check(f"{tag} Allreduce IN_PLACE {n}", buf, sum(inputs))
                strided = np.zeros((n, 2), np.int64)[:, 0]  # not contiguous: mpi4py refuses, and so must we
                try:
                    c.Allreduce(inputs[rank], strided, op=MPI.SUM)
                    bad.append(f"{tag} Allreduce into a strided array did not raise")
                except (ValueError, BufferError):
                    pass
            for k in (1, 3, 600, 1024, 1500):  # 32 bytes each: 1024 fill a slot, 1500 do not fit
                want = mats(0, k)
                for r in range(1, size):
                    want = want @ mats(r, k)
                for root in range(size):
                    out = np.zeros((k, 2, 2), np.int64)
                    c.Reduce(mats(rank, k), out, op=matop, root=root)
                    if rank == root:
                        check(f"{tag} Reduce non-commutative {k} root {root}", out, want)
                out = np.zeros((k, 2, 2), np.int64)
                c.Allreduce(mats(rank, k), out, op=matop)
                check(f"{tag} Allreduce non-commutative {k}", out, want)
            for blk in (1, 3, 1000, 4096, 6000):  # int32 elements per rank
                every = np.arange(size * blk, dtype=np.int32).reshape(size, blk) * 3 + 1
                for root in range(size):
                    got = np.full((size, blk), -1, np.int32) if rank == root else None
                    c.Gather(every[rank], got, root=root)
                    if rank == root:
                        check(f"{tag} Gather {blk} root {root}", got, every)
                    mine = np.full(blk, -1, np.int32)
                    c.Scatter(every if rank == root else None, mine, root=root)
                    check(f"{tag} Scatter {blk} root {root}", mine, every[rank])
                root = size // 2
                got = np.full((size, blk), -1, np.int32)
                got[rank] = every[rank]
                c.Gather(MPI.IN_PLACE if rank == root else every[rank], got if rank == root else None, root=root)
                if rank == root:
                    check(f"{tag} Gather IN_PLACE {blk}", got, every)
                whole = every.copy() if rank == root else np.zeros((size, blk), np.int32)
                c.Scatter(whole if rank == root else None, MPI.IN_PLACE if rank == root else whole[rank], root=root)
                check(f"{tag} Scatter IN_PLACE {blk}", whole[rank], every[rank])
                got = np.full((size, blk), -1, np.int32)
                c.Allgather(every[rank], got)
                check(f"{tag} Allgather {blk}", got, every)
                got = np.full((size, blk), -1, np.int32)
                got[rank] = every[rank]
                c.Allgather(MPI.IN_PLACE, got)
                check(f"{tag} Allgather IN_PLACE {blk}", got, every)

        hosts = comm.allgather(os.environ["GRANNY_HOST_ID"])
        run(comm, "world")
        # Which small collectives went through this host's region (its sequence number moves; with one
        # rank on the host there is no region)
        coll, used = comm._coll, {}
        small = np.arange(4, dtype=np.int64) + comm.rank
        for name, call in (("Reduce", lambda: comm.Reduce(small, np.empty_like(small), root=1)),
                           ("Reduce non-commutative", lambda: comm.Reduce(mats(comm.rank, 1), mats(0, 1),
                                                                          op=matop, root=0)),
                           ("Allreduce non-commutative", lambda: comm.Allreduce(mats(comm.rank, 1), mats(0, 1),
                                                                                op=matop)),
                           ("Gather", lambda: comm.Gather(small, np.empty((comm.size, 4), np.int64), root=0)),
                           ("Scatter", lambda: comm.Scatter(np.zeros((comm.size, 4), np.int64), small, root=2)),
                           ("Allgather", lambda: comm.Allgather(small, np.empty((comm.size, 4), np.int64))),
                           ("Allreduce large", lambda: comm.Allreduce(np.ones(100_000), np.empty(100_000)))):
            before = coll.seq
            call()
            used[name] = coll.seq > before
        # The same ranks renumbered so that no host holds a contiguous range (0 and 2 on one host, ...):
        # a non-commutative reduction must still come out in the new rank order.
        order = sorted(range(comm.size), key=lambda r: (sorted(set(hosts)).index(hosts[r]), r))
        key = order.index(comm.rank)
        spread = comm.Split(0, key=(key % 2) * comm.size + key)
        run(spread, "interleaved")
        spread.Free()
        matop.Free()
        return {"bad": bad, "hosts": hosts, "kind": type(coll).__name__, "region": coll.reg is not None,
                "used": used, "even": len({hosts.count(h) for h in hosts}) == 1}

    return program
