"""Hello from every rank.

    granny run -n 4 examples/mpi/hello.py
    mpirun -n 4 python examples/mpi/hello.py        # the same file under Open MPI + mpi4py
"""

from mpi4py import MPI

comm = MPI.COMM_WORLD
print(f"hello from rank {comm.Get_rank()} of {comm.Get_size()} on {MPI.Get_processor_name()}", flush=True)
