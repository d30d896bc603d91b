"""Free slots go to latency-sensitive calls prefetched behind running ones before any delay-tolerant call.

Why: when no slot is free, a latency-sensitive call may be prefetched behind a running short call
(state._prefetch). If a slot frees a moment later, the FIFO queue is empty, so the batch queue would
take it, and the latency-sensitive call would still wait for the call it is queued behind (1-20 ms in
the DFaaS benchmark's trace, where this was most of the latency-sensitive p99 excess). So before batch
calls are placed, each such call is taken back from its granule (a Skip; a Skip that comes too late is
handled as ever: the planner records the first report) and started on the free slot's idle granule.
Pure: no sockets, threads or clocks.
"""

from __future__ import annotations

from typing import Protocol

from .protocols import BatchedState
from .records import Action, Granule, Request


class PlannerState(BatchedState, Protocol):
    """What this module uses of the planner state (PlannerState is one; a Protocol, see protocols.py)."""

    def assign(self, req: Request, pending: list[int], hosts: tuple[str, ...]) -> list[Action]: ...

    def _unprefetch(self, granule: Granule, key: tuple[str, int], requeue: bool = True) -> list[Action]: ...


def take_back(st: PlannerState) -> list[Action]:
    pairs = [(g, key) for g in st.granules.values() if len(g.tasks) > 1 and g.granule_id not in st.batch.fused
             for key in reversed(g.tasks[1:])  # the last queued behind a granule would wait longest
             if key[0] not in st.batch.known and st.requests[key[0]].n == 1]
    if not pairs:
        return []
    actions: list[Action] = []
    for host in st.hosts.values():
        if not host.alive or host.host_id in st.evicting:
            continue
        while pairs and host.slots - host.busy() > 0 and host.idle():
            granule, (req_id, index) = pairs.pop(0)
            actions += st._unprefetch(granule, (req_id, index))  # back to the head of the FIFO queue ...
            if st.queue and st.queue[0] == req_id:
                st.queue.popleft()  # ... and straight onto the free slot
            actions += st.assign(st.requests[req_id], [index], (host.host_id,))
    return actions
