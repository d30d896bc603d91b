"""What the server's helper modules use of :class:`~granny.planner.server.PlannerServer`, as a Protocol.

deadlines, evicting, migrating, orphans, pruning, queries, selection and views take the server as ``p``
and the server calls them. Typed with :class:`Server` instead of PlannerServer, they need not import
server.py, so the import graph points one way: server -> helpers -> this module (issue 17). PlannerServer
satisfies it; mypy checks that wherever the server passes itself to a helper. event_feed.py and
metrics.py, which this module's types name, declare the little they use of the server themselves.

:class:`Payload` (a submitted call's frames, kept until its results are out) lives here too: the server
keeps them and the helpers read them.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Protocol

from ..config import Config
from ..wire import Message, Stdin, Submit
from .acks import Acks
from .conn import Conn
from .event_feed import EventFeed
from .journal import Journal
from .recent import RecentResults
from .records import Action
from .retention import Retention
from .state import PlannerState
from .store import StateStore


@dataclass
class Payload:
    submit: Submit
    body: memoryview  # the Submit's body: one pickle frame (granny.serde), passed on to granules as it is
    owner: Conn | None
    at: float = 0.0  # when it was submitted (the planner's clock): call latency for /metrics


class Server(Protocol):
    config: Config
    secret: str
    state: PlannerState
    loop: asyncio.AbstractEventLoop
    journal: Journal
    acks: Acks
    feed: EventFeed
    store: StateStore
    retention: Retention
    recent: RecentResults
    payloads: dict[str, Payload]
    workers: dict[str, Conn]
    granule_conns: dict[str, Conn]
    waiters: dict[str, list[asyncio.Future[None]]]
    stdin: dict[str, list[Stdin]]  # input that arrived before granule 0 started
    sent_at: dict[tuple[str, int], float]  # when calls of delay-tolerant functions were sent

    def apply(self, actions: list[Action]) -> None:
        """Carry out what the state machine asks for."""
        ...

    def on_frame(self, conn: Conn, msg: Message, body: memoryview) -> None: ...

    def set_policy(self, name: str) -> None: ...

    def _resend_finished(self, conn: Conn | None, req_id: str) -> None: ...
