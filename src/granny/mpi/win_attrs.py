"""Attributes, properties, info, names and error handlers of ``MPI.Win`` (a mixin; state in win.py)."""

from __future__ import annotations

from typing import Any

from ..errors import MpiError
from . import rma_constants as K
from .group import Group, Info
from .rma_apply import as_buffer
from .shm import buffer_address


class _Errhandler:
    """A window's error handler handle (Free turns it into ERRHANDLER_NULL, as in mpi4py)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def Free(self) -> None:
        self.name = "ERRHANDLER_NULL"

    def __eq__(self, other: object) -> bool:
        return getattr(other, "name", None) == self.name

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    def __hash__(self) -> int:
        return hash(self.name)


class WinAttrs:
    """Mixin of ``Win``: what mpi4py's tests and programs ask a window about itself."""

    _key: object | None
    _mem: memoryview
    _rank: int
    _flavor: int
    _units: list[int]
    _world: list[int]
    _attrs: dict[int, Any]
    _info: Info
    _errh: str
    _name: str

    def _live(self) -> Any:
        raise NotImplementedError  # win.py

    def tomemory(self) -> Any:
        return as_buffer(self._mem if self._key is not None else None)

    def Get_attr(self, keyval: int) -> Any:
        self._live()
        if keyval == K.WIN_BASE:
            return buffer_address(self._mem)
        if keyval == K.WIN_SIZE:
            return self._mem.nbytes
        if keyval == K.WIN_DISP_UNIT:
            return self._units[self._rank]
        if keyval == K.WIN_CREATE_FLAVOR:
            return self._flavor
        if keyval == K.WIN_MODEL:
            return K.WIN_UNIFIED
        return self._attrs.get(keyval)

    def Set_attr(self, keyval: int, value: Any) -> None:
        self._live()._attrs[keyval] = value

    def Delete_attr(self, keyval: int) -> None:
        self._live()._attrs.pop(keyval, None)

    @property
    def attrs(self) -> tuple[int, int, int]:
        return (self.Get_attr(K.WIN_BASE), self.Get_attr(K.WIN_SIZE), self.Get_attr(K.WIN_DISP_UNIT))

    @property
    def flavor(self) -> int:
        return int(self.Get_attr(K.WIN_CREATE_FLAVOR))

    @property
    def model(self) -> int:
        return K.WIN_UNIFIED

    def Get_group(self) -> Group:
        return Group(list(self._live()._world))

    @property
    def group(self) -> Group:
        return self.Get_group()

    @property
    def group_size(self) -> int:
        return len(self._live()._world)

    @property
    def group_rank(self) -> int:
        return int(self._live()._rank)

    def Get_info(self) -> Info:
        return Info(self._live()._info)

    def Set_info(self, info: Any) -> None:
        self._live()._info = Info(info or {})

    info = property(Get_info, Set_info)

    def Get_errhandler(self) -> _Errhandler:
        return _Errhandler(self._live()._errh)

    def Set_errhandler(self, errhandler: Any) -> None:
        """Errors always raise MPI.Exception; the handler is recorded only (as for communicators)."""
        self._live()._errh = getattr(errhandler, "name", "ERRORS_RETURN")

    def Call_errhandler(self, errorcode: int) -> None:
        raise MpiError(f"error code {errorcode}", errorcode)

    def Get_name(self) -> str:
        return str(self._name)

    def Set_name(self, name: str) -> None:
        self._live()._name = str(name)

    name = property(Get_name, Set_name)

