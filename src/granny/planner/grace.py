"""The restart grace: a restarted planner waits a moment before it runs journaled work again.

Theory of operation: after a restart, granules that survived it reconnect and report the tasks they
are still running (or finished meanwhile), and clients resubmit the requests whose large payloads
the journal did not keep (*held* requests: only their record was journaled). For ``duration``
seconds after the restart, restored work is therefore loaded but not queued. When a tick passes the
end of the grace (a deadline, not a timer: time comes in as ``now``), the restored tasks that nobody
reported are queued, and a held request whose client did not come back fails, with a message that
says why. Pure: no sockets, threads or clocks.
"""

from __future__ import annotations

from dataclasses import dataclass

from .lifecycle import AppKind


@dataclass(frozen=True)
class Held:
    """A restored request whose payload only its client has (it was too large to journal)."""

    req_id: str
    app_id: str
    n: int
    done: frozenset[int]  # task indexes the journal holds results for
    kind: AppKind
    name: str

    def lost_message(self, duration: float) -> str:
        return (f"the planner restarted and the client that holds this request's payload (too large to journal) did "
                f"not reconnect within {duration:g}s; submit it again")


class Grace:
    def __init__(self) -> None:
        self.until: float | None = None  # when it ends; None: not in a grace period
        self.duration = 0.0
        self.held: dict[str, Held] = {}

    def start(self, now: float, duration: float) -> None:
        self.until, self.duration = now + duration, duration

    @property
    def open(self) -> bool:
        return self.until is not None

    def due(self, now: float) -> bool:
        return self.until is not None and now >= self.until

    def end(self) -> list[Held]:
        """Close the grace; returns the held requests, for the state to fail those not resubmitted."""
        held = list(self.held.values())
        self.until = None
        self.held.clear()
        return held
