"""Attributes, properties, info, names and error handlers of ``MPI.Win`` (a mixin; state in win.py).

Theory of operation
- Keyvals (``Win.Create_keyval``) are process-wide small integers above the predefined ``WIN_*`` ones;
  a window's attribute values live in its ``_attrs`` dict, shared by every handle to it. Replacing or
  deleting a value, and freeing the window, call the keyval's ``delete_fn(win, keyval, value)``, as
  mpi4py does; windows are never duplicated, so ``copy_fn`` is kept but never called. A freed keyval
  takes no new values; values already set keep their callbacks.
- Error handlers: the predefined ones are names; a user one (``Win.Create_errhandler(fn)``) carries its
  function. The window's handler is kept in ``_attrs`` under a private key, so every handle sees the
  same. ``Call_errhandler`` calls a user function as ``fn(win, errorcode)`` and returns (also under
  ERRORS_RETURN, as mpi4py on Open MPI does); under ERRORS_ARE_FATAL / ERRORS_ABORT it raises. A
  failing one-sided operation calls a user handler, then raises its MPI.Exception all the same (mpi4py
  raises for any error code the handler lets the call return).
- Integer handles (``toint``/``py2f``, ``handle``) are small integers given on first use, 0 for
  WIN_NULL; ``fromhandle``/``fromint``/``f2py`` give back another handle to a live window (unknown
  handles raise ValueError, where mpi4py would wrap any pointer).
"""

from __future__ import annotations

import itertools
import weakref
from collections.abc import Callable
from typing import Any

from ..errors import MpiError
from . import rma_constants as K
from .group import Group, Info
from .rma_apply import as_buffer
from .shm import buffer_address


class _Errhandler:
    """A window's error handler handle (Free turns it into ERRHANDLER_NULL, as in mpi4py); ``fn`` is a
    user handler's function (None for the predefined ones)."""

    def __init__(self, name: str, fn: Callable[..., Any] | None = None) -> None:
        self.name, self.fn = name, fn

    def Free(self) -> None:
        self.name, self.fn = "ERRHANDLER_NULL", None

    def toint(self) -> int:
        return _EH_INTS.setdefault(self.name, len(_EH_INTS)) if self.name != "ERRHANDLER_NULL" else 0

    py2f = toint

    def __eq__(self, other: object) -> bool:
        return getattr(other, "name", None) == self.name

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    def __hash__(self) -> int:
        return hash(self.name)


_EH_INTS: dict[str, int] = {"ERRHANDLER_NULL": 0, "ERRORS_ARE_FATAL": 1, "ERRORS_RETURN": 2, "ERRORS_ABORT": 3}
_user_eh = itertools.count(1)
_keyvals: dict[int, tuple[Any, Any, bool]] = {}  # keyval -> (copy_fn, delete_fn, still valid)
_next_keyval = itertools.count(64)  # above the predefined WIN_BASE ... WIN_MODEL
_ERRH = "errhandler"  # the window's handler in _attrs (a str key: keyvals are ints)
_handles = itertools.count(1)
_by_handle: weakref.WeakValueDictionary[int, Any] = weakref.WeakValueDictionary()
KEYVAL_INVALID = -1
ERR_KEYVAL = 48


class WinAttrs:
    """Mixin of ``Win``: what mpi4py's tests and programs ask a window about itself."""

    _key: object | None
    _mem: memoryview
    _rank: int
    _flavor: int
    _units: list[int]
    _world: list[int]
    _attrs: dict[Any, Any]  # keyval -> value; also "handle" and the user errhandler (str keys)
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
        attrs = self._live()._attrs
        kv = _keyvals.get(keyval) if type(keyval) is int else None
        if kv is None or not kv[2]:
            raise MpiError(f"Win.Set_attr: invalid keyval {keyval!r}", ERR_KEYVAL)
        if keyval in attrs:
            self._delete_value(keyval, attrs.pop(keyval))
        attrs[keyval] = value

    def Delete_attr(self, keyval: int) -> None:
        attrs = self._live()._attrs
        if type(keyval) is not int or keyval not in attrs:
            raise MpiError(f"Win.Delete_attr: no attribute for keyval {keyval!r}", ERR_KEYVAL)
        self._delete_value(keyval, attrs.pop(keyval))

    def _delete_value(self, keyval: int, value: Any) -> None:
        fn = _keyvals.get(keyval, (None, None, False))[1]
        if fn is not None:
            fn(self, keyval, value)

    def _forget(self) -> None:
        """The window is being freed: delete its attributes (callbacks in keyval order), drop its handle."""
        attrs = self._attrs
        for keyval in sorted(k for k in attrs if type(k) is int):
            self._delete_value(keyval, attrs.pop(keyval))
        _by_handle.pop(attrs.pop("handle", 0), None)

    @classmethod
    def Create_keyval(cls, copy_fn: Any = None, delete_fn: Any = None, nopython: bool = False) -> int:
        keyval = next(_next_keyval)
        _keyvals[keyval] = (copy_fn, delete_fn, True)
        return keyval

    @classmethod
    def Free_keyval(cls, keyval: int) -> int:
        kv = _keyvals.get(keyval) if type(keyval) is int else None
        if kv is None or not kv[2]:
            raise MpiError(f"Win.Free_keyval: invalid keyval {keyval!r}", ERR_KEYVAL)
        _keyvals[keyval] = (kv[0], kv[1], False)
        return KEYVAL_INVALID

    # --- integer handles ----------------------------------------------------------------------
    def toint(self) -> int:
        if self._key is None:
            return 0
        attrs = self._live()._attrs
        h = attrs.get("handle")
        if h is None:
            h = attrs["handle"] = next(_handles)
            _by_handle[h] = self
        return int(h)

    py2f = toint

    @property
    def handle(self) -> int:
        return self.toint()

    @classmethod
    def fromhandle(cls, handle: int) -> Any:
        if handle == 0:
            return cls()
        win = _by_handle.get(handle)
        if win is None or win._key is None:
            raise ValueError(f"MPI.Win.fromhandle: {handle!r} is not the handle of a live window")
        return cls(win)  # type: ignore[call-arg]

    fromint = f2py = fromhandle

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
        h = self._live()._attrs.get(_ERRH)
        return _Errhandler(h.name, h.fn) if h is not None else _Errhandler(self._errh)

    def Set_errhandler(self, errhandler: Any) -> None:
        """A user handler is called on errors (which then raise all the same); the predefined ones are
        recorded (errors raise MPI.Exception, as for communicators)."""
        attrs = self._live()._attrs
        fn = getattr(errhandler, "fn", None)
        if fn is not None:
            attrs[_ERRH] = _Errhandler(errhandler.name, fn)
        else:
            attrs.pop(_ERRH, None)
            self._errh = getattr(errhandler, "name", "ERRORS_RETURN")

    @classmethod
    def Create_errhandler(cls, errhandler_fn: Callable[..., Any]) -> _Errhandler:
        if not callable(errhandler_fn):
            raise AttributeError(f"{type(errhandler_fn).__name__!r} object has no attribute '__call__'")
        return _Errhandler(f"USER_ERRHANDLER_{next(_user_eh)}", errhandler_fn)

    def Call_errhandler(self, errorcode: int) -> None:
        h = self._live()._attrs.get(_ERRH)
        if h is not None:
            h.fn(self, errorcode)
        elif self._errh != "ERRORS_RETURN":
            raise MpiError(f"error code {errorcode}", errorcode)

    def _on_error(self, exc: MpiError) -> None:
        """A one-sided call failed: its window's user handler (if any) hears of it first."""
        h = self._attrs.get(_ERRH) if self._key is not None else None
        if h is not None:
            h.fn(self, exc.error_class)

    def Get_name(self) -> str:
        return str(self._name)

    def Set_name(self, name: str) -> None:
        self._live()._name = str(name)

    name = property(Get_name, Set_name)

