"""Reports for requests a restarted planner does not know yet, kept until their client resubmits.

Theory of operation: the old planner may have dispatched a call before its journal held the
request (journal writes are batched), or held a large payload only in memory. After a restart, the
granule that ran such a call sends its Done and output again (see :mod:`granny.worker.outbox`), but
the new planner learns of the request only when the client resubmits it. Until the restart grace
ends, such frames are kept here and replayed when the request arrives, so the call is recorded
instead of run again. After the grace they are dropped: a request nobody resubmitted is gone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Generic, TypeVar

from ..wire import Done, Log, Submit

if TYPE_CHECKING:
    from .server import PlannerServer

MAX_FRAMES = 10_000  # kept at most (a restart grace is seconds long; this bounds a flood)

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

    def adopt(self, server: PlannerServer, msg: Submit, app_kind: str, prefetch: bool) -> bool:
        """``msg`` is new here: if granules reported on it, record that before anything is dispatched."""
        frames = self._frames.pop(msg.req_id, [])
        if not frames:
            return False
        self._count -= len(frames)
        server.state.restore(msg.req_id, msg.app_id, msg.n, (), app_kind, msg.name, prefetch)  # not queued
        for conn, frame, data in frames:
            server.on_frame(conn, frame, memoryview(data))  # type: ignore[arg-type]
        server.apply(server.state.enqueue(msg.req_id))  # what nobody reported runs now
        return True

    def close(self) -> None:
        """The restart grace is over."""
        self.open = False
        self._frames.clear()
        self._count = 0
