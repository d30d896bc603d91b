"""``granny.Executor``: the ``concurrent.futures.Executor`` interface over a granny client."""

from __future__ import annotations

import concurrent.futures as cf
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from .client import Client, connect


class Executor(cf.Executor):
    """Runs calls in granules. ``with granny.Executor() as ex: ex.map(f, xs)``."""

    def __init__(self, address: str | None = None, token: str | None = None, client: Client | None = None) -> None:
        self._own = client is None
        self.client = client if client is not None else connect(address, token)
        self._futures: set[cf.Future[Any]] = set()
        self._shutdown = False

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> cf.Future[Any]:
        if self._shutdown:
            raise RuntimeError("cannot schedule new futures after shutdown")
        fut = self.client.submit(fn, *args, **kwargs)
        self._futures.add(fut)
        fut.add_done_callback(self._futures.discard)
        return fut

    def map(self, fn: Callable[..., Any], *iterables: Iterable[Any], timeout: float | None = None,
            chunksize: int = 1, buffersize: int | None = None) -> Iterator[Any]:
        return self.client.map(fn, *iterables, timeout=timeout)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._shutdown = True
        if cancel_futures:
            for fut in list(self._futures):
                fut.cancel()
        if wait:
            cf.wait(list(self._futures))
        if self._own:
            self.client.close()
