"""The granule's side of a migration point (see granny.migration): its talk with the planner.

One :class:`GranuleControl` per MPI task. Rank 0 looks for the planner's hint among the frames the
link's watcher already read (no round trip), asks with a MigrateAsk when there is one, and waits for the
MigrateOrder. Every rank uses it to join the rendezvous of a new generation of its world, and a moving
rank to say where its state waits (MigrateOut).
"""

from __future__ import annotations

import time
from collections import deque
from typing import TYPE_CHECKING, Any, Protocol

from ..migration import Order
from ..mpi import runtime
from ..wire import MigrateAsk, MigrateHint, MigrateOrder, MigrateOut, MpiJoin, MpiWorld, Run, Stdin
from .outbox import Link

if TYPE_CHECKING:
    from ..mpi.world import Exchange


class LinkedGranule(Protocol):
    """What the control needs of its granule (granule.Granule): its link to the planner, and where Stdin
    frames that arrive meanwhile go."""

    link: Link
    stdin_frames: deque[Stdin]


class GranuleControl:
    plain = False

    def __init__(self, granule: LinkedGranule, run: Run, ip: str) -> None:
        self.granule, self.run, self.ip = granule, run, ip
        self.gen = run.gen
        self.asked = False  # the world's first point asks: the planner learns the world has points
        self.hinted = False
        # Checkpoints (Run.checkpoint): every N points ("3") or T seconds ("10s"), counted by rank 0.
        every = run.checkpoint
        self.every_points = int(every) if every and not every.endswith("s") else 0
        self.every_seconds = float(every[:-1]) if every.endswith("s") else 0.0
        self.points = 0
        self.last = time.monotonic()
        # When the previous point was reached: the planner's spot policy keeps a world on a host under
        # notice until its last point before the deadline, so it needs to know how far apart they are.
        self.previous = 0.0
        self.interval = 0.0

    def _due(self) -> bool:
        if self.every_points:
            return self.points >= self.every_points
        return bool(self.every_seconds) and time.monotonic() - self.last >= self.every_seconds

    def checkpointed(self) -> None:
        self.points, self.last = 0, time.monotonic()

    def should_ask(self) -> bool:
        link = self.granule.link
        while link.ready():
            frame = link.poll(wait=False)
            if frame is None:
                break
            self._other(frame)
        self.points += 1
        now = time.monotonic()
        self.interval, self.previous = (now - self.previous if self.previous else 0.0), now
        return self.hinted or not self.asked or self._due()

    def ask(self, ready: bool, why: str) -> Order:
        self.asked, self.hinted = True, False
        ask = MigrateAsk(req_id=self.run.req_id, gen=self.gen, ready=ready, why=why, checkpoint=self._due(),
                         interval=self.interval)
        msg = self.granule.link.request(
            ask, lambda m: isinstance(m, MigrateOrder) and m.req_id == self.run.req_id, self._other)
        assert isinstance(msg, MigrateOrder)
        return Order(msg.gen, tuple((m.index, m.source, m.target) for m in msg.moves), msg.reason, msg.freeze,
                     msg.checkpoint)

    def served(self, gen: int, ip: str, port: int, key: bytes, nbytes: int, checkpoint: int = 0) -> None:
        self.granule.link.send(MigrateOut(req_id=self.run.req_id, index=self.run.index, gen=gen, ip=ip, port=port,
                                          key=key, nbytes=nbytes, checkpoint=checkpoint))

    def world_id(self, gen: int) -> str:
        return runtime.world_id(self.run.req_id, gen)

    def route_ip(self) -> str:
        return self.ip

    def exchange(self, gen: int) -> Exchange:
        run = self.run

        def exchange(me: Any) -> tuple[list[Any], bytes, str]:
            from ..mpi.fabric import RankAddr

            join = MpiJoin(req_id=run.req_id, index=run.index, host_id=me.host_id, pid=me.pid, ip=me.ip,
                           port=me.port, gen=gen)
            msg = self.granule.link.request(
                join, lambda m: isinstance(m, MpiWorld) and m.req_id == run.req_id and m.gen == gen, self._other)
            assert isinstance(msg, MpiWorld)
            return [RankAddr(r.host_id, r.pid, r.ip, r.port) for r in msg.ranks], msg.key, msg.error

        return exchange

    def _other(self, frame: tuple[Any, memoryview, int]) -> None:
        """A frame that is not the answer. A Stdin is kept even when it came on a connection newer than
        the request's (the new planner forwards input it held): dropping it would lose the user's input."""
        msg = frame[0]
        if isinstance(msg, Stdin):
            self.granule.stdin_frames.append(msg)  # for sys.stdin of this task (see PlannerStdin)
        elif isinstance(msg, MigrateHint) and msg.req_id == self.run.req_id:
            self.hinted = True
