"""The planner server's side of delay-tolerant calls (the decisions are planner/batch.py's): the clock
their deadlines are judged by, the observed runtimes of their functions, which the deadline guard
and the admission check estimate from, and what of both a planner restart keeps.

Journal: a call's deadline is its submission time plus its tolerance; both are in the journal already
(the ``requests`` row's ``created``, wall clock, and the Submit header), so a restarted planner
recomputes each unfinished delay-tolerant call's deadline on its own clock: a restart neither extends
nor shortens it. The runtime estimates are journaled as settings (``runtime:<function>``) when they
change by more than ``RUNTIME_CHANGE``, so the deadline guard of a restarted planner still starts calls
in time. Calls whose payload the journal did not keep (held, resubmitted by their client after the
restart) get their deadline from the resubmission."""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

from ..config import NICE_IDLE
from ..wire import Done, Status
from . import batch, idle

if TYPE_CHECKING:
    from .server_protocol import Server

RUNTIME = "runtime:"  # journal settings holding runtime estimates
RUNTIME_CHANGE = 0.1  # an estimate is written again when it moved by more than this fraction


def observe_runtime(p: Server, msg: Done) -> None:
    now = p.loop.time()
    p.state.batch.now = max(p.state.batch.now, now)
    t0 = p.sent_at.pop((msg.req_id, msg.index), None)
    payload = p.payloads.get(msg.req_id)
    b = p.state.batch
    key = (payload.submit.fn_key or payload.submit.name) if payload is not None else ""
    if t0 is not None and payload is not None and msg.status is Status.OK and idle.observed(b, msg.req_id, key):
        b.observe(key, now - t0)
        last = b.journaled.get(key)
        if last is None or abs(b.runtimes[key] - last) > RUNTIME_CHANGE * last:
            b.journaled[key] = b.runtimes[key]
            p.journal.setting(RUNTIME + key, repr(b.runtimes[key]))


def nice(p: Server, req_id: str) -> int:
    """The priority the call runs at (worker/niceness.py): ``--batch-nice`` for delay-tolerant ones, unless
    their latest start came (then they go first, and at full speed), or, for the idle class, they have
    little time to spare (planner/idle.py); 0 for the others."""
    nice = p.config.batch_nice
    return idle.priority(p.state.batch, req_id, nice, nice == NICE_IDLE, p.loop.time())


def restore(p: Server, settings: dict[str, str]) -> None:
    """After a restart: the journaled runtime estimates, and every restored delay-tolerant call with its deadline."""
    b = p.state.batch
    for name, value in settings.items():
        if name.startswith(RUNTIME):
            b.runtimes[name[len(RUNTIME):]] = b.journaled[name[len(RUNTIME):]] = float(value)
    now, wall = p.loop.time(), time.time()
    for req_id in list(p.state.requests):
        payload = p.payloads.get(req_id)
        sub = payload.submit if payload is not None else None
        if sub is None or not sub.delay_tolerance or sub.mpi or sub.gang or sub.lease:
            continue
        rows = p.journal.query("SELECT created FROM requests WHERE req_id=?", (req_id,))
        submitted = now - max(0.0, wall - float(rows[0][0])) if rows and rows[0][0] is not None else now
        deadline = math.inf if sub.delay_tolerance < 0 else submitted + sub.delay_tolerance
        batch.restore(p.state, req_id, sub.fn_key or sub.name, deadline, submitted, sub.fuse, sub.restartable)
