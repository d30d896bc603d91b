"""When the planner's tick loop wakes: at the state's next deadline, or sooner when an event brings one closer.

Why: the loop sleeps until ``PlannerState.next_deadline()`` as it was after the last tick (at most a
heartbeat period, 0.5 s). Events in between can bring a deadline closer: a tight delay-tolerant call
submitted then has a latest start before that wake-up, a call paused for latency-sensitive work has a
latest resume time, a hinted call a time by which it must have frozen, a call just placed an estimated
end that calls waiting behind it may need its slot at (planner/batch.py, pausing.py, freezing.py,
overrun.py). Each was acted on only at the next tick, up to half a second late: a tight call promoted
late missed its deadline (benchmarks/dfaas_bench.py, a 138 ms tolerance, started after 146 ms).
After the actions of every event the server hands the batch queue's next deadline to :meth:`due`,
which wakes the loop early if it is sooner than the planned wake-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import math


class Ticker:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.at = math.inf  # the planned wake-up (loop time); inf while a tick runs (it plans the next itself)
        self._wake = asyncio.Event()

    async def sleep(self, seconds: float) -> None:
        """Sleep ``seconds``, or until :meth:`due` names a sooner time."""
        self.at = self.loop.time() + seconds
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            while True:
                await asyncio.wait_for(self._wake.wait(), max(0.0, self.at - self.loop.time()))
                self._wake.clear()  # (woken: sleep on to the new, sooner time)
        self.at = math.inf

    def due(self, when: float | None) -> None:
        """Something must happen at ``when`` (loop time): wake the loop then, if that is sooner than planned."""
        if when is not None and when < self.at:
            self.at = when
            self._wake.set()
