"""The migration point protocol, run by every rank of a world at the same step.

Theory of operation
1. Rank 0 decides whether to ask the planner: only if the planner hinted that the world would gain
   (the hint waits on its connection; looking costs no round trip), and at the world's first point,
   which tells the planner that this world has points. A broadcast of that answer is the point's only
   cost when nothing moves: about one ``Barrier``.
2. Asking: every rank first drains what is in flight to it (a marker to and from every peer: the
   channels are FIFO, so after the markers nothing sent before the point is still travelling), then
   checks that nothing is pending (posted receives, unreceived messages, unfinished sends). A move is
   refused, and the point returns, if any rank has something pending. Rank 0 asks; the order is
   broadcast.
3. No moves: return. Moving ranks pack ``(resume, args)`` and serve it (:mod:`.ship`), tell the planner
   where, hand it over and end (:class:`MigratedAway`). The others rebuild the world as its next
   generation (:func:`granny.mpi.runtime.rejoin`), which completes when the moved ranks join from their
   new hosts, and return.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from ..mpi import runtime
from . import control, ship
from .control import MigratedAway, Order

MARK_TAG = 7  # on the world's collective context; collectives use tags 0 and 2


def migration_point(resume: Callable[..., Any], *args: Any) -> None:
    """Let the planner move this rank here: collective over the world (every rank calls it at the same
    step). Returns when this rank stays; when it moves, this process ends here and ``resume(*args)`` runs
    as the same rank on the new host (its return value is the rank's result, as the program's would be).

    In a function call run by a granule, the planner may freeze the call here to take its slot (a
    delay-tolerant call, see planner/freezing.py): the call ends here and ``resume(*args)`` runs later,
    its return value being the call's result. Elsewhere (a plain ``python prog.py``, a parallel region) it
    returns."""
    point = control.current()
    if point is None:
        return
    if not callable(resume):
        raise TypeError(f"migration_point needs a callable to resume with, got {type(resume).__name__}")
    if point.plain:
        _plain(point, resume, args)
        return
    if not runtime.configured():
        return
    ctl = cast(control.Control, point)
    from ..mpi import win

    win.check_none_open()  # before anything collective: every rank with a window fails the same way
    from ..mpi import api  # initialises MPI, as the program's own import of mpi4py would

    world = api.COMM_WORLD
    rank, size = world.Get_rank(), world.Get_size()
    ask = ctl.should_ask() if rank == 0 else False
    if size > 1:
        ask = world.bcast(ask, root=0)
    if not ask:
        return
    ready, why = _quiescent(world)
    if size > 1:
        states = world.allgather((ready, why))
        ready = all(r for r, _ in states)
        why = "; ".join(f"rank {i} has {w}" for i, (r, w) in enumerate(states) if not r)
    order: Order | None = ctl.ask(ready, why) if rank == 0 else None
    if size > 1:
        order = world.bcast(order, root=0)
    assert order is not None
    if order.checkpoint:
        _save(ctl, order.checkpoint, resume, args)
        if rank == 0:
            ctl.checkpointed()
        return
    if order.freeze:
        _leave(ctl, order.gen, "the planner's store (frozen)", resume, args)
    if not order.moves:
        return
    mine = [m for m in order.moves if m[0] == rank]
    if mine:
        _leave(ctl, order.gen, mine[0][2], resume, args)
    runtime.rejoin(ctl.world_id(order.gen), order.gen, ctl.exchange(order.gen))
    ctl.gen = order.gen
    if size > 1:
        world.Barrier()  # every same-host peer has mapped this rank's new inbox ...
    runtime.get().world.fabric.unlink()  # ... so its name can go


def _plain(ctl: control.PointControl, resume: Callable[..., Any], args: tuple[Any, ...]) -> None:
    """A function call's point: asking costs a round trip, so the control asks only when it must."""
    if not ctl.should_ask():
        return
    order = ctl.ask(True, "")
    if order.freeze:
        data, buffers = ship.pack(resume, args, {"gen": order.gen})
        server = ship.Server(ctl.route_ip())
        ctl.served(order.gen, server.ip, server.port, server.key, len(data) + sum(b.nbytes for b in buffers))
        server.serve(data, buffers)
        raise MigratedAway(order.gen, "the planner's store (frozen)")


def _quiescent(world: Any) -> tuple[bool, str]:
    """Drain what is in flight to this rank, then say whether anything is pending here."""
    rt = runtime.get()
    engine = rt.world.engine
    me, size = world.Get_rank(), world.Get_size()
    cctx = world._cctx
    if size > 1:
        sends = [engine.send(cctx, p, MARK_TAG, b"", 0, obj=False) for p in range(size) if p != me]
        recvs = [engine.post(cctx, p, MARK_TAG, memoryview(bytearray(0))) for p in range(size) if p != me]
        for req in sends + recvs:
            engine.wait(req)
    # Point-to-point contexts only (even ids; see comm.py): collectives are blocking, so none can be
    # pending here, and a faster peer's part of the next step (the allgather below) may already be queued.
    pending = []
    if any(q for ctx, q in engine.posted.items() if ctx % 2 == 0):
        pending.append("receives posted and not completed")
    if any(q for ctx, q in engine.unexpected.items() if ctx % 2 == 0):
        pending.append("messages sent to it and not received yet")
    if engine.sends or engine.deferred:
        pending.append("sends not completed")
    return not pending, " and ".join(pending)


def _save(ctl: control.Control, ckpt: int, resume: Callable[..., Any], args: tuple[Any, ...]) -> None:
    """A checkpoint: hand this rank's state to the planner's store, and go on once it is on disk there."""
    rt = runtime.get()
    data, buffers = ship.pack(resume, args, {"next_cid": rt.next_cid, "checkpoint": ckpt})
    server = ship.Server(ctl.route_ip())
    ctl.served(ctl.gen, server.ip, server.port, server.key, len(data) + sum(b.nbytes for b in buffers), ckpt)
    server.serve(data, buffers)  # False (not fetched in time): this checkpoint is lost, the run goes on


def _leave(ctl: control.Control, gen: int, target: str, resume: Callable[..., Any], args: tuple[Any, ...]) -> None:
    rt = runtime.get()
    data, buffers = ship.pack(resume, args, {"next_cid": rt.next_cid, "gen": gen})
    server = ship.Server(ctl.route_ip())
    ctl.served(gen, server.ip, server.port, server.key, len(data) + sum(b.nbytes for b in buffers))
    server.serve(data, buffers)
    raise MigratedAway(gen, target)
