"""The environment queries of a communicator: rank, size, name, group, attributes, error handlers, info.

``CommEnvironment`` is a mixin of ``Comm`` (comm.py), as ``Collectives`` and ``PointToPoint`` are.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import MpiError
from . import constants as c
from . import runtime
from .group import Group, Info
from .p2p import PROC_NULL

if TYPE_CHECKING:
    from .runtime import Runtime

UNDEFINED = -32766


class CommEnvironment:
    _rt: Runtime
    _members: list[int]
    _rank: int
    _size: int
    _name: str
    _attrs: dict[int, Any]

    def Get_rank(self) -> int:
        return self._rank

    def Get_size(self) -> int:
        return self._size

    @property
    def rank(self) -> int:
        return self._rank

    @property
    def size(self) -> int:
        return self._size

    def Get_name(self) -> str:
        return self._name

    def Set_name(self, name: str) -> None:
        if isinstance(name, bytes):
            name = name.decode()
        if not isinstance(name, str):
            raise TypeError(f"expected str, {type(name).__name__} found")
        self._name = name

    name = property(Get_name, Set_name)

    def Is_inter(self) -> bool:
        return False

    def Is_intra(self) -> bool:
        return True

    is_inter = property(Is_inter)
    is_intra = property(Is_intra)

    def Get_topology(self) -> int:
        return UNDEFINED

    topology = property(Get_topology)

    @property
    def is_topo(self) -> bool:
        return self.Get_topology() != UNDEFINED

    def toint(self) -> int:
        """granny communicators have no integer handles (-1, as mpi4py reports an unavailable one)."""
        return -1

    py2f = toint

    def Get_group(self) -> Any:
        return Group(self._members)

    group = property(Get_group)

    def Get_attr(self, keyval: int) -> Any:
        if keyval == c.TAG_UB:
            return c.TAG_UB_VALUE
        if keyval in (c.IO, c.HOST):
            return PROC_NULL
        if keyval == c.WTIME_IS_GLOBAL:
            return False
        if keyval == c.APPNUM:
            return None
        if keyval == c.UNIVERSE_SIZE:
            return self._rt.world.size
        if keyval == c.LASTUSEDCODE:
            return 0
        return self._attrs.get(keyval)

    def Set_attr(self, keyval: int, value: Any) -> None:
        self._attrs[keyval] = value

    def Delete_attr(self, keyval: int) -> None:
        self._attrs.pop(keyval, None)

    def Get_errhandler(self) -> Any:
        return c.ERRORS_RETURN

    def Set_errhandler(self, errhandler: Any) -> None:
        """Errors always raise MPI.Exception (mpi4py's default, ERRORS_RETURN); the handler is recorded only."""

    def Call_errhandler(self, errorcode: int) -> None:
        raise MpiError(f"error code {errorcode}", errorcode)

    def Get_info(self) -> Any:
        return Info()

    def Set_info(self, info: Any) -> None:
        pass

    info = property(Get_info, Set_info)

    def Abort(self, errorcode: int = 0) -> None:
        runtime.abort(errorcode, self._rank)
