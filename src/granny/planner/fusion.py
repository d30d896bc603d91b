"""Function fusion (DFaaS): delay-tolerant ``async def`` calls share one granule while they wait on I/O.

Theory of operation
- The client marks a call *fusable* when its function is a coroutine function (``Submit.fuse``); the
  planner fuses only delay-tolerant ones (latency-sensitive calls keep a granule each, as ever).
- A *fused granule* runs an asyncio loop (worker/fused.py) and takes up to ``cap`` such calls at once.
  It holds one slot, whatever the number of calls in it: the batch queue's share cap counts it once
  (:meth:`Batch.running`), and the host's busy count is its granule count, as for any granule.
- When the batch queue starts a fusable call it first looks for a fused granule with room (the one
  with the most calls already, so calls pack onto few slots); only if there is none does the call
  take a slot of its own, and its granule becomes fused. Only calls of the same app share a granule
  (they share its process: one app's code, never two tenants'). So a burst of 20 fusable calls with a cap of
  20 or more uses one slot.
- All of a fused granule's calls are *running* (none is merely prefetched): they finish in any order,
  and the granule is released when its last one ends. Cancelling one sends it a Skip, which the
  granule turns into ``Task.cancel()`` of that coroutine (cooperative: a call that never yields
  finishes its step first); the others run on. A fused granule that dies fails all its calls.
- Fused calls are never restarted or paused for latency-sensitive work (that would stop every call
  in the granule); they yield the CPU on their own whenever they await.
Pure: no sockets, threads or clocks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .lifecycle import TASK_TRANSITIONS, GranuleEvent, GranuleState, TaskEvent, transition
from .records import Action, Dispatch, Granule, Skip

if TYPE_CHECKING:
    from .batch_queue import Delayed
    from .protocols import BatchedState


def with_room(st: BatchedState, d: Delayed) -> Granule | None:
    """A fused granule that can take call ``d`` (the fullest such one), or None. Only calls of one app
    share a process: they run in one address space, as one app's code already may."""
    b = st.batch
    app_id = st.requests[d.req_id].app_id
    best: Granule | None = None
    for gid in b.fused:
        g = st.granules.get(gid)
        if g is None or not g.connected or g.state is not GranuleState.BUSY or len(g.tasks) >= b.fuse_cap:
            continue
        first = st.requests.get(g.tasks[0][0]) if g.tasks else None
        if first is None or first.app_id != app_id:
            continue
        host = st.hosts.get(g.host_id)
        if host is None or not host.alive or g.host_id in st.evicting:
            continue
        if best is None or len(g.tasks) > len(best.tasks):
            best = g
    return best


def attach(st: BatchedState, d: Delayed, granule: Granule) -> list[Action]:
    """Start fusable call ``d`` on ``granule``, a fused granule with room."""
    req = st.requests[d.req_id]
    task = req.tasks[0]
    task.state = transition(TASK_TRANSITIONS, task.state, TaskEvent.DISPATCH, d.req_id)
    task.granule_id, task.host_id = granule.granule_id, granule.host_id
    granule.tasks = [*granule.tasks, (d.req_id, 0)]
    return [Dispatch(granule.granule_id, d.req_id, 0, fused=True)]


def started(st: BatchedState, d: Delayed, actions: list[Action]) -> list[Action]:
    """``d`` was just placed on a granule of its own (``actions``, from the policy): that granule becomes
    fused, and its Dispatch says so."""
    b = st.batch
    out: list[Action] = []
    for a in actions:
        if isinstance(a, Dispatch) and a.req_id == d.req_id:
            b.fused.add(a.granule_id)
            d.granule = a.granule_id
            a = Dispatch(a.granule_id, a.req_id, a.index, fused=True)
        out.append(a)
    return out


def note(st: BatchedState, d: Delayed) -> None:
    """Count a call that now runs fused on ``d.granule``."""
    b = st.batch
    b.fused_calls += 1
    b.counts["fused"] += 1
    granule = st.granules.get(d.granule)
    if granule is not None:
        b.counts["fused_peak"] = max(b.counts["fused_peak"], len(granule.tasks))


def ended(st: BatchedState, d: Delayed) -> None:
    """A fused call ended (its request is final)."""
    b = st.batch
    b.fused_calls -= 1
    granule = st.granules.get(d.granule)
    if granule is None or not any(key[0] != d.req_id for key in granule.tasks):
        b.fused.discard(d.granule)  # (a late Done of a cancelled call finds it an ordinary granule again)


def cancel(st: BatchedState, granule: Granule, key: tuple[str, int]) -> list[Action]:
    """A running fused call is cancelled: its coroutine is (Skip), not the granule with the others."""
    if key in granule.tasks:
        granule.drop(key)
    if not granule.tasks and granule.state is GranuleState.BUSY:
        granule.to(GranuleEvent.RELEASE)
        st.batch.fused.discard(granule.granule_id)
    return [Skip(granule.granule_id, *key)]


def lost(st: BatchedState, granule: Granule) -> bool:
    """``granule`` died (or was killed): True if it was fused, so all its calls were running (none queued)."""
    b = st.batch
    if granule.granule_id not in b.fused:
        return False
    b.fused.discard(granule.granule_id)
    return True
