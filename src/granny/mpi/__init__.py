"""granny's MPI: the mpi4py API on granules.

``granny.mpi`` *is* the ``mpi4py.MPI`` namespace (``from granny import mpi; mpi.COMM_WORLD``); in a
granule of an MPI app, ``from mpi4py import MPI`` resolves to the same module. Names resolve lazily
so that importing an internal module (the worker does) does not initialise MPI.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

# ``from granny.mpi import runtime`` asks this package for the attribute before importing the
# submodule: submodule names must not fall through to the MPI namespace (that would start MPI).
_SUBMODULES = {os.path.splitext(f)[0] for f in os.listdir(os.path.dirname(__file__))}


def __getattr__(name: str) -> Any:
    if name.startswith("__") or name in _SUBMODULES:
        raise AttributeError(name)
    return getattr(importlib.import_module("granny.mpi.api"), name)
