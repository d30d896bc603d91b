"""The planner server's side of delay-tolerant calls (the decisions are planner/batch.py's): the clock
their deadlines are judged by, and the observed runtimes of their functions, which the deadline guard
and the admission check estimate from."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..wire import Done, Status

if TYPE_CHECKING:
    from .server import PlannerServer


def observe_runtime(p: PlannerServer, msg: Done) -> None:
    now = p.loop.time()
    p.state.batch.now = max(p.state.batch.now, now)
    t0 = p.sent_at.pop((msg.req_id, msg.index), None)
    payload = p.payloads.get(msg.req_id)
    if t0 is not None and payload is not None and msg.status is Status.OK:
        p.state.batch.observe(payload.submit.fn_key or payload.submit.name, now - t0)
