"""The workload kernels of the live replay (``granny experiment run --mode testbed``) and of its calibration.

Both stand for the original's jobs at a size a 2-core machine shared with other work can run: their
"compute" is ``time.sleep``, so that the makespan is decided by placement, queueing and the
network, as on the original's 8-core VMs, and not by a dozen processes fighting over two cores.
Their communication is real, over the testbed's shaped links.

- :func:`mpi_job` (an MPI world, for the mpi-* traces): ``steps`` steps; each sleeps its share of
  the job's work (``serial + work / n`` seconds over the whole run: strong scaling, as LAMMPS on a
  fixed problem) and then does an all-to-all of ``nbytes`` per pair of ranks, so that a rank pays
  for every partner on another host (the runtime model's ``links``); ``rounds`` all-to-alls a step
  make it network-bound (the mpi-locality traces' LAMMPS) rather than compute-bound (mpi-migrate's).
  With ``every`` > 0 it reaches
  a migration point every ``every`` steps (granny-migrate), carrying its state along.
- :func:`omp_job` (an OpenMP-style job, for the omp-elastic traces): one granule (thread 0) that
  runs ``regions`` fork-join regions of :func:`granny.parallel_for` over a team of ``threads``
  (the other threads are granules leased once, as a gang: ``granny.parallel``); each region's body
  sleeps its share and writes its block of a shared array of ``nbytes``, which a member on another
  host ships back as dirty pages at the join.
- :func:`omp_elastic_job` (the same, under granny-elastic): the team is elastic
  (``parallel_for(elastic=True)``): it keeps its ``threads`` and, at each fork, grows into its host's
  free slots or gives back what the planner asks for. A region's work is ``ITEMS`` items of
  ``work / regions / ITEMS`` seconds, split in blocks over whoever is in the team at that fork, so
  it runs ``serial / regions + work / regions / n`` seconds on ``n`` threads: the same as
  :func:`omp_job` on a team of ``n``, which the runtime model was fitted on.

- :func:`fn2`, :func:`fn5`, :func:`fn10`, :func:`fn20` (the dfaas traces' function calls, one slot
  each): sleep the call's (scaled) seconds. One function per kind, so that the planner keeps one
  runtime estimate per kind, as the simulator's driver does (its calls' key is their kind).

They import granny inside, since they run in granules (pickled by reference to this module).
"""

from __future__ import annotations

from typing import Any

from ..config import ENV_HOST_ID, env


def mpi_job(comm: Any, steps: int, serial: float, work: float, nbytes: int, every: int,
            rounds: int = 1) -> dict[str, Any]:
    """One rank of the MPI kernel; returns its host at each step (a moved rank's list carries on)."""
    import numpy as np

    n = comm.Get_size()
    step_s = (serial + work / n) / steps
    per_pair = max(8, nbytes // 8 * 8)
    buf = np.full(per_pair // 8 * n, float(comm.Get_rank()))
    return _mpi_steps(comm, 0, steps, step_s, every, buf, [], rounds)


def _mpi_steps(comm: Any, start: int, steps: int, step_s: float, every: int, buf: Any,
               hosts: list[str], rounds: int = 1) -> dict[str, Any]:
    import time

    import numpy as np

    import granny

    recv = np.empty_like(buf)
    for step in range(start, steps):
        time.sleep(step_s)
        for _ in range(rounds if comm.Get_size() > 1 else 0):
            comm.Alltoall(buf, recv)
        hosts.append(env(ENV_HOST_ID))
        if every > 0 and (step + 1) % every == 0 and step + 1 < steps:
            granny.migration_point(_mpi_steps, comm, step + 1, steps, step_s, every, buf, hosts, rounds)
    return {"hosts": hosts, "checksum": float(recv.sum())}


def omp_job(threads: int, regions: int, serial: float, work: float, nbytes: int) -> dict[str, Any]:
    """The OpenMP-style kernel: thread 0 runs here, the team is leased by ``granny.parallel``."""
    import time

    import granny
    from granny.parallel import close_teams

    started = time.time()
    data = granny.shared_array((max(threads, nbytes // 8),), "float64", fill=0.0)
    meta = granny.shared_array((3,), "float64", fill=0.0)  # the region's number, its seconds, the team's size
    meta.array[1:] = ((serial + work / threads) / regions, threads)
    try:
        for r in range(regions):
            meta.array[0] = r
            granny.parallel_for(threads, _omp_body, shared={"data": data, "region": meta}, num_threads=threads)
        checksum = float(data.array.sum())
    finally:
        close_teams()  # the team's granules go back at once, not when this process ends
        data.unlink()
        meta.unlink()
    return {"host": env(ENV_HOST_ID), "seconds": time.time() - started,
            "checksum": checksum}


def _omp_body(i: int, data: Any, region: Any) -> None:
    import time

    r, region_s, threads = float(region[0]), float(region[1]), int(region[2])
    time.sleep(region_s)
    lo, hi = i * len(data) // threads, (i + 1) * len(data) // threads
    data[lo:hi] = r + i  # this thread's block: a member on another host ships its pages back at the join


ITEMS = 840  # items of a region's work: divisible by every team size up to 8, and by 10, 12, 14, 15...


def omp_elastic_job(threads: int, regions: int, serial: float, work: float, nbytes: int) -> dict[str, Any]:
    """The OpenMP-style kernel with an elastic team; returns, besides, the team's size at each region."""
    import time

    import granny
    from granny.parallel import close_teams
    from granny.parallel import team as current_team

    started = time.time()
    data = granny.shared_array((max(ITEMS, nbytes // 8),), "float64", fill=0.0)
    meta = granny.shared_array((2,), "float64", fill=0.0)  # the region's number, an item's seconds
    meta.array[1] = work / regions / ITEMS
    sizes: list[int] = []
    closing = 0.0
    try:
        for r in range(regions):
            meta.array[0] = r
            granny.parallel_for(ITEMS, _omp_items, shared={"data": data, "region": meta}, chunked=True,
                                elastic=True, num_threads=threads)
            sizes.append(current_team(threads, elastic=True).board.nthreads)
            # Thread 0's serial part of the region, after it: the team is leased at once, as omp_job's
            # (a later lease lets another job's thread 0 take the slots the team would have had).
            time.sleep(serial / regions)
        checksum = float(data.array.sum())
    finally:
        closing = time.time()  # the team's leases end from here on: the job's end, not a give-back
        close_teams()
        data.unlink()
        meta.unlink()
    return {"host": env(ENV_HOST_ID), "seconds": time.time() - started, "checksum": checksum, "sizes": sizes,
            "closing": closing}


def _omp_items(items: range, data: Any, region: Any) -> None:
    import time

    time.sleep(len(items) * float(region[1]))
    lo, hi = items.start * len(data) // ITEMS, items.stop * len(data) // ITEMS
    data[lo:hi] = float(region[0])  # this thread's block: a member on another host ships its pages back


def _call(seconds: float) -> float:
    import time

    time.sleep(seconds)
    return seconds


def fn2(seconds: float) -> float:
    return _call(seconds)


def fn5(seconds: float) -> float:
    return _call(seconds)


def fn10(seconds: float) -> float:
    return _call(seconds)


def fn20(seconds: float) -> float:
    return _call(seconds)


CALLS = {"fn2": fn2, "fn5": fn5, "fn10": fn10, "fn20": fn20}  # the kinds of sim/dfaas.py's FUNCTIONS
