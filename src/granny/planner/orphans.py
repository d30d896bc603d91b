"""Requests a restarted planner did not journal: their reports and their resubmissions meet here.

Theory of operation: the old planner may have dispatched a call before its journal held the
request (journal writes are batched), or held a large payload only in memory. After a restart, the
granule that ran such a call sends its Done and output again (see :mod:`granny.worker.outbox`), and
the client resubmits the request (``Submit.resent``), in either order. Until the restart grace ends:
- a report that comes first is kept here and replayed when the request arrives;
- a resubmission that comes first is loaded as journaled work is (not queued until the grace ends),
  so the granule's report, when it comes, is recorded instead of the call being run again.
After the grace, kept reports are dropped (a request nobody resubmitted is gone) and resubmissions
are ordinary submissions. Gangs and leases are not adopted: they are submitted as usual.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Generic, TypeVar

from ..tunables import ORPHAN_FRAMES_MAX as MAX_FRAMES
from ..wire import Done, Log, Submit

if TYPE_CHECKING:
    from .lifecycle import AppKind
    from .server_protocol import Server


C = TypeVar("C")


class Orphans(Generic[C]):
    def __init__(self) -> None:
        self._frames: dict[str, list[tuple[C, Done | Log, bytes]]] = {}
        self._count = 0
        self.open = True

    def keep(self, conn: C, msg: Done | Log, body: memoryview) -> bool:
        """Keep a frame of an unknown request; False once the grace is over (or the bound is hit)."""
        if not self.open or self._count >= MAX_FRAMES:
            return False
        self._frames.setdefault(msg.req_id, []).append((conn, msg, bytes(body)))
        self._count += 1
        return True

    def adopt(self, server: Server, msg: Submit, app_kind: AppKind, prefetch: bool) -> bool:
        """``msg`` is new here: if it may have run already, load it as journaled work (see above)."""
        frames = self._frames.pop(msg.req_id, [])
        self._count -= len(frames)
        if not frames and not (msg.resent and self.open):
            return False
        server.state.restore(msg.req_id, msg.app_id, msg.n, (), app_kind, msg.name, prefetch,  # not queued
                             msg.tenant, tuple(msg.hosts), msg.migrate)
        for conn, frame, data in frames:
            server.on_frame(conn, frame, memoryview(data))  # type: ignore[arg-type]
        return True  # queued with the other journaled work when the grace ends

    def close(self) -> None:
        """The restart grace is over."""
        self.open = False
        self._frames.clear()
        self._count = 0
