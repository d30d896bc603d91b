"""Building one rank's MPI world: rendezvous through the planner, then wiring the data plane.

Theory of operation
- A rank creates its inbox, doorbell and (for multi-host worlds) TCP listener *before* it announces
  itself, so by the time the planner hands out the full table every inbox a peer may open exists.
- ``exchange`` (given by the granule) sends this rank's address to the planner and blocks until the
  planner has the addresses of all ranks; it returns the table plus a per-world key that proves a
  TCP peer belongs to the world.
- After the first barrier every same-host peer has mapped this rank's inbox, so its file name is
  unlinked: the memory then lives exactly as long as the processes of the world, ``kill -9`` included.
- Outside a granule (a plain ``python prog.py``) the world is a singleton, as with mpi4py without
  mpirun.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import MpiError
from .fabric import Fabric, RankAddr
from .p2p import Engine

Exchange = Callable[[RankAddr], tuple[list[RankAddr], bytes, str]]


@dataclass
class World:
    world_id: str
    rank: int
    size: int
    addrs: list[RankAddr]
    fabric: Fabric
    engine: Engine
    hosts: list[int]  # host index of every rank (ranks sharing an index share memory)

    def close(self) -> None:
        self.fabric.close()


def create_world(world_id: str, rank: int, size: int, exchange: Exchange | None, host_id: str, ip: str,
                 join: bool = False) -> World:
    """``join``: a world of one rank joins its rendezvous too (a new generation after a move or a thaw: the
    planner learns from it that the world runs again); a first one needs no peer's address."""
    fabric = Fabric(world_id, rank, size)
    tcp = None
    if size > 1 and exchange is not None:
        from .tcp import TcpLinks

        tcp = TcpLinks(rank, b"", bind_host=ip if ip else "0.0.0.0")
        port = tcp.address[1]
    else:
        port = 0
    me = RankAddr(host_id, os.getpid(), ip, port)
    if exchange is None or (size == 1 and not join):
        addrs, key = [me], b""
    else:
        addrs, key, err = exchange(me)
        if err:
            fabric.close()
            raise MpiError(err)
    fabric.attach(addrs)
    if tcp is not None:
        if fabric.remote:
            tcp.key = key
            tcp.connect({r: (addrs[r].ip, addrs[r].port) for r in fabric.remote})
            fabric.tcp = tcp
        else:
            tcp.close()
    order: dict[str, int] = {}
    hosts = [order.setdefault(a.host_id, len(order)) for a in addrs]
    engine = Engine(fabric)
    if fabric.tcp is not None:
        fabric.tcp.set_sink(engine.sink)  # large matched receives from other hosts land in place
    return World(world_id, rank, size, addrs, fabric, engine, hosts)


def singleton_world() -> World:
    return create_world(f"s{os.getpid()}-{uuid.uuid4().hex[:6]}", 0, 1, None, socket.gethostname(), "")


def route_ip(host: str, port: int) -> str:
    """The local address this host uses to reach ``host`` (what peers on other hosts should dial)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect((host, port or 1))
            return str(s.getsockname()[0])
    except OSError:
        return "127.0.0.1"
