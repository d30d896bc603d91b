"""A program checking one-sided operations whose target (or origin) datatype is derived and not contiguous
(vector, indexed, subarray in C and Fortran order, resized) against numpy, on ``Allocate`` and ``Create``
windows; shared by tests/integration/test_rma_derived.py (one host, two hosts) and the namespace testbed
(tests/dist/test_testbed_rma.py). A factory returning a closure, so that it is pickled by value. It runs
unchanged under mpi4py on Open MPI (``run_reference`` below), the semantics it checks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def rma_derived_program() -> Callable[[Any], list[str]]:
    def program(comm: Any) -> list[str]:
        import numpy as np
        from mpi4py import MPI

        rank, size = comm.rank, comm.size
        nxt, prv = (rank + 1) % size, (rank - 1) % size
        bad: list[str] = []
        n, disp = 64, 3
        c = np.arange(6 * 8).reshape(6, 8)[1:3, 2:5].ravel()
        f = np.arange(6 * 8).reshape(8, 6)[2:5, 1:3].ravel()  # Fortran (6, 8): element (i, j) at i + 6 j
        types = {
            "vector": (MPI.DOUBLE.Create_vector(4, 2, 5), 1, [0, 1, 5, 6, 10, 11, 15, 16]),
            "hvector": (MPI.DOUBLE.Create_hvector(3, 1, 24), 1, [0, 3, 6]),
            "indexed": (MPI.DOUBLE.Create_indexed([1, 3, 2], [0, 4, 10]), 1, [0, 4, 5, 6, 10, 11]),
            "indexed_block": (MPI.DOUBLE.Create_indexed_block(2, [1, 7]), 1, [1, 2, 7, 8]),
            "subarray C": (MPI.DOUBLE.Create_subarray([6, 8], [2, 3], [1, 2]), 1, c.tolist()),
            "subarray F": (MPI.DOUBLE.Create_subarray([6, 8], [2, 3], [1, 2], order=MPI.ORDER_FORTRAN), 1,
                           f.tolist()),
            "resized x2": (MPI.DOUBLE.Create_vector(2, 1, 3).Create_resized(0, 4 * 8), 2, [0, 3, 4, 7]),
        }
        for t, _, _ in types.values():
            t.Commit()

        def check(name: str, got: Any, want: Any) -> None:
            if not np.array_equal(np.asarray(got), np.asarray(want)):
                bad.append(f"rank {rank} {name}: got {np.asarray(got).tolist()} want {np.asarray(want).tolist()}")

        for flavor in ("allocate", "create"):
            if flavor == "allocate":
                win = MPI.Win.Allocate(8 * n, 8, comm=comm)
                mem = np.frombuffer(win.tomemory(), dtype=np.float64)
            else:
                mem = np.zeros(n)
                win = MPI.Win.Create(mem, 8, comm=comm)
            base = [np.arange(n, dtype=np.float64) + 1000 * r for r in range(size)]
            for name, (t, count, sel) in types.items():
                idx = disp + np.array(sel)
                k = len(sel)
                tag = f"{flavor} {name}"
                # Put into the next rank's window: only the type's elements change
                mem[:] = -1.0
                win.Fence()
                win.Put(np.arange(k, dtype=np.float64) + 100 * rank, nxt, [disp, count, t])
                win.Fence()
                want = np.full(n, -1.0)
                want[idx] = np.arange(k) + 100 * prv
                check(f"{tag} Put", mem, want)
                # Get from the next rank's window
                mem[:] = base[rank]
                win.Fence()
                got = np.zeros(k)
                win.Get(got, nxt, [disp, count, t])
                win.Fence()
                check(f"{tag} Get", got, base[nxt][idx])
                # Accumulate (SUM) from every rank into rank 0, under a shared lock
                win.Lock(0, MPI.LOCK_SHARED)
                win.Accumulate(np.arange(k, dtype=np.float64) * (rank + 1), 0, [disp, count, t], op=MPI.SUM)
                win.Unlock(0)
                comm.Barrier()
                if rank == 0:
                    want = base[0].copy()
                    want[idx] += np.arange(k) * sum(r + 1 for r in range(size))
                    win.Lock(0)
                    check(f"{tag} Accumulate", mem, want)
                    win.Unlock(0)
                comm.Barrier()
                # Get_accumulate (MAX) from the next rank: the old values come back packed
                win.Fence()
                old = np.zeros(k)
                win.Get_accumulate(np.full(k, 5e5), old, nxt, [disp, count, t], op=MPI.MAX)
                win.Fence()
                check(f"{tag} Get_accumulate result", mem[idx], np.full(k, 5e5))
            # a derived origin datatype: eight elements picked out of the origin, put contiguously
            mem[:] = -1.0
            win.Fence()
            src = np.arange(20, dtype=np.float64) + 100 * rank
            vec = types["vector"][0]
            win.Put([src, 1, vec], nxt, [disp, 8, MPI.DOUBLE])
            win.Fence()
            want = np.full(n, -1.0)
            want[disp:disp + 8] = (np.arange(20) + 100 * prv)[[0, 1, 5, 6, 10, 11, 15, 16]]
            check(f"{flavor} Put from a derived origin", mem, want)
            dst = np.full(20, -2.0)
            mem[:] = base[rank]
            win.Fence()
            win.Get([dst, 1, vec], nxt, [disp, 8, MPI.DOUBLE])
            win.Fence()
            want = np.full(20, -2.0)
            want[[0, 1, 5, 6, 10, 11, 15, 16]] = base[nxt][disp:disp + 8]
            check(f"{flavor} Get into a derived origin", dst, want)
            win.Free()
        for t, _, _ in types.values():
            t.Free()
        return bad

    return program


if __name__ == "__main__":  # run_reference: mpirun -n 2 <mpi4py python> tests/rma_derived.py
    from mpi4py import MPI

    problems = rma_derived_program()(MPI.COMM_WORLD)
    print(f"rank {MPI.COMM_WORLD.rank}: {len(problems)} problems", *problems[:5], sep="\n  ")
