"""Makes ``import mpi4py`` / ``from mpi4py import MPI`` resolve to granny's MPI in an MPI granule."""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
from types import ModuleType

SHIM_DIR = os.path.dirname(os.path.abspath(__file__))


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: object, target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if fullname == "mpi4py" or fullname.startswith("mpi4py."):
            return importlib.machinery.PathFinder.find_spec(fullname, [SHIM_DIR] if fullname == "mpi4py" else path)  # type: ignore[arg-type]
        return None


_FINDER = _Finder()


def install() -> None:
    """Put the shim ahead of any real mpi4py (idempotent)."""
    if _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)
    for name in [m for m in sys.modules if m == "mpi4py" or m.startswith("mpi4py.")]:
        mod = sys.modules[name]
        if not getattr(mod, "__granny__", False):
            del sys.modules[name]  # a real mpi4py imported earlier must not win
