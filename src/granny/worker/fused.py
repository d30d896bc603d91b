"""Fused calls (DFaaS function fusion): one granule runs several delay-tolerant ``async def`` calls at once.

Theory of operation: the planner sends a granule a Run with ``fused`` set only for a delay-tolerant
call of a coroutine function (planner/fusion.py), and keeps sending it more of them, up to its
fusion cap, while the first ones run. The granule's main loop hands the first such Run to
:func:`serve`, which runs an asyncio event loop until no fused call is left:

- every fused Run becomes an asyncio task; while one awaits I/O, the others run (that is the point:
  the slot stays busy while calls wait);
- the planner connection is read from the loop itself (a reader on its socket, and a short timer
  for frames the link's watcher thread took first): new fused Runs start at once, a Skip cancels
  that call's task (``Task.cancel()``: cooperative, at its next ``await``), a plain Run waits in the
  granule's queue until the loop ends;
- each call's result or exception goes back in its own Done (with the planner's grant for that
  call), in whatever order the calls end; what a call prints goes out as Log frames of that call
  (``sys.stdout``/``sys.stderr`` follow the running task, through a context variable).

What fused calls do not get, unlike calls run one at a time: output written straight to file
descriptors 1 and 2 (C extensions, ``os.write``) is not captured, per-call memory limits are not
applied (an address-space limit is the whole process's), ``GRANNY_INDEX``/``GRANNY_APP_ID`` are
the first call's, and across a planner restart only the first call is announced as running (the
others may be run again after the restart grace).
"""

from __future__ import annotations

import asyncio
import contextvars
import io
import os
import sys
import types
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import cloudpickle

from .. import serde
from ..tunables import FUSED_POLL_PERIOD as POLL_PERIOD
from ..wire import Done, Run, Stdin
from ..wire import Skip as SkipMsg
from ..wire.framing import Buffer
from . import niceness
from .outcome import error_done as _error_done

if TYPE_CHECKING:
    from .outbox import Link


class Granule(Protocol):
    """What fused calls need of their granule (granule.Granule): a Protocol, so that this module does not
    import the granule's, which imports it."""

    link: Link
    stdin_frames: deque[Stdin]

    def _function(self, key: str, load: Callable[[], Any]) -> Callable[..., Any]: ...

    def _call(self, run: Run, call: Callable[[], Any]) -> tuple[Done, list[Buffer]]: ...


_CURRENT: contextvars.ContextVar[_Call | None] = contextvars.ContextVar("granny_fused_call", default=None)


def settle(value: Any) -> Any:
    """The result of a call made one at a time: an ``async def`` function's coroutine runs to its end here."""
    if isinstance(value, types.CoroutineType):
        return asyncio.run(value)
    return value


class _Call:
    """One fused call: its Run, its task, and its output, sent as that call's Log frames."""

    def __init__(self, granule: Granule, run: Run) -> None:
        self.granule, self.run = granule, run
        self.part = 0
        self.pending: dict[str, list[str]] = {"stdout": [], "stderr": []}
        self.lost = 0
        self.task: asyncio.Task[None] | None = None
        self.cancelled = False

    def write(self, stream: str, text: str) -> None:
        self.pending[stream].append(text)
        if "\n" in text:
            self.flush(stream)

    def flush(self, stream: str) -> None:
        data = "".join(self.pending[stream])
        self.pending[stream] = []
        if data and not self._send(stream, data):
            self.lost += len(data)

    def _send(self, stream: str, data: str) -> bool:
        self.part += 1
        run = self.run
        return self.granule.link.send_log_for((run.req_id, run.index), run.grant, self.part, stream, data)

    def close(self) -> None:
        for stream in ("stdout", "stderr"):
            self.flush(stream)
        if self.lost:
            self._send("stderr", f"[granny: {self.lost} bytes of output lost]\n")


class _Router(io.TextIOBase):
    """``sys.stdout``/``sys.stderr`` while fused calls run: text goes to the running call's output."""

    def __init__(self, stream: str, fallback: Any) -> None:
        self.stream, self.fallback = stream, fallback

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        call = _CURRENT.get()
        if call is None:
            return int(self.fallback.write(text))
        call.write(self.stream, text)
        return len(text)

    def flush(self) -> None:
        call = _CURRENT.get()
        if call is None:
            self.fallback.flush()
        else:
            call.flush(self.stream)


class _Runner:
    def __init__(self, granule: Granule, runs: deque[tuple[Run, memoryview, int]],
                 skipped: set[tuple[str, int]]) -> None:
        self.granule, self.runs, self.skipped = granule, runs, skipped
        self.link = granule.link
        self.calls: dict[tuple[str, int], _Call] = {}
        self.fd = -1

    async def main(self, run: Run, body: memoryview, gen: int) -> None:
        loop = asyncio.get_running_loop()
        self.wake = asyncio.Event()
        self.start(run, body, gen)
        try:
            while self.calls:
                self.read(loop)
                if not self.calls:
                    break
                self.wake.clear()
                try:
                    await asyncio.wait_for(self.wake.wait(), POLL_PERIOD)
                except TimeoutError:
                    pass
        finally:
            if self.fd >= 0:
                loop.remove_reader(self.fd)

    def read(self, loop: asyncio.AbstractEventLoop) -> None:
        """Take every frame that arrived: start fused Runs, cancel Skipped calls, queue the rest."""
        while (frame := self.link.poll(wait=False)) is not None:
            msg, body, gen = frame
            if isinstance(msg, Run):
                if msg.fused:
                    self.start(msg, body, gen)
                else:
                    self.runs.append((msg, body, gen))  # run one at a time once the fused calls are done
            elif isinstance(msg, SkipMsg):
                call = self.calls.get((msg.req_id, msg.index))
                if call is not None and call.task is not None:
                    call.cancelled = True  # the planner already ended it: no Done
                    call.task.cancel()
                else:
                    self.skipped.add((msg.req_id, msg.index))
            elif isinstance(msg, Stdin):
                self.granule.stdin_frames.append(msg)
        fd = self.link.conn.sock.fileno()
        if fd != self.fd:  # the first pass, or the link reconnected
            if self.fd >= 0:
                loop.remove_reader(self.fd)
            self.fd = fd
            if fd >= 0:
                loop.add_reader(fd, self.wake.set)

    def start(self, run: Run, body: memoryview, gen: int) -> None:
        key = (run.req_id, run.index)
        if key in self.skipped:
            self.skipped.discard(key)
            return
        if gen != self.link.generation or key in self.calls:
            return  # sent by a planner that went away: the new one dispatches it again
        if not self.calls:
            self.link.start_task(run.req_id, run.index, gen, run.grant)  # announced if the link reconnects
        call = self.calls[key] = _Call(self.granule, run)
        ctx = contextvars.copy_context()
        ctx.run(_CURRENT.set, call)
        call.task = asyncio.get_running_loop().create_task(self.execute(call, body), context=ctx)

    async def execute(self, call: _Call, body: memoryview) -> None:
        run = call.run
        granule = self.granule
        done: Done | None = None
        payload: list[Buffer] = []
        try:
            segs = serde.unframe(body)
            fn = granule._function(run.fn_key, lambda: cloudpickle.loads(segs[0]))
            args, kwargs = serde.loads(segs[1:])
            value = fn(*args, **kwargs)
            if isinstance(value, types.CoroutineType):
                value = await value
        except asyncio.CancelledError as exc:
            if not call.cancelled:  # not the planner's cancel: the call's own outcome
                done, payload = _error_done(run, exc, limit=0)
        except BaseException as exc:  # the user's failure is the result
            done, payload = _error_done(run, _without_own_frame(exc), limit=0)
        else:
            done, payload = granule._call(run, lambda: value)  # the return value, serialised as for any call
        finally:
            call.close()
            self.calls.pop((run.req_id, run.index), None)
            self.wake.set()
        if done is not None:
            self._send_done(run, done, payload)

    def _send_done(self, run: Run, done: Done, payload: list[Buffer]) -> None:
        done.grant = run.grant  # each call's own (the link knows only the first call's)
        self.link.send_done(done, payload)


def _without_own_frame(exc: BaseException) -> BaseException:
    """The traceback from the user's code on (this module's frame above it is noise)."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next
    return exc.with_traceback(tb)


def serve(granule: Granule, run: Run, body: memoryview, gen: int, runs: deque[tuple[Run, memoryview, int]],
          skipped: set[tuple[str, int]]) -> None:
    """Run fused call ``run`` and every fused call sent while any is running; return when none is left."""
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _Router("stdout", saved[0]), _Router("stderr", saved[1])
    before = niceness.enter(run.nice)
    try:
        asyncio.run(_Runner(granule, runs, skipped).main(run, body, gen))
    finally:
        sys.stdout, sys.stderr = saved
        granule.link.end_task()
    if not niceness.leave(before):
        os._exit(0)  # it cannot go back to full priority: a fresh fork replaces it (its calls all reported)
