"""Communicator handles, persistent and buffered point-to-point, groups and Cartesian topologies, in a
world of one (what ``granny.mpi`` is outside a granule), with mpi4py's semantics."""

from __future__ import annotations

import pickle
import subprocess
import sys
import warnings

import numpy as np
import pytest

from granny.errors import MpiError
from granny.mpi import api as MPI
from granny.mpi import runtime
from granny.mpi.p2p import EAGER_LIMIT


def test_comm_handles_copy_compare_and_free_to_null() -> None:
    null = MPI.Comm()
    assert null == MPI.COMM_NULL and null is not MPI.COMM_NULL and not null
    assert MPI.Intracomm() == MPI.COMM_NULL and MPI.Intercomm() == MPI.COMM_NULL
    with pytest.raises(TypeError):
        MPI.Comm((1, 2, 3))
    copy = MPI.Comm(MPI.COMM_WORLD)
    assert copy == MPI.COMM_WORLD and copy is not MPI.COMM_WORLD
    dup = MPI.COMM_WORLD.Dup()
    assert MPI.Comm.Compare(MPI.COMM_WORLD, dup) == MPI.CONGRUENT
    assert MPI.COMM_WORLD.Compare(MPI.COMM_WORLD) == MPI.IDENT
    dup.Free()
    assert dup == MPI.COMM_NULL and not dup
    for predefined in (MPI.COMM_WORLD, MPI.COMM_SELF, MPI.COMM_NULL):
        with pytest.raises(MpiError):
            predefined.Free()


def test_predefined_comms_pickle_by_name_others_refuse() -> None:
    assert pickle.loads(pickle.dumps(MPI.COMM_WORLD)) is MPI.COMM_WORLD
    assert pickle.loads(pickle.dumps(MPI.COMM_SELF)) is MPI.COMM_SELF
    assert pickle.loads(pickle.dumps(MPI.COMM_NULL)) is MPI.COMM_NULL
    other = pickle.loads(pickle.dumps(MPI.Intracomm(MPI.COMM_SELF)))
    assert other == MPI.COMM_SELF and other is not MPI.COMM_SELF
    dup = MPI.COMM_SELF.Dup()
    with pytest.raises(ValueError):
        pickle.dumps(dup)
    dup.Free()


def test_a_pickled_comm_world_starts_mpi_where_it_is_loaded() -> None:
    """comm.py cannot import api.py (issue 17): the pickle names api's restore function, so loading it in a
    process that has not imported the MPI namespace imports it, and gets that process's COMM_WORLD."""
    code = ("import pickle, sys; w = pickle.loads(sys.stdin.buffer.read()); "
            "from granny.mpi import api; print(w is api.COMM_WORLD)")
    out = subprocess.run([sys.executable, "-c", code], input=pickle.dumps(MPI.COMM_WORLD), capture_output=True,
                         check=True, timeout=60)
    assert out.stdout.strip() == b"True", out.stderr


def test_missing_calls_raise_not_implemented_and_hide_from_hasattr() -> None:
    assert not hasattr(MPI.Comm, "Spawn") and not hasattr(MPI.COMM_WORLD, "Create_intercomm")
    with pytest.raises(NotImplementedError, match="Get_parent"):
        MPI.Comm.Get_parent()  # type: ignore[attr-defined]
    with pytest.raises(NotImplementedError, match="Isendrecv"):
        MPI.COMM_SELF.Isendrecv(b"", 0)
    with pytest.raises(NotImplementedError):
        MPI.Intercomm(MPI.COMM_WORLD)


def test_groups_free_to_group_null() -> None:
    group = MPI.COMM_WORLD.Get_group()
    assert group.Get_rank() == MPI.COMM_WORLD.Get_rank() and group.Get_size() == 1
    assert MPI.GROUP_EMPTY != MPI.GROUP_NULL
    group.Free()
    assert group == MPI.GROUP_NULL


def test_create_group_idup_and_lock_table() -> None:
    comm = MPI.COMM_SELF.Create_group(MPI.COMM_SELF.Get_group())
    assert MPI.Comm.Compare(MPI.COMM_SELF, comm) == MPI.CONGRUENT
    comm.Free()
    comm, req = MPI.COMM_WORLD.Idup()
    req.Wait()
    assert MPI.Comm.Compare(MPI.COMM_WORLD, comm) == MPI.CONGRUENT
    table = MPI._comm_lock_table(comm)
    assert "bcast" not in table
    assert comm.bcast(7) == 7 and "bcast" in table
    comm.Free()


def test_object_receive_of_buffer_messages_and_deprecated_buf() -> None:
    comm = MPI.COMM_SELF
    req = comm.Isend([None, 0, "B"], 0)
    assert comm.recv(None, 0) is None
    req.Wait()
    data = pickle.dumps({"a": 1})
    req = comm.Isend([data, "B"], 0)
    assert comm.recv(None, 0) == {"a": 1}
    req.Wait()
    comm.isend("x", 0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(UserWarning):
            comm.recv(bytearray(8), MPI.PROC_NULL)
        warnings.simplefilter("ignore")
        assert comm.recv(64, 0) == "x"


def test_buffered_sends_do_not_wait_for_the_receiver() -> None:
    comm = MPI.COMM_SELF
    MPI.Attach_buffer(bytearray(1 << 20))
    big = np.arange(EAGER_LIMIT, dtype=np.int32)
    comm.Bsend(big, 0, 5)
    comm.Ibsend(big, 0, 6).Wait()
    comm.bsend("obj", 0, 7)
    out = np.empty_like(big)
    comm.Recv(out, 0, 6)
    assert (out == big).all()
    comm.Recv(out, 0, 5)
    assert (out == big).all()
    assert comm.recv(None, 0, 7) == "obj"
    assert MPI.Detach_buffer() is not None


def test_persistent_requests_restart_and_free_to_null() -> None:
    comm = MPI.COMM_SELF
    sbuf, rbuf = np.arange(4, dtype="d"), np.zeros(4)
    sreq, rreq = comm.Send_init(sbuf, 0, 3), comm.Recv_init(rbuf, 0, 3)
    for k in range(3):
        sbuf[:] = k
        MPI.Prequest.Startall([sreq, rreq])
        MPI.Request.Waitall([sreq, rreq])
        assert (rbuf == k).all()
        assert sreq != MPI.REQUEST_NULL and rreq != MPI.REQUEST_NULL and sreq
    copy = MPI.Prequest.fromhandle(sreq.handle)
    assert copy == sreq and type(copy) is MPI.Prequest
    with pytest.raises(TypeError):
        MPI.Grequest(sreq)
    sreq.Free()
    rreq.Free()
    assert sreq == MPI.REQUEST_NULL and rreq == MPI.REQUEST_NULL
    req = comm.Recv_init(None, MPI.PROC_NULL)
    req.Start()
    req.Wait()
    req.Free()


def test_cartesian_topology() -> None:
    comm = MPI.COMM_WORLD
    for ndim in (1, 2, 3):
        dims = MPI.Compute_dims(comm.size, [0] * ndim)
        cart = comm.Create_cart(dims, periods=True)
        assert cart.is_topo and cart.topology == MPI.CART and cart.dims == dims
        assert cart.topo == (dims, [1] * ndim, [0] * ndim)
        assert cart.inoutedges == ([0] * 2 * ndim, [0] * 2 * ndim) and cart.indegree == 2 * ndim
        assert comm.Cart_map(dims, True) == cart.rank
        dup = cart.Dup()
        assert type(dup) is MPI.Cartcomm and dup.dims == dims
        dup.Free()
        if ndim > 1:
            sub = cart.Sub([False] + [True] * (ndim - 1))
            assert sub.dim == ndim - 1
            sub.Free()
        cart.Free()
    line = comm.Create_cart([1], periods=[False])
    assert line.Shift(0, 1) == (MPI.PROC_NULL, MPI.PROC_NULL)
    assert line.inedges == [MPI.PROC_NULL, MPI.PROC_NULL]
    with pytest.raises(ValueError):
        comm.Create_cart([1], [0, 0])
    with pytest.raises(TypeError):
        MPI.Cartcomm(comm)
    empty = comm.Create_cart([])
    assert empty.dims == [] and empty.coords == [] and empty.Get_cart_rank([]) == 0


def test_the_granule_finalizes_a_program_that_did_not(monkeypatch: pytest.MonkeyPatch) -> None:
    """runtime.py is below api.py: MPI.Finalize reaches it through the hook api.py registers on import."""
    monkeypatch.setattr(runtime.get(), "finalized", False)
    runtime.finalize()
    assert MPI.Is_finalized()
