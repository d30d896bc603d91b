"""Journaled work after a planner restart, and the grace around it: the restart half of PlannerState.

Theory of operation: see grace.py. The restarted planner loads each unfinished journaled request
(:meth:`Restarts.restore`) without queueing it, and the requests whose payload only their client has
(:meth:`Restarts.hold`). When the grace ends (a tick at its deadline), the restored tasks nobody
reported are queued and the held requests nobody resubmitted fail. A mixin of
:class:`~granny.planner.state.PlannerState`, kept apart to keep state.py small. Pure: no sockets,
threads or clocks.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable

from ..errors import ErrorKind
from .grace import Grace, Held
from .lifecycle import AppKind, TaskEvent, TaskState
from .records import Action, App, Fail, GraceEnded, Request, Task


class Restarts:
    # PlannerState's, which this is mixed into.
    apps: dict[str, App]
    requests: dict[str, Request]
    queue: deque[str]
    grace: Grace
    readmit_restored: Callable[[], None]  # BatchEvents' (declared only: a stub here would hide it)

    def schedule(self) -> list[Action]:
        raise NotImplementedError

    def delay_tolerant(self, req_id: str) -> bool:
        raise NotImplementedError

    def _finish(self, req_id: str, index: int, event: TaskEvent, fail: Fail | None, cascade: bool = True
                ) -> list[Action]:
        raise NotImplementedError

    def restore(self, req_id: str, app_id: str, n: int, finished: Iterable[int], app_kind: AppKind, name: str,
                prefetch: bool = False, tenant: str = "", hosts: tuple[tuple[str, int], ...] = (),
                migrate: bool = True, gang: bool = False, frozen: int = 0) -> None:
        """Load a journaled request after a restart. It is not queued yet: granules still running its
        tasks get a grace period to report them (see :meth:`requeue_restored`)."""
        app = self.apps.setdefault(app_id, App(app_id, app_kind, name, tenant=tenant))
        app.migrate = app.migrate and migrate
        app.requests.append(req_id)
        self.grace.held.pop(req_id, None)
        req = Request(req_id, app_id, n, [Task() for _ in range(n)], prefetch and n == 1, gang=gang, tenant=tenant,
                      hosts=tuple(hosts), migrate=migrate, frozen=frozen)
        for index in finished:
            if 0 <= index < n:
                req.tasks[index].state = TaskState.SUCCEEDED
        self.requests[req_id] = req

    def start_grace(self, now: float, duration: float) -> None:
        """The planner (re)started at ``now``: restored work waits ``duration`` seconds (see grace.py)."""
        self.grace.start(now, duration)

    def hold(self, held: Held) -> None:
        """A restored request whose payload the journal did not keep: its client must resubmit it in the grace."""
        self.grace.held[held.req_id] = held

    def _end_grace(self) -> list[Action]:
        duration = self.grace.duration
        actions: list[Action] = [GraceEnded()]
        actions += self.requeue_restored()
        for held in self.grace.end():
            if held.req_id in self.requests:
                continue  # its client resubmitted it
            self.restore(held.req_id, held.app_id, held.n, held.done, held.kind, held.name)
            for index in range(held.n):
                if index not in held.done:
                    actions += self.fail_waiting(held.req_id, index, ErrorKind.LOST, held.lost_message(duration))
        return actions

    def requeue_restored(self) -> list[Action]:
        """End of the restart grace period: restored tasks that nobody reported go back in the queue."""
        queued = set(self.queue)
        self.readmit_restored()  # journaled delay-tolerant calls: back in their own queue, deadlines kept
        for req in self.requests.values():
            if self.delay_tolerant(req.req_id):  # it waits in its own queue (batch.py)
                continue
            if req.req_id not in queued and any(t.state is TaskState.QUEUED for t in req.tasks):
                self.queue.append(req.req_id)
        return self.schedule()

    def fail_waiting(self, req_id: str, index: int, kind: ErrorKind, message: str) -> list[Action]:
        """Fail a task that is not running (e.g. restored work whose payload is gone)."""
        task = self.requests[req_id].tasks[index]
        if task.state is not TaskState.QUEUED:
            return []
        return self._finish(req_id, index, TaskEvent.FAIL, Fail(req_id, index, kind, message), cascade=False)
