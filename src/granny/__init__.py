"""granny: run Python functions, MPI programs and parallel loops as granules on a pool of hosts.

    import granny
    client = granny.connect()            # embedded local cluster, or GRANNY_ADDRESS/GRANNY_TOKEN
    fut = client.submit(pow, 2, 10)      # a concurrent.futures.Future
    assert fut.result() == 1024
"""

from __future__ import annotations

from typing import Any

from .client import Client, GrannyFuture, HostInfo, connect
from .errors import (
    CancelledError,
    ClusterError,
    ConfigError,
    ConnectionLostError,
    GrannyError,
    GranuleCrashedError,
    HostDiedError,
    NeverFitsError,
    RemoteError,
    ResultSerializationError,
    TaskError,
)
from .executor import Executor

__version__ = "0.1.0"

_default: Client | None = None


def submit(fn: Any, /, *args: Any, **kwargs: Any) -> GrannyFuture:
    """Submit through the default client: inside a granule, the granule's own cluster (chaining)."""
    global _default
    if _default is None:
        _default = connect()
    return _default.submit(fn, *args, **kwargs)


__all__ = [
    "CancelledError", "Client", "ClusterError", "ConfigError", "ConnectionLostError", "Executor", "GranuleCrashedError",
    "GrannyError", "GrannyFuture", "HostDiedError", "HostInfo", "NeverFitsError", "RemoteError",
    "ResultSerializationError", "TaskError", "__version__", "connect", "submit",
]
