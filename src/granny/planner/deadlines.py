"""The planner server's side of delay-tolerant calls (the decisions are planner/batch.py's): the clock
their deadlines are judged by, the observed runtimes of their functions, which the deadline guard
and the admission check estimate from, and what of both a planner restart keeps.

Journal: a call's deadline is its submission time plus its tolerance; both are in the journal already
(the ``requests`` row's ``created``, wall clock, and the Submit header), so a restarted planner
recomputes each unfinished delay-tolerant call's deadline on its own clock: a restart neither extends
nor shortens it. The runtime estimates are journaled as settings (``runtime:<function>``) when they
change by more than ``RUNTIME_CHANGE``, so the deadline guard of a restarted planner still starts calls
in time; their spreads (``spread:<function>``, the deadline guard's allowance above the mean) with them,
so the guard of a restarted planner keeps its margin instead of falling back to the mean. What a frozen
call ran before its freeze is in its ``frozen`` row (migrating.py), so its latest start still counts only
the work left. Calls whose payload the journal did not keep (held, resubmitted by their client after the
restart) get their deadline from the resubmission."""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

from ..config import NICE_IDLE
from ..tunables import RUNTIME_CHANGE
from ..wire import Done, Status
from . import batch, idle

if TYPE_CHECKING:
    from .server_protocol import Server

RUNTIME = "runtime:"  # journal settings holding runtime estimates
SPREAD = "spread:"  # journal settings holding the estimates' spreads (batch_queue.Batch.guarded)


def observe_runtime(p: Server, msg: Done) -> None:
    now = p.loop.time()
    p.state.batch.now = max(p.state.batch.now, now)
    t0 = p.sent_at.pop((msg.req_id, msg.index), None)
    payload = p.payloads.get(msg.req_id)
    if t0 is not None and payload is not None and msg.status is Status.OK:
        b = p.state.batch
        key = payload.submit.fn_key or payload.submit.name
        if not idle.observed(b, msg.req_id, key):
            return
        seconds, d = now - t0, b.known.get(msg.req_id)
        # Paused and continued: the time it stood stopped is no runtime. (A call still marked paused ended as
        # the pause was ordered, which did not hold: worker/finishing.py.)
        if d is not None and d.started is not None and d.ran and msg.req_id not in b.paused:
            seconds = d.ran + now - d.started
        b.observe(key, seconds)
        mean, spread = b.runtimes[key], b.spread.get(key, 0.0)
        last = b.journaled.get(key)
        if last is None or max(abs(mean - last[0]), abs(spread - last[1])) > RUNTIME_CHANGE * last[0]:
            b.journaled[key] = (mean, spread)
            p.journal.setting(RUNTIME + key, repr(mean))
            if spread != (last[1] if last is not None else 0.0):
                p.journal.setting(SPREAD + key, repr(spread))


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
            b.runtimes[name[len(RUNTIME):]] = float(value)
        elif name.startswith(SPREAD):
            b.spread[name[len(SPREAD):]] = float(value)
    b.journaled.update({key: (mean, b.spread.get(key, 0.0)) for key, mean in b.runtimes.items()})
    ran = {r[0]: float(r[1] or 0.0) for r in p.journal.query("SELECT req_id, ran FROM frozen")}
    now, wall = p.loop.time(), time.time()
    for req_id in list(p.state.requests):
        payload = p.payloads.get(req_id)
        sub = payload.submit if payload is not None else None
        if sub is None or not sub.delay_tolerance or sub.mpi or sub.gang or sub.lease:
            continue
        rows = p.journal.query("SELECT created FROM requests WHERE req_id=?", (req_id,))
        submitted = now - max(0.0, wall - float(rows[0][0])) if rows and rows[0][0] is not None else now
        deadline = math.inf if sub.delay_tolerance < 0 else submitted + sub.delay_tolerance
        batch.restore(p.state, req_id, sub.fn_key or sub.name, deadline, submitted, sub.fuse, sub.restartable,
                      ran.get(req_id, 0.0))
