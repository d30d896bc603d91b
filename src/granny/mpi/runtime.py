"""Per-process MPI state: the world this rank belongs to, initialisation flags, context ids, Abort.

The granule configures it (``configure``) before running an MPI task; the world itself is built on
first use, when the program imports ``mpi4py.MPI`` (or ``granny.mpi``), as mpi4py initialises MPI on
import. Outside a granule the world is a singleton of one rank.
"""

from __future__ import annotations

import hashlib
import sys
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .world import Exchange, World, create_world, singleton_world


@dataclass
class Runtime:
    world: World
    next_cid: int = 2  # 0: COMM_WORLD, 1: COMM_SELF
    initialized: bool = True
    finalized: bool = False
    # Every live communicator handle (by id: equal handles are distinct objects), so that a rebuilt
    # world (after a migration) can refresh what they cache about where ranks are.
    comms: weakref.WeakValueDictionary[int, Any] = field(default_factory=weakref.WeakValueDictionary)
    gen: int = 0  # how many times the world was rebuilt (its generation; see granny.migration)


def world_id(req_id: str, gen: int = 0) -> str:
    """The name of a world's shared-memory objects: a new one for every generation."""
    key = req_id if gen == 0 else f"{req_id}#{gen}"
    return hashlib.blake2b(key.encode(), digest_size=6).hexdigest()


class AbortExit(SystemExit):
    """Raised by MPI.Abort: the granule reports the code and the planner ends every other rank."""


_params: tuple[str, int, int, Exchange, str, str] | None = None
_gen = 0  # the generation the granule starts in (> 0: it resumes a moved or thawed world)
packing = [False]  # pickling a migrating rank's state: communicators may travel (see Comm.__reduce__)
_rt: Runtime | None = None


def configure(world_id: str, rank: int, size: int, exchange: Exchange, host_id: str, ip: str, gen: int = 0) -> None:
    global _params, _gen
    _params = (world_id, rank, size, exchange, host_id, ip)
    _gen = gen


def configured() -> bool:
    return _params is not None


def get() -> Runtime:
    global _rt
    if _rt is None:
        if _params is not None:
            world_id, rank, size, exchange, host_id, ip = _params
            world = create_world(world_id, rank, size, exchange, host_id, ip, join=_gen > 0)
        else:
            world = singleton_world()
        _rt = Runtime(world)
    return _rt


def rejoin(new_world_id: str, gen: int, exchange: Exchange) -> None:
    """Rebuild this rank's world as generation ``gen`` (after some ranks moved; see granny.migration).

    The rank and its matching engine stay (nothing is pending: a move waits for that); the data plane is
    new. Communicator handles keep their engine and their ring lists (filled again in place), and drop
    what they derived from the old placement (host groups, schedules)."""
    assert _rt is not None and _params is not None
    _, rank, size, _, host_id, ip = _params
    old = _rt.world
    old.fabric.close()
    new = create_world(new_world_id, rank, size, exchange, host_id, ip, join=True)
    engine = old.engine
    fabric = new.fabric
    fabric.handler = engine._on_record
    if fabric.tcp is not None:
        fabric.tcp.set_sink(engine.sink)
    old.fabric.fast_out[:] = fabric.fast_out
    old.fabric.fast_in[:] = fabric.fast_in
    fabric.fast_out, fabric.fast_in = old.fabric.fast_out, old.fabric.fast_in
    engine.f = fabric
    new.engine = engine
    _rt.world = new
    _rt.gen = gen
    for comm in list(_rt.comms.values()):
        comm._placement_changed(new.hosts)


def started() -> bool:
    return _rt is not None


def abort(code: int, rank: int) -> None:
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    world_rank = _rt.world.rank if _rt is not None else rank
    print(f"MPI_ABORT was invoked on rank {world_rank} in communicator MPI_COMM_WORLD with errorcode {code}",
          file=sys.stderr, flush=True)
    raise AbortExit(code if code else 1)


# MPI.Finalize, registered by api.py when it is imported: this module is below it, and a program that never
# imported the MPI namespace has nothing to finalise (issue 17: no look-up in sys.modules).
_finalizers: list[Callable[[], None]] = []


def at_finalize(hook: Callable[[], None]) -> None:
    if hook not in _finalizers:
        _finalizers.append(hook)


def finalize() -> None:
    """What mpi4py's atexit hook does when a program ends without calling MPI.Finalize (a barrier over the
    world, so that a rank that ends early does not end the job under its peers). For the granule to call
    after a script returns or raises SystemExit; not after an uncaught exception (fail fast)."""
    if _rt is not None and not _rt.finalized:
        for hook in _finalizers:
            hook()


def shutdown() -> None:
    """Release the world (inbox, doorbell, sockets); the granule calls this when the task ends."""
    global _rt, _params
    if _rt is not None:
        _rt.world.close()
    _rt, _params = None, None
