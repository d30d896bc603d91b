"""1-D heat equation with a 3-point stencil, the domain split over the ranks, halo exchange by Sendrecv.

    granny run -n 3 examples/mpi/stencil.py [CELLS] [STEPS]      # defaults 1_000_000 cells, 200 steps
    mpirun -n 3 python examples/mpi/stencil.py

Each rank owns a contiguous block with one ghost cell on each side. Every step it swaps its edge cells
with its neighbours (MPI.PROC_NULL at the ends: fixed zero boundaries), then updates in place with
numpy. At the end rank 0 gathers the blocks (Gatherv) and checks them against the same computation
done serially; Allreduce gives the total heat, which must only decrease (heat leaves at the ends).
"""

import sys

import numpy as np
from mpi4py import MPI

comm = MPI.COMM_WORLD
rank, size = comm.Get_rank(), comm.Get_size()
cells = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
steps = int(sys.argv[2]) if len(sys.argv) > 2 else 200
alpha = 0.25


def initial(n):
    x = np.linspace(0.0, 1.0, n)
    return np.exp(-((x - 0.5) ** 2) / 0.01)


def step(u):
    """One explicit step on u (with ghosts u[0], u[-1]); interior u[1:-1] is updated."""
    u[1:-1] = u[1:-1] + alpha * (u[:-2] - 2.0 * u[1:-1] + u[2:])


counts = np.array([cells // size + (1 if r < cells % size else 0) for r in range(size)])
starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
mine = counts[rank]
u = np.zeros(mine + 2)
u[1:-1] = initial(cells)[starts[rank]:starts[rank] + mine]
left = rank - 1 if rank > 0 else MPI.PROC_NULL
right = rank + 1 if rank < size - 1 else MPI.PROC_NULL

heat0 = comm.allreduce(float(u[1:-1].sum()), op=MPI.SUM)
t0 = MPI.Wtime()
for _ in range(steps):
    # send my first cell left, receive my right ghost from the right; and the mirror image
    comm.Sendrecv(u[1:2], dest=left, sendtag=0, recvbuf=u[-1:], source=right, recvtag=0)
    comm.Sendrecv(u[-2:-1], dest=right, sendtag=1, recvbuf=u[0:1], source=left, recvtag=1)
    if left == MPI.PROC_NULL:
        u[0] = 0.0
    if right == MPI.PROC_NULL:
        u[-1] = 0.0
    step(u)
elapsed = comm.reduce(MPI.Wtime() - t0, op=MPI.MAX, root=0)
total = np.zeros(1)
comm.Allreduce(np.array([u[1:-1].sum()]), total, op=MPI.SUM)

full = np.empty(cells) if rank == 0 else None
comm.Gatherv(np.ascontiguousarray(u[1:-1]), [full, counts, starts, MPI.DOUBLE] if rank == 0 else None, root=0)
if rank == 0:
    ref = np.zeros(cells + 2)
    ref[1:-1] = initial(cells)
    for _ in range(steps):
        step(ref)
    err = float(np.max(np.abs(ref[1:-1] - full)))
    print(f"{cells:,} cells, {steps} steps on {size} ranks: {elapsed:.3f} s; heat {heat0:.6g} -> {total[0]:.6g}; "
          f"max |parallel - serial| = {err:.2e}")
    if err > 1e-12 or not total[0] <= heat0 + 1e-9:
        sys.exit("mismatch with the serial computation")
