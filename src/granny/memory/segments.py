"""Numpy arrays backed by POSIX shared memory files in /dev/shm, passed between processes by reference.

Theory of operation
-------------------
- A segment is one file ``/dev/shm/granny-shm-{app_id}-{uid}[-w{worker}]-p{owner_pid}``, created with O_EXCL,
  sized with ftruncate (so the pages are allocated lazily, zero-filled) and mapped with ``mmap``
  MAP_SHARED. Any process of the host that maps the same file sees the same physical pages: attaching
  costs an open, an fstat and an mmap, never a copy. ``multiprocessing.shared_memory`` is not used: its
  resource tracker unlinks segments behind our back when the process that attached them exits.
- ``SharedArray.array`` is an ordinary ``np.ndarray`` over the mapping, so numpy code runs at full speed
  on it (no ndarray subclass, whose Python-level hooks would slow every indexing operation down).
- Pickling carries (name, shape, dtype, offset) and no data; unpickling attaches. So a SharedArray passed
  to a function that runs in another granule on the same host arrives as a view of the same memory.
- Lifetime: the creator ``unlink``s the file when the app is done with it; mappings that exist stay
  valid until they are closed (the kernel frees the pages with the last one). Because the owner's pid
  and the app id are in the name, whoever notices a dead process or a finished app removes what it left
  behind with ``remove_segments_of(pid)`` or ``remove_segments_of_app(app_id)``, so a crash that skips
  every ``finally`` still leaks nothing once the reaper runs. A segment made under a worker (by a
  granule, or a process it started) also carries the worker's tag (``-w{worker}``, see
  ``config.shm_owner_suffix``): the worker's sweep removes only segments with its own tag.
"""

from __future__ import annotations

import mmap
import os
import re
import uuid
from typing import Any

import numpy as np

from ..config import shm_owner_suffix

SHM_DIR = "/dev/shm"
PREFIX = "granny-shm-"
DEFAULT_APP_ID = "local"
_APP_ID = re.compile(r"[A-Za-z0-9_.-]{1,100}")
_NAME = re.compile(r"granny-shm-(?P<app>[A-Za-z0-9_.-]+)-(?P<uid>[0-9a-f]{12})(?:-w[0-9A-Za-z]+)?-p(?P<pid>[0-9]+)")


def segment_name(app_id: str, pid: int | None = None) -> str:
    if not _APP_ID.fullmatch(app_id):
        raise ValueError(f"app id {app_id!r} must be 1-100 characters of letters, digits, '_', '.' or '-'")
    return f"{PREFIX}{app_id}-{uuid.uuid4().hex[:12]}{shm_owner_suffix(pid)}"


def parse_name(name: str) -> tuple[str, int] | None:
    """(app_id, owner pid) of a segment name, or None if it is not one of ours."""
    m = _NAME.fullmatch(name)
    return (m["app"], int(m["pid"])) if m else None


def list_segments(app_id: str | None = None, pid: int | None = None) -> list[str]:
    """Names of the segments in /dev/shm, optionally only those of one app and/or one owner pid."""
    out = []
    for name in os.listdir(SHM_DIR):
        parsed = parse_name(name)
        if parsed and (app_id is None or parsed[0] == app_id) and (pid is None or parsed[1] == pid):
            out.append(name)
    return sorted(out)


def _remove(names: list[str]) -> int:
    removed = 0
    for name in names:
        try:
            os.unlink(os.path.join(SHM_DIR, name))
            removed += 1
        except FileNotFoundError:
            pass  # someone else reaped it first
    return removed


def remove_segments_of(pid: int) -> int:
    """Unlink every segment created by process ``pid`` (call it once the process is dead)."""
    return _remove(list_segments(pid=pid))


CREATED: set[str] = set()  # segments this process created and has not unlinked


def remove_created() -> int:
    """Unlink the segments this process created (a granule does it when a task ends): no /dev/shm scan."""
    names = list(CREATED)
    CREATED.clear()
    return _remove(names)


def remove_segments_of_app(app_id: str) -> int:
    """Unlink every segment of ``app_id`` (call it when the app ends, however it ended)."""
    return _remove(list_segments(app_id=app_id))


def _shape(shape: int | tuple[int, ...] | list[int]) -> tuple[int, ...]:
    dims = (shape,) if isinstance(shape, int | np.integer) else tuple(shape)
    if any(int(d) < 0 for d in dims):
        raise ValueError(f"negative dimension in shape {dims}")
    return tuple(int(d) for d in dims)


def _dtype(dtype: Any) -> np.dtype[Any]:
    dt: np.dtype[Any] = np.dtype(dtype)
    if dt.hasobject:
        raise TypeError(f"{dt} holds Python object pointers, which mean nothing in another process")
    return dt


class SharedArray:
    """A numpy array in a shared memory segment. ``.array`` is the plain ndarray to compute on."""

    __slots__ = ("name", "offset", "_map", "_array", "__weakref__")

    def __init__(self, name: str, mapping: mmap.mmap, offset: int, shape: tuple[int, ...],
                 dtype: np.dtype[Any]) -> None:
        self.name = name
        self.offset = offset
        self._map: mmap.mmap | None = mapping
        self._array: np.ndarray[Any, Any] | None = np.ndarray(shape, dtype, buffer=mapping, offset=offset)

    # -- construction --------------------------------------------------------------------------------
    @classmethod
    def create(cls, shape: int | tuple[int, ...] | list[int], dtype: Any = np.float64, fill: Any = None,
               *, app_id: str = DEFAULT_APP_ID) -> SharedArray:
        """A new segment owned by this process (zero-filled unless ``fill`` is given)."""
        dims, dt = _shape(shape), _dtype(dtype)
        nbytes = int(np.prod(dims, dtype=np.int64)) * dt.itemsize
        name = segment_name(app_id)
        path = os.path.join(SHM_DIR, name)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.ftruncate(fd, max(nbytes, 1))  # mmap refuses length 0; one spare byte costs nothing
            mapping = mmap.mmap(fd, max(nbytes, 1))
        except BaseException:
            os.unlink(path)
            raise
        finally:
            os.close(fd)
        arr = cls(name, mapping, 0, dims, dt)
        CREATED.add(name)
        if fill is not None:
            try:
                arr.array[...] = fill  # ftruncate zero-fills, so only a real fill touches the pages
            except BaseException:
                arr.close()
                arr.unlink()
                raise
        return arr

    @classmethod
    def attach(cls, name: str, shape: int | tuple[int, ...] | list[int], dtype: Any,
               offset: int = 0) -> SharedArray:
        """Map an existing segment (made by any process of this host) as an array: no copy."""
        if parse_name(name) is None:
            raise ValueError(f"{name!r} is not a granny shared-memory segment name")
        dims, dt = _shape(shape), _dtype(dtype)
        nbytes = int(np.prod(dims, dtype=np.int64)) * dt.itemsize
        try:
            fd = os.open(os.path.join(SHM_DIR, name), os.O_RDWR)
        except FileNotFoundError:
            raise FileNotFoundError(f"shared array {name} is gone: its owner unlinked it or was reaped") from None
        try:
            size = os.fstat(fd).st_size
            if offset < 0 or offset + nbytes > size:
                raise ValueError(f"shared array {name} has {size} bytes; {dims} {dt} at offset {offset} "
                                 "does not fit")
            mapping = mmap.mmap(fd, size)
        finally:
            os.close(fd)
        return cls(name, mapping, offset, dims, dt)

    # -- the array -----------------------------------------------------------------------------------
    @property
    def array(self) -> np.ndarray[Any, Any]:
        if self._array is None:
            raise ValueError(f"shared array {self.name} is closed")
        return self._array

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape)

    @property
    def dtype(self) -> np.dtype[Any]:
        dt: np.dtype[Any] = self.array.dtype
        return dt

    @property
    def nbytes(self) -> int:
        return int(self.array.nbytes)

    @property
    def path(self) -> str:
        return os.path.join(SHM_DIR, self.name)

    @property
    def closed(self) -> bool:
        return self._array is None

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray[Any, Any]:
        if copy:
            return self.array.astype(dtype or self.dtype, copy=True)
        return self.array if dtype is None else self.array.astype(dtype, copy=False)

    def __getitem__(self, key: Any) -> Any:
        return self.array[key]

    def __setitem__(self, key: Any, value: Any) -> None:
        self.array[key] = value

    def __len__(self) -> int:
        return len(self.array)

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"{self.shape} {self.dtype}"
        return f"SharedArray({self.name}, {state})"

    # -- by reference --------------------------------------------------------------------------------
    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return (SharedArray.attach, (self.name, self.shape, self.dtype, self.offset))

    # -- lifetime ------------------------------------------------------------------------------------
    def close(self) -> None:
        """Drop this process's mapping. It is unmapped when the last view of ``.array`` is gone.

        Never ``mmap.close()``: numpy keeps the mmap object as the base of the arrays but releases its
        buffer export, so mmap.close() would unmap memory that live arrays still point into (a
        segfault on the next access). Dropping the references lets CPython unmap it at the right time:
        at once if no view is alive.
        """
        self._array = None
        self._map = None

    def unlink(self) -> None:
        """Remove the segment's name; the memory is freed when the last mapping is closed."""
        CREATED.discard(self.name)
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass

    def __enter__(self) -> SharedArray:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def create(shape: int | tuple[int, ...] | list[int], dtype: Any = np.float64, fill: Any = None, *,
           app_id: str = DEFAULT_APP_ID) -> SharedArray:
    """A new shared array owned by this process; see ``SharedArray.create``."""
    return SharedArray.create(shape, dtype, fill, app_id=app_id)


def attach(name: str, shape: int | tuple[int, ...] | list[int], dtype: Any, offset: int = 0) -> SharedArray:
    """Map an existing shared array; see ``SharedArray.attach``."""
    return SharedArray.attach(name, shape, dtype, offset)
