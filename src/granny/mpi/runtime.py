"""Per-process MPI state: the world this rank belongs to, initialisation flags, context ids, Abort.

The granule configures it (``configure``) before running an MPI task; the world itself is built on
first use, when the program imports ``mpi4py.MPI`` (or ``granny.mpi``), as mpi4py initialises MPI on
import. Outside a granule the world is a singleton of one rank.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from .world import Exchange, World, create_world, singleton_world


@dataclass
class Runtime:
    world: World
    next_cid: int = 2  # 0: COMM_WORLD, 1: COMM_SELF
    initialized: bool = True
    finalized: bool = False


class AbortExit(SystemExit):
    """Raised by MPI.Abort: the granule reports the code and the planner ends every other rank."""


_params: tuple[str, int, int, Exchange, str, str] | None = None
_rt: Runtime | None = None


def configure(world_id: str, rank: int, size: int, exchange: Exchange, host_id: str, ip: str) -> None:
    global _params
    _params = (world_id, rank, size, exchange, host_id, ip)


def configured() -> bool:
    return _params is not None


def get() -> Runtime:
    global _rt
    if _rt is None:
        if _params is not None:
            world_id, rank, size, exchange, host_id, ip = _params
            world = create_world(world_id, rank, size, exchange, host_id, ip)
        else:
            world = singleton_world()
        _rt = Runtime(world)
    return _rt


def started() -> bool:
    return _rt is not None


def abort(code: int, rank: int) -> None:
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    world_rank = _rt.world.rank if _rt is not None else rank
    print(f"MPI_ABORT was invoked on rank {world_rank} in communicator MPI_COMM_WORLD with errorcode {code}",
          file=sys.stderr, flush=True)
    raise AbortExit(code if code else 1)


def finalize() -> None:
    """What mpi4py's atexit hook does when a program ends without calling MPI.Finalize (a barrier over the
    world, so that a rank that ends early does not end the job under its peers). For the granule to call
    after a script returns or raises SystemExit; not after an uncaught exception (fail fast)."""
    if _rt is not None and not _rt.finalized:
        api = sys.modules.get("granny.mpi.api")
        if api is not None:
            api.Finalize()


def shutdown() -> None:
    """Release the world (inbox, doorbell, sockets); the granule calls this when the task ends."""
    global _rt, _params
    if _rt is not None:
        _rt.world.close()
    _rt, _params = None, None
