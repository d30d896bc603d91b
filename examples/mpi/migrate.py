"""An all-to-all kernel with a migration point every few iterations.

    granny run -n 4 examples/mpi/migrate.py [iterations] [every] [block_kib]

Each iteration every rank sends a block to every other rank (Alltoall) and folds what it received into
its state. Every ``every`` iterations the ranks reach a migration point: if the planner moves some of
them (say the job started split over two hosts and one host has room now), those ranks carry on from
the next iteration on their new host, and `granny run` prints a line saying so. The result does not
depend on where the ranks ran: the checksum equals that of a run without migration.
"""

import os
import sys

import numpy as np
from mpi4py import MPI

import granny

ITERATIONS = int(sys.argv[1]) if len(sys.argv) > 1 else 40
EVERY = int(sys.argv[2]) if len(sys.argv) > 2 else 10
BLOCK = int(sys.argv[3]) * 128 if len(sys.argv) > 3 else 1024  # float64 per peer (KiB / 8 bytes)


def kernel(start, state):
    """Iterations ``start`` and on; also the function a moved rank resumes with."""
    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    send = np.empty(size * BLOCK)
    recv = np.empty(size * BLOCK)
    for i in range(start, ITERATIONS):
        send[:] = np.repeat(state[:size] * (rank + 1) + i, BLOCK)
        comm.Alltoall(send, recv)
        state += recv.reshape(size, BLOCK).sum(axis=1).mean() * 1e-6
        if (i + 1) % EVERY == 0 and i + 1 < ITERATIONS:
            granny.migration_point(kernel, i + 1, state)  # a moved rank resumes at iteration i + 1
    total = comm.reduce(float(state.sum()), root=0)
    hosts = comm.gather(os.environ.get("GRANNY_HOST_ID", "local"), root=0)
    if rank == 0:
        print(f"checksum {total:.9e}")
        print(f"ended on hosts {sorted(set(hosts))}", file=sys.stderr)


if __name__ == "__main__":
    kernel(0, np.arange(64, dtype=np.float64))
