"""One-sided rows of the MPI benchmark (``mpi_bench.py`` calls ``measure`` inside its rank program).

Runs under granny's shim and under mpi4py + Open MPI alike. A window of ``Win.Allocate`` (Open MPI's
``osc/sm`` on one host; granny's shared segment). Rank 0 is the origin and rank 1 the target; any
other ranks take part in the fences only. Times are per operation including its synchronisation:

* ``Put``/``Get`` of 8 B followed by a ``Fence`` (all ranks fence)
* ``Lock(1)``, ``Put``/``Get`` of 8 B, ``Unlock(1)`` (passive target: only rank 0 acts)
"""

from __future__ import annotations

from typing import Any


def measure(MPI: Any, comm: Any, loop: Any, put: Any) -> None:  # the module's own name
    import numpy as np

    rank = comm.Get_rank()
    win = MPI.Win.Allocate(64, 8, comm=comm)
    np.frombuffer(win.tomemory(), dtype=np.uint8)[:] = 0
    buf = np.ones(1, dtype=np.float64)
    win.Fence()

    def put_fence() -> None:
        if rank == 0:
            win.Put(buf, 1, 0)
        win.Fence()

    def get_fence() -> None:
        if rank == 0:
            win.Get(buf, 1, 0)
        win.Fence()

    def put_lock() -> None:
        if rank == 0:
            win.Lock(1)
            win.Put(buf, 1, 0)
            win.Unlock(1)

    def get_lock() -> None:
        if rank == 0:
            win.Lock(1)
            win.Get(buf, 1, 0)
            win.Unlock(1)

    comm.Barrier()
    put("Put_8B_fence_s", loop(put_fence, 5000, 50))
    put("Get_8B_fence_s", loop(get_fence, 5000, 50))
    win.Fence()
    comm.Barrier()
    put("Put_8B_lock_s", loop(put_lock, 5000, 50))
    put("Get_8B_lock_s", loop(get_lock, 5000, 50))
    comm.Barrier()
    win.Free()


def main() -> None:
    """Standalone, at any rank count: ``granny run -n 4 benchmarks/_rma_bench.py`` or
    ``mpirun -n 4 PEERS_PY benchmarks/_rma_bench.py``; rank 0 prints the medians in µs."""
    import time

    import numpy as np
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    res: dict[str, float] = {}

    def loop(body: Any, iters: int, warm: int) -> float:
        for _ in range(warm):
            body()
        samples = []
        for _ in range(iters):
            t0 = time.perf_counter()
            body()
            samples.append(time.perf_counter() - t0)
        return float(np.median(samples))

    measure(MPI, comm, loop, res.__setitem__)
    if comm.Get_rank() == 0:
        lib = MPI.Get_library_version().replace("\0", "").strip().splitlines()[0]
        print(f"{lib[:40]} n={comm.Get_size()}: " + ", ".join(f"{k} {v * 1e6:.2f} us" for k, v in res.items()))


if __name__ == "__main__":
    main()
