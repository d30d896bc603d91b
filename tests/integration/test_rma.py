"""One-sided communication (MPI.Win) on real ranks of one host: shared windows, passive-target atomics,
active-target epochs, no shared-memory leftovers, and a clear refusal at a migration point."""

from __future__ import annotations

import glob
from pathlib import Path
from typing import Any

import pytest

import granny


def one_host_program(comm: Any) -> dict[str, Any]:
    import os

    import numpy as np
    from mpi4py import MPI

    rank, size = comm.Get_rank(), comm.Get_size()
    node = comm.Split_type(MPI.COMM_TYPE_SHARED)
    win = MPI.Win.Allocate_shared(8 * (rank + 1), 8, comm=node)
    mine = np.frombuffer(win.tomemory(), dtype=np.float64)
    mine[:] = rank
    win.Fence()
    seen = []
    for r in range(size):  # direct loads from every rank's segment
        mem, unit = win.Shared_query(r)
        seen.append(np.frombuffer(mem, dtype=np.float64).tolist())
    win.Fence()
    win.Free()
    node.Free()

    counter = MPI.Win.Allocate(8, 8, comm=comm)
    np.frombuffer(counter.tomemory(), dtype=np.int64)[:] = 0
    counter.Fence()
    one, old = np.ones(1, dtype=np.int64), np.zeros(1, dtype=np.int64)
    tickets = []
    counter.Lock_all()
    for _ in range(50):  # every increment is atomic: the tickets of all ranks are distinct
        counter.Fetch_and_op(one, old, 0, 0, op=MPI.SUM)
        tickets.append(int(old[0]))
    counter.Unlock_all()
    counter.Fence()
    for _ in range(300):  # a non-atomic read-modify-write, made safe by the exclusive lock alone
        counter.Lock(0, MPI.LOCK_EXCLUSIVE)
        counter.Get(old, 0, 0)
        os.sched_yield()  # invite the other rank in: without the lock it would lose an increment
        counter.Put(old + 1, 0, 0)
        counter.Unlock(0)
    counter.Fence()
    total = int(np.frombuffer(counter.tomemory(), dtype=np.int64)[0]) if rank == 0 else -1
    all_tickets = comm.allgather(tickets)
    counter.Free()

    buf = np.zeros(size, dtype=np.int32)
    win = MPI.Win.Create(buf, 4, comm=comm)  # the program's own memory: CMA between processes
    group = win.Get_group()
    if rank == 0:
        win.Post(group.Excl([0]))
        win.Wait()
    else:
        win.Start(group.Incl([0]))
        win.Put(np.array([rank * 10], dtype=np.int32), 0, rank)
        win.Complete()
    win.Free()
    return {"seen": seen, "total": total, "tickets": sorted(t for ts in all_tickets for t in ts),
            "pscw": buf.tolist()}


@pytest.mark.parametrize("n", [2])
def test_windows_on_one_host(client: granny.Client, n: int) -> None:
    before = set(glob.glob("/dev/shm/granny-*"))
    results = client.run_mpi(one_host_program, n=n, timeout=120)
    for r in results:
        assert r["seen"] == [[float(q)] * (q + 1) for q in range(n)]
        assert r["tickets"] == list(range(50 * n))
    assert results[0]["total"] == (50 + 300) * n
    assert results[0]["pscw"] == [0] + [q * 10 for q in range(1, n)]
    assert set(glob.glob("/dev/shm/granny-*")) - before == set()  # window memory is anonymous (memfd)


MIGRATE = '''
import numpy as np
from mpi4py import MPI
import granny

def resume():
    pass

win = MPI.Win.Allocate(64, comm=MPI.COMM_WORLD)
win.Set_name("halo")
granny.migration_point(resume)
'''


def test_a_migration_point_with_an_open_window_raises(client: granny.Client, tmp_path: Path) -> None:
    script = tmp_path / "win_migrate.py"
    script.write_text(MIGRATE)
    err: list[str] = []
    results = client.run_script(str(script), 2, [], mpi=True,
                                on_log=lambda m: err.append(m.data) if m.stream == "stderr" else None)
    assert [r.status.value for r in results] != ["ok"] * 2
    text = "".join(err)
    assert "MpiError: migration point with 1 open MPI.Win window(s) ('halo')" in text, text
