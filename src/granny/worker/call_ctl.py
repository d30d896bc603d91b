"""The granule's side of a migration point in a plain function call (not an MPI world): freezing.

A delay-tolerant call's migration points let the planner take its slot for latency-sensitive work
without losing what it did (planner/freezing.py): at a point after the planner's hint, the call packs
``(resume, args)``, the planner's store pulls it, and the call ends here (``MigratedAway``); later it
runs ``resume(*args)`` in some granule, from the store (:meth:`PlainControl.thaw`).

- Asking costs a round trip, so the call asks only at its first two points (the planner learns that it
  has points and how far apart they come) and then only when hinted. A call the planner will never
  freeze (not delay-tolerant) is told so at its first point and never asks again.
- Frames read while looking for the hint or waiting for the answer that are not its own (a prefetched
  Run, a Skip) are kept for the granule's loop (``Granule.deferred``), in order.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any, Protocol

from ..migration import Order
from ..mpi.world import route_ip
from ..wire import MigrateAsk, MigrateHint, MigrateOrder, MigrateOut, Run, Stdin
from ..wire.messages import NOT_PREEMPTIBLE
from .outbox import Link

ASKS = 2  # points at which a call asks unhinted: the first registers it, the second measures its pace


class CallGranule(Protocol):
    link: Link
    stdin_frames: deque[Stdin]
    deferred: deque[tuple[Any, memoryview, int]]
    address: tuple[str, int]


class PlainControl:
    plain = True

    def __init__(self, granule: CallGranule, run: Run) -> None:
        self.granule, self.run = granule, run
        self.gen = run.gen
        self.asks = 0
        self.never = False  # the planner said it will not freeze this call
        self.hinted = False
        self.previous = 0.0
        self.interval = 0.0

    def should_ask(self) -> bool:
        link = self.granule.link
        while link.ready():
            frame = link.poll(wait=False)
            if frame is None:
                break
            self._other(frame)
        now = time.monotonic()
        self.interval, self.previous = (now - self.previous if self.previous else 0.0), now
        return self.hinted or (not self.never and self.asks < ASKS)

    def ask(self, ready: bool, why: str) -> Order:
        self.asks += 1
        self.hinted = False
        ask = MigrateAsk(req_id=self.run.req_id, gen=self.gen, ready=ready, why=why, interval=self.interval)
        msg = self.granule.link.request(
            ask, lambda m: isinstance(m, MigrateOrder) and m.req_id == self.run.req_id, self._other)
        self.never = msg.reason == NOT_PREEMPTIBLE
        return Order(msg.gen, (), msg.reason, msg.freeze)

    def served(self, gen: int, ip: str, port: int, key: bytes, nbytes: int, checkpoint: int = 0) -> None:
        self.granule.link.send(MigrateOut(req_id=self.run.req_id, index=self.run.index, gen=gen, ip=ip, port=port,
                                          key=key, nbytes=nbytes, checkpoint=checkpoint))

    def route_ip(self) -> str:
        return route_ip(*self.granule.address)

    def _other(self, frame: tuple[Any, memoryview, int]) -> None:
        msg = frame[0]
        if isinstance(msg, Stdin):
            self.granule.stdin_frames.append(msg)
        elif isinstance(msg, MigrateHint):
            self.hinted = self.hinted or msg.req_id == self.run.req_id
        elif not isinstance(msg, MigrateOrder):  # a prefetched Run, a Skip: the granule's loop takes them
            self.granule.deferred.append(frame)


def thaw(granule: CallGranule, run: Run) -> tuple[Any, tuple[Any, ...]]:
    """``(resume, args)`` of a frozen call, pulled from the planner's store (``run.resume_from`` is ":port")."""
    from ..migration import ship

    source = run.resume_from
    if source.startswith(":"):
        source = f"{granule.address[0]}{source}"
    data, buffers = ship.pull(source, run.resume_key)
    resume, args, _ = ship.unpack(data, buffers)
    return resume, tuple(args)
