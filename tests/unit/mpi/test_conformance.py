"""Arguments granny used to accept and mpi4py (4.1.2 on Open MPI) rejects, and the ones both accept: each case
was run against the real mpi4py first. World of one (what granny.mpi is outside a granule)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from granny.errors import MpiError
from granny.mpi import api as MPI

C = MPI.COMM_WORLD


def cart() -> Any:
    return C.Create_cart([1])


REJECTED: dict[str, tuple[type[Exception], Callable[[], Any]]] = {
    "Create_cart float dims": (TypeError, lambda: C.Create_cart([1.0])),
    "Create_cart numpy float dims": (TypeError, lambda: C.Create_cart(np.array([1.0]))),
    "Create_cart str dims": (TypeError, lambda: C.Create_cart(["1"])),
    "Create_cart float periods": (TypeError, lambda: C.Create_cart([1], periods=[1.0])),
    "Create_cart numpy bool periods": (TypeError, lambda: C.Create_cart([1], periods=[np.bool_(True)])),
    "Cart_map float dims": (TypeError, lambda: C.Cart_map([1.0])),
    "Compute_dims float dims": (TypeError, lambda: MPI.Compute_dims(1, [0.0])),
    "Compute_dims float ndims": (TypeError, lambda: MPI.Compute_dims(4, 2.0)),
    "Compute_dims no nodes": (MpiError, lambda: MPI.Compute_dims(0, 1)),
    "Compute_dims negative nodes": (MpiError, lambda: MPI.Compute_dims(-1, 1)),
    "Get_cart_rank float": (TypeError, lambda: cart().Get_cart_rank([0.0])),
    "Get_cart_rank too long": (ValueError, lambda: cart().Get_cart_rank([0, 0])),
    "Sub float": (TypeError, lambda: cart().Sub([1.0])),
    "Send to a str rank": (TypeError, lambda: C.Send(np.zeros(1), "0")),
    "recv from a str rank": (TypeError, lambda: C.recv(source="0")),
    "bcast str root": (TypeError, lambda: C.bcast(1, root="0")),
    "Split str color": (TypeError, lambda: C.Split("a", 0)),
    "Split None color": (TypeError, lambda: C.Split(None, 0)),
    "Split str key": (TypeError, lambda: C.Split(0, "0")),
    "Group.Incl float": (TypeError, lambda: C.Get_group().Incl([0.0])),
    "Group.Excl float": (TypeError, lambda: C.Get_group().Excl([0.0])),
    "Group.Incl out of range": (MpiError, lambda: C.Get_group().Incl([5])),
    "Group.Excl out of range": (MpiError, lambda: C.Get_group().Excl([5])),
    "Group.Incl twice": (MpiError, lambda: C.Get_group().Incl([0, 0])),
    "Allreduce op None": (TypeError, lambda: C.Allreduce(np.ones(1), np.ones(1), op=None)),
    "Allreduce op str": (TypeError, lambda: C.Allreduce(np.ones(1), np.ones(1), op="sum")),
    "Reduce op None": (TypeError, lambda: C.Reduce(np.ones(1), np.ones(1), op=None)),
    "Scan op None": (TypeError, lambda: C.Scan(np.ones(1), np.ones(1), op=None)),
    "Exscan op None": (TypeError, lambda: C.Exscan(np.ones(1), np.ones(1), op=None)),
    "Reduce_scatter_block op None": (TypeError, lambda: C.Reduce_scatter_block(np.ones(1), np.ones(1), op=None)),
    "Set_name int": (TypeError, lambda: C.Set_name(5)),
    "Set_name None": (TypeError, lambda: C.Set_name(None)),
    "Dup with a non-Info": (TypeError, lambda: C.Dup(5)),
    "Attach_buffer float": (TypeError, lambda: MPI.Attach_buffer(8.0)),
    "Waitall of a float": (TypeError, lambda: MPI.Request.Waitall([1.0])),
    "Testall of None": (TypeError, lambda: MPI.Request.Testall([None])),
    "Waitany of a float": (TypeError, lambda: MPI.Request.Waitany([1.0])),
    "Status.Set_source str": (TypeError, lambda: MPI.Status().Set_source("1")),
}

ACCEPTED: dict[str, Callable[[], Any]] = {
    "Create_cart numpy int dims": lambda: C.Create_cart([np.int64(1)]),
    "Create_cart bool dims and periods": lambda: C.Create_cart([True], periods=[True]),
    "Create_cart scalar periods": lambda: C.Create_cart([1], periods=True),
    "Compute_dims float nodes": lambda: MPI.Compute_dims(4.5, 2),
    "send to a float rank": lambda: (C.send(1, dest=0.0), C.recv(source=0)),
    "Send a float tag": lambda: (C.Send(np.zeros(1), 0, tag=1.0), C.Recv(np.zeros(1), 0, tag=1)),
    "bcast float root": lambda: C.bcast(1, root=0.0),
    "Bcast float root": lambda: C.Bcast(np.zeros(1), root=0.0),
    "scatter float root": lambda: C.scatter([1], root=0.0),
    "Split float color and key": lambda: C.Split(1.0, 0.0),
    "Shift float direction": lambda: cart().Shift(0.0, 1),
    "Get_coords float rank": lambda: cart().Get_coords(0.0),
    "Get_cart_rank numpy int": lambda: cart().Get_cart_rank([np.int32(0)]),
    "Sub bool": lambda: cart().Sub([True]),
    "allreduce op None": lambda: C.allreduce(1, op=None),
    "Set_name bytes": lambda: C.Set_name(b"x"),
    "Dup INFO_NULL": lambda: C.Dup(MPI.INFO_NULL),
    "Status.Set_source float": lambda: MPI.Status().Set_source(1.0),
}


@pytest.mark.parametrize("name", sorted(REJECTED))
def test_granny_rejects_what_mpi4py_rejects(name: str) -> None:
    exc, call = REJECTED[name]
    with pytest.raises(exc):
        call()


@pytest.mark.parametrize("name", sorted(ACCEPTED))
def test_granny_accepts_what_mpi4py_accepts(name: str) -> None:
    ACCEPTED[name]()


def test_set_name_keeps_a_str() -> None:
    dup = C.Dup()
    dup.Set_name(b"bytes name")
    assert dup.Get_name() == "bytes name"
    dup.Free()
