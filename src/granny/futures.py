"""The client's futures: ``concurrent.futures.Future`` objects that also stop their remote granules.

In a module of its own because ``concurrent.futures`` (and the ``logging`` it imports) costs ~15 ms of
start-up that ``granny run`` does not need; the client imports it on its first ``submit``.
"""

from __future__ import annotations

import concurrent.futures as cf
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .client import Client


class GrannyFuture(cf.Future[Any]):
    """A ``concurrent.futures.Future`` whose ``cancel()`` also stops the remote granule."""

    def __init__(self, client: Client, req_id: str) -> None:
        super().__init__()
        self._client = client
        self.req_id = req_id
        self.lane_wait = False  # set by submit: may result() read the lane itself (LaneServer.wait)?
        self.attempts = 1  # how many times the call ran (more than once: re-run after its host died)

    def cancel(self) -> bool:
        # Cancel locally first: the planner's "cancelled" answer may arrive before send returns.
        if not super().cancel():
            return False
        self._client._send_cancel(self.req_id)
        return True

    def result(self, timeout: float | None = None) -> Any:
        """As ``concurrent.futures.Future.result``: blocks until the result is back or ``timeout``.

        Inside a granule, waiting lends the granule's slot to the cluster, so a function waiting on
        its own sub-calls cannot starve them."""
        if self.done():
            return super().result(timeout)
        client = self._client
        client.flush()  # a submission held back for a burst must not wait for the flusher
        lane = client._lane
        if (self.lane_wait and lane is not None and not client._granule_id
                and lane.wait(self, timeout, spin=len(client._pending) <= 2)):
            return super().result(0)  # done, or TimeoutError as the caller asked
        if client._granule_id:
            client._waiting(+1)
        try:
            return super().result(timeout)
        finally:
            if client._granule_id:
                client._waiting(-1)
