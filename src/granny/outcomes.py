"""How a call's outcome is rebuilt on the client: errors from Result frames, MPI worlds' results.

Pure helpers of :mod:`granny.client` (no sockets, no client state).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from typing import Any

from . import serde
from .errors import ERROR_KINDS, ErrorKind, PeerLostError, RemoteError, TaskError
from .wire import Result, Status


def map_calls(submit: Callable[..., Future[Any]], fn: Callable[..., Any], iterables: tuple[Iterable[Any], ...],
              timeout: float | None) -> Iterator[Any]:
    futures = [submit(fn, *args) for args in zip(*iterables, strict=False)]
    deadline = None if timeout is None else time.monotonic() + timeout

    def results() -> Iterator[Any]:
        try:
            for fut in futures:
                yield fut.result(None if deadline is None else max(0.0, deadline - time.monotonic()))
        finally:
            for fut in futures:
                fut.cancel()

    return results()


def keyed_id(key: str) -> str:
    """The request id of an idempotency key: the planner already treats a known id as the same call."""
    import hashlib

    return "key-" + hashlib.blake2b(key.encode(), digest_size=16).hexdigest()


def world_outcome(results: dict[int, Result], values: dict[int, Any], n: int) -> tuple[Any, BaseException | None]:
    """The ranks' values in order, or the error of the rank that failed first (not the ones it took down)."""
    failed = [i for i in sorted(results) if results[i].status is not Status.OK]
    if not failed:
        return [values[i] for i in range(n)], None
    # The cause, not its consequences: ranks cancelled by the gang abort, or that lost a peer rank
    # (PeerLostError), failed because another one did.
    causes = [i for i in failed if results[i].error_kind != ErrorKind.CANCELLED]
    first = next((i for i in causes if not isinstance(values[i], PeerLostError)), None)
    if first is None:
        first = causes[0] if causes else failed[0]
    error = values[first]
    assert isinstance(error, BaseException)
    import concurrent.futures as cf

    if isinstance(error, cf.CancelledError) and first != failed[0]:
        return None, error
    error.add_note(f"(rank {first} of {n} failed; the other ranks were stopped)")
    return None, error


def rebuild_error(res: Result, body: memoryview) -> BaseException:
    if res.error_kind == ErrorKind.REMOTE:
        exc: BaseException | None = None
        if res.size:
            try:
                loaded = serde.loads(serde.unframe(body))
                exc = loaded if isinstance(loaded, BaseException) else None
            except Exception:  # the exception type may not exist here
                exc = None
        if exc is None:
            exc = RemoteError(res.message, res.traceback)
        if res.traceback:
            where = f" on host {res.host_id}" if res.host_id else ""
            exc.add_note(f"\nRemote traceback{where}:\n{res.traceback.rstrip()}")
        return exc
    cls = ERROR_KINDS.get(res.error_kind, TaskError)
    if res.error_kind == ErrorKind.CANCELLED:
        import concurrent.futures as cf

        return cf.CancelledError(res.message)
    return cls(res.message)
