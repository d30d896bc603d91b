"""Computes pi by the midpoint rule on 4/(1+x^2), split over the ranks; checks the result.

    granny run -n 4 examples/mpi/pi.py [N]          # N intervals, default 10_000_000
    mpirun -n 4 python examples/mpi/pi.py [N]

Uses the object API (bcast of an int) and the buffer API (Reduce of a float64 array).
"""

import math
import sys

import numpy as np
from mpi4py import MPI

comm = MPI.COMM_WORLD
rank, size = comm.Get_rank(), comm.Get_size()

n = comm.bcast(int(sys.argv[1]) if rank == 0 and len(sys.argv) > 1 else 10_000_000, root=0)
t0 = MPI.Wtime()
h = 1.0 / n
# this rank's share of the intervals: i = rank, rank + size, ... (strided, balanced)
x = h * (np.arange(rank, n, size, dtype=np.float64) + 0.5)
local = np.array([np.sum(4.0 / (1.0 + x * x)) * h])
total = np.zeros(1)
comm.Reduce(local, total, op=MPI.SUM, root=0)
if rank == 0:
    pi = float(total[0])
    err = abs(pi - math.pi)
    print(f"pi ~= {pi:.15f}, error {err:.2e}, {n:,} intervals on {size} ranks in {MPI.Wtime() - t0:.3f} s")
    if err > 1e-8:
        sys.exit(f"error too large: {err}")
