"""The client's futures: ``concurrent.futures.Future`` objects that also stop their remote granules.

In a module of its own because ``concurrent.futures`` (and the ``logging`` it imports) costs ~15 ms of
start-up that ``granny run`` does not need; the client imports it on its first ``submit``.

A future knows its client only through :class:`FutureOwner`, so that this module does not import the
client (which creates futures): the dependency points one way (issue 17).
"""

from __future__ import annotations

import concurrent.futures as cf
from typing import Any, Protocol


class FutureOwner(Protocol):
    """What a future needs of the client that made it (:class:`granny.client.Client` is one)."""

    @property
    def in_granule(self) -> bool:
        """The client runs inside a granule: waiting on a future there lends the granule's slot."""
        ...

    def flush(self) -> None: ...

    def cancel_request(self, req_id: str) -> None: ...

    def wait_on_lane(self, future: GrannyFuture, timeout: float | None) -> bool:
        """Wait for ``future`` by reading the result lane on this thread; False if the lane cannot serve it."""
        ...

    def lend_slot(self, lend: bool) -> None:
        """Tell the planner this granule waits (``lend``) or is busy again, so its slot may run other work."""
        ...


class GrannyFuture(cf.Future[Any]):
    """A ``concurrent.futures.Future`` whose ``cancel()`` also stops the remote granule."""

    def __init__(self, client: FutureOwner, req_id: str) -> None:
        super().__init__()
        self._client = client
        self.req_id = req_id
        self.lane_wait = False  # set by submit: may result() read the lane itself (LaneServer.wait)?
        self.attempts = 1  # how many times the call ran (more than once: re-run after its host died)

    def cancel(self) -> bool:
        # Cancel locally first: the planner's "cancelled" answer may arrive before send returns.
        if not super().cancel():
            return False
        self._client.cancel_request(self.req_id)
        return True

    def result(self, timeout: float | None = None) -> Any:
        """As ``concurrent.futures.Future.result``: blocks until the result is back or ``timeout``.

        Inside a granule, waiting lends the granule's slot to the cluster, so a function waiting on
        its own sub-calls cannot starve them."""
        if self.done():
            return super().result(timeout)
        client = self._client
        client.flush()  # a submission held back for a burst must not wait for the flusher
        if self.lane_wait and client.wait_on_lane(self, timeout):
            return super().result(0)  # done, or TimeoutError as the caller asked
        lend = client.in_granule
        if lend:
            client.lend_slot(True)
        try:
            return super().result(timeout)
        finally:
            if lend:
                client.lend_slot(False)
