"""A numpy array over a named file in /dev/shm (the private copies of reduction variables)."""

from __future__ import annotations

import mmap
import os
from typing import Any

import numpy as np


class Segment:
    def __init__(self, path: str, shape: tuple[int, ...], dtype: Any, create: bool) -> None:
        self.path, self.shape, self.dtype = path, tuple(shape), np.dtype(dtype)
        nbytes = max(1, int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize)
        fd = os.open(path, os.O_RDWR | (os.O_CREAT if create else 0), 0o600)
        try:
            if create:
                os.ftruncate(fd, nbytes)
            self.map = mmap.mmap(fd, nbytes)
        finally:
            os.close(fd)
        self.array: np.ndarray = np.ndarray(self.shape, self.dtype, buffer=self.map)

    def close(self) -> None:
        del self.array
        try:
            self.map.close()
        except BufferError:
            pass  # a view is still alive somewhere; the mapping goes with the process

    def unlink(self) -> None:
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
