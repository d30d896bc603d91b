"""Cartesian topologies (``Create_cart``) and ``Compute_dims``.

Graph and distributed-graph topologies are not implemented: ``Graphcomm``/``Distgraphcomm`` exist only
as null handles, so that (as in mpi4py) wrapping a communicator of another topology raises TypeError;
their own calls raise NotImplementedMpi.
"""

from __future__ import annotations

import operator
from typing import Any

from ..errors import MpiError
from .argcheck import as_int, check_length, index_list
from .comm import Comm, Intracomm, _Missing, register_cart
from .p2p import PROC_NULL

CART = 1


class Cartcomm(Intracomm):
    """A communicator whose ranks form a grid, row-major (the last dimension varies fastest)."""

    def __init__(self, comm: Any = None, cid: int | None = None, dims: list[int] | None = None,
                 periods: list[bool] | None = None) -> None:
        if cid is None and comm is not None and not isinstance(comm, Cartcomm):
            raise TypeError(f"expecting a Cartesian communicator, got {type(comm).__name__}")
        super().__init__(comm, cid)
        if cid is not None:
            self._dims, self._periods = list(dims or []), list(periods or [])
        elif comm is None:
            self._dims, self._periods = [], []

    @classmethod
    def _derive(cls, parent: Comm, members: list[int], cid: int) -> Comm:
        assert isinstance(parent, Cartcomm)
        return Cartcomm(members, cid, list(parent._dims), list(parent._periods))

    def Get_topology(self) -> int:
        return CART

    topology = property(Get_topology)

    def Get_dim(self) -> int:
        return len(self._dims)

    ndim = dim = property(Get_dim)

    def Get_topo(self) -> tuple[list[int], list[int], list[int]]:
        return list(self._dims), [int(p) for p in self._periods], self.Get_coords(self._rank)

    def _neighbors(self) -> list[int]:
        """For each dimension, the ranks at -1 and +1 (PROC_NULL past a non-periodic edge), as MPI orders them."""
        out: list[int] = []
        for i in range(len(self._dims)):
            src, dst = self.Shift(i, 1)
            out += [src, dst]
        return out

    @property
    def indegree(self) -> int:
        return 2 * len(self._dims)

    outdegree = indegree

    @property
    def inedges(self) -> list[int]:
        return self._neighbors()

    outedges = inedges

    @property
    def inoutedges(self) -> tuple[list[int], list[int]]:
        n = self._neighbors()
        return n, list(n)

    topo = property(Get_topo)

    @property
    def dims(self) -> list[int]:
        return list(self._dims)

    @property
    def periods(self) -> list[int]:
        return [int(p) for p in self._periods]

    @property
    def coords(self) -> list[int]:
        return self.Get_coords(self._rank)

    def Get_coords(self, rank: int) -> list[int]:
        rank = as_int(rank)
        if not 0 <= rank < self._size:
            raise MpiError(f"invalid rank {rank} for a grid of {self._size}", 6)
        coords = []
        for d in reversed(self._dims):
            coords.append(rank % d)
            rank //= d
        return coords[::-1]

    def Get_cart_rank(self, coords: list[int]) -> int:
        coords = index_list(coords)
        check_length(coords, len(self._dims))
        rank = 0
        for c, d, p in zip(coords, self._dims, self._periods, strict=True):
            if not 0 <= c < d:
                if not p:
                    raise MpiError(f"coordinate {c} is outside a non-periodic dimension of {d}", 6)
                c %= d
            rank = rank * d + c
        return rank

    def Shift(self, direction: int, disp: int) -> tuple[int, int]:
        """(source, dest) for a shift along ``direction``; PROC_NULL past a non-periodic edge."""
        direction, disp = as_int(direction), as_int(disp)
        coords = self.Get_coords(self._rank)
        d, periodic = self._dims[direction], self._periods[direction]

        def at(offset: int) -> int:
            c = coords[direction] + offset
            if not 0 <= c < d:
                if not periodic:
                    return PROC_NULL
                c %= d
            moved = list(coords)
            moved[direction] = c
            return self.Get_cart_rank(moved)

        return at(-disp), at(disp)

    def Sub(self, remain_dims: list[bool]) -> Cartcomm:
        remain_dims = [bool(k) for k in index_list(remain_dims)]
        check_length(remain_dims, len(self._dims))
        coords = self.Get_coords(self._rank)
        color = sum(c * 1000 ** i for i, (c, keep) in enumerate(zip(coords, remain_dims, strict=True)) if not keep)
        sub = self.Split(color, self._rank)
        dims = [d for d, keep in zip(self._dims, remain_dims, strict=True) if keep]
        periods = [p for p, keep in zip(self._periods, remain_dims, strict=True) if keep]
        return Cartcomm(sub._members, sub._cid, dims, periods)


register_cart(Cartcomm)  # Create_cart (comm.py) builds one


class _NoTopocomm(Intracomm):
    """A topology granny cannot create: only its null handle exists (no granny communicator has it)."""

    _kind = ""

    def __init__(self, comm: Any = None) -> None:
        if comm is not None and not (isinstance(comm, Comm) and comm._cid < 0):
            raise TypeError(f"expecting a {self._kind}, got {type(comm).__name__}")
        super().__init__()


class Graphcomm(_NoTopocomm):
    _kind = "Graphcomm"
    Get_dims, Get_topo, Get_neighbors_count, Get_neighbors = (
        _Missing("Get_dims"), _Missing("Get_topo"), _Missing("Get_neighbors_count"), _Missing("Get_neighbors"))
    dims, nnodes, nedges, topo, index, edges = (
        _Missing("dims"), _Missing("nnodes"), _Missing("nedges"), _Missing("topo"), _Missing("index"), _Missing("edges"))


class Distgraphcomm(_NoTopocomm):
    _kind = "Distgraphcomm"
    Get_dist_neighbors_count, Get_dist_neighbors = _Missing("Get_dist_neighbors_count"), _Missing("Get_dist_neighbors")


def compute_dims(nnodes: int, dims: int | list[int]) -> list[int]:
    """MPI_Dims_create: fill the zero entries with a factorisation of ``nnodes`` as balanced as possible."""
    nnodes = as_int(nnodes)
    out = index_list(dims) if hasattr(dims, "__iter__") else [0] * operator.index(dims)
    if nnodes < 1:
        raise MpiError(f"invalid number of nodes {nnodes}", 12)  # MPI_ERR_DIMS, as Open MPI
    fixed = 1
    for d in out:
        if d < 0:
            raise MpiError(f"negative dimension in {out}", 12)
        if d:
            fixed *= d
    free = [i for i, d in enumerate(out) if d == 0]
    if fixed == 0 or nnodes % fixed:
        raise MpiError(f"{nnodes} nodes cannot be split over fixed dimensions {out}", 12)
    rest = nnodes // fixed
    if not free:
        if rest != 1:
            raise MpiError(f"dimensions {out} do not multiply to {nnodes}", 12)
        return out
    factors = []
    n, f = rest, 2
    while f * f <= n:
        while n % f == 0:
            factors.append(f)
            n //= f
        f += 1
    if n > 1:
        factors.append(n)
    sizes = [1] * len(free)
    for p in sorted(factors, reverse=True):  # largest prime first into the smallest slot: balanced
        sizes[sizes.index(min(sizes))] *= p
    for i, v in zip(free, sorted(sizes, reverse=True), strict=True):
        out[i] = v
    return out
