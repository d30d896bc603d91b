"""granny: run Python functions, MPI programs and parallel loops as granules on a pool of hosts.

    import granny
    client = granny.connect()            # embedded local cluster, or GRANNY_ADDRESS/GRANNY_TOKEN
    fut = client.submit(pow, 2, 10)      # a concurrent.futures.Future
    assert fut.result() == 1024
"""

from __future__ import annotations

import os
from typing import Any

from .client import Client, HostInfo, connect, shared_client
from .config import ENV_APP_ID as _ENV_APP_ID
from .config import env as _env
from .errors import (
    CancelledError,
    ClusterError,
    ConfigError,
    ConnectionLostError,
    GrannyError,
    GranuleCrashedError,
    HostDiedError,
    HostEvictedError,
    NeverFitsError,
    RemoteError,
    ResultSerializationError,
    TaskError,
)

__version__ = "0.1.0"


def shared_array(shape: Any, dtype: Any = "float64", fill: Any = None) -> Any:
    """A numpy-backed array in shared memory: granules of this host map the same pages, with no copies.

    ``.array`` is the ndarray; pass the object itself (by reference) to ``submit``, ``run_mpi`` and
    parallel regions. Its memory is freed when this process ends (or by the worker's reaper if it dies)."""
    from .memory.segments import create, remove_segments_of

    if _cleanup_pid[0] != os.getpid():  # once per process (a fork needs its own)
        import atexit

        _cleanup_pid[0] = os.getpid()
        atexit.register(_remove_own_segments, os.getpid(), remove_segments_of)
    return create(shape, dtype, fill, app_id=_env(_ENV_APP_ID) or "local")


_cleanup_pid = [0]


def _remove_own_segments(pid: int, remove: Any) -> None:
    if pid == os.getpid():  # not in a forked child, which inherited the hook
        remove(pid)


_LAZY = {"parallel_for": "parallel", "parallel": None, "mpi": None, "GrannyFuture": "futures",
         "Executor": "executor", "migration_point": "migration"}


def __getattr__(name: str) -> Any:
    # Imported on first use: parallel regions need numpy, which the CLI never loads.
    if name in _LAZY:
        import importlib

        module = importlib.import_module(f"granny.{_LAZY[name] or name}")
        return module if _LAZY[name] is None else getattr(module, name)
    raise AttributeError(f"module 'granny' has no attribute {name!r}")


def submit(fn: Any, /, *args: Any, **kwargs: Any) -> Any:
    """Submit through the default client: inside a granule, the granule's own cluster (chaining)."""
    return shared_client().submit(fn, *args, **kwargs)


__all__ = [
    "CancelledError", "Client", "ClusterError", "ConfigError", "ConnectionLostError", "Executor", "GranuleCrashedError",
    "GrannyError", "GrannyFuture", "HostDiedError", "HostEvictedError", "HostInfo", "NeverFitsError", "RemoteError",
    "ResultSerializationError", "TaskError", "__version__", "connect", "migration_point", "parallel", "parallel_for", "shared_array",
    "submit",
]
