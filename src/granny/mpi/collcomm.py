"""What the shared-memory collectives (shmcoll.py, shmhosts.py) use of a communicator, as a Protocol.

collectives.py hands them the communicator (``self``) and imports them; typed with this Protocol instead
of ``Collectives``, they need not import collectives.py back, so the import graph points one way
(issue 17). ``Comm`` satisfies it; mypy checks that wherever a communicator is passed to them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:
    from .p2p import Engine
    from .runtime import Runtime


class CollComm(Protocol):
    # shmcoll.ShmColl | shmhosts.SpanColl | False | None: the regions, set by shmcoll.attach. Any, since
    # naming those types here would import the modules that import this one.
    _coll: Any
    _rt: Runtime
    _cid: int
    _engine: Engine
    _members: list[int]
    _hosts: list[int]
    _rank: int
    _size: int
    _cctx: int

    def _root(self, root: int) -> int: ...

    def _in_out(self, sendbuf: Any, recvbuf: Any) -> tuple[np.ndarray, np.ndarray | None]: ...

    def _recv_layout(self, spec: Any, v: bool, name: str, readonly: bool) -> tuple[np.ndarray, list[tuple[int, int]]]:
        ...
