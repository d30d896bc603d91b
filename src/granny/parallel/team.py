"""A team: granules leased once and reused by many fork-join regions, like OpenMP's thread pool.

Theory of operation
- The master (the caller, thread 0) creates the board and asks the planner once for ``n - 1``
  gang-placed granules that run :func:`member.member_main`. That request is the team's *lease*: the
  granules stay with the team between regions, so a tight loop of small regions never pays a planner
  round trip per fork. Closing the team (or the planner cancelling the lease) ends it.
- A fork publishes a :class:`Region` on the board; the master runs its own share as thread 0, then
  waits for every member's ``done`` word. The join re-raises the first member exception (with its
  traceback as a note), then folds each thread's private copy of every reduction variable into the
  caller's array.
- A member that dies fails the lease future (the planner cancels the rest of the gang); the master
  notices while waiting and fails the region instead of hanging.
"""

from __future__ import annotations

import os
import secrets
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import numpy as np

from .. import serde
from ..config import parse_address
from ..errors import GrannyError
from ..memory.segments import SharedArray
from ..mpi.world import route_ip
from ..transport import local_id
from .board import EXIT, Board, board_path
from .region import REDUCE_OPS, SCHEDULES, Region, combine, identity, run_share
from .remote import Listener


class TeamError(GrannyError):
    """A parallel region failed: a team member raised, or died."""


class Context:
    """What a region's body sees as ``team``: its thread number, and barrier/critical/single/master."""

    def __init__(self, board: Board, thread: int, nthreads: int) -> None:
        self._board, self.thread_num, self.num_threads = board, thread, nthreads
        self._singles = 0

    def barrier(self) -> None:
        self._board.barrier()

    def critical(self) -> AbstractContextManager[None]:
        """``with team.critical():`` one thread of the team at a time (a kernel lock on the board)."""
        board = self._board

        class _Critical:
            def __enter__(self) -> None:
                board.lock()

            def __exit__(self, *exc: object) -> None:
                board.unlock()

        return _Critical()

    def single(self) -> bool:
        """True in exactly one thread (the first to get here); as OpenMP ``single nowait``."""
        self._singles += 1
        words = self._board.words
        self._board.lock()
        try:
            if words[4] < self._singles:
                words[4] = self._singles
                return True
            return False
        finally:
            self._board.unlock()

    def master(self) -> bool:
        return self.thread_num == 0


class Team:
    def __init__(self, client: Any, num_threads: int) -> None:
        if num_threads < 1:
            raise ValueError(f"num_threads must be at least 1, got {num_threads}")
        from .member import member_main

        self.client = client
        self.team_id = uuid.uuid4().hex[:10]
        self.board = Board(board_path(self.team_id, os.getpid()), self.team_id, 0, create=True)
        self.size = num_threads
        self.listener: Listener | None = None
        self.lease = None
        if num_threads > 1:
            # Members on another host cannot map the board: they dial this listener instead (remote.py).
            key = secrets.token_bytes(16)
            self.listener = Listener(self.board.path, self.team_id, key, route_ip(*parse_address(client.address)))
            self.lease = client.submit_gang(member_main, num_threads - 1, (
                self.team_id, self.board.path, local_id(), self.listener.address, key))
        self._privates: dict[tuple[str, int], SharedArray] = {}
        self._closed = False

    def fork(self, kind: str, body: Callable[..., Any], shared: dict[str, Any], reduce: dict[str, str],
             nthreads: int, space: range = range(0), schedule: str = "static", chunk: int | None = None,
             chunked: bool = False) -> None:
        if self._closed:
            raise TeamError("this team is closed")
        if schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
        nthreads = max(1, min(nthreads, self.size))
        key, fn_bytes = serde.dump_function(body)
        unknown = [name for name in reduce if name not in shared]
        if unknown:
            raise ValueError(f"reduce names {unknown} are not in shared=: pass the caller's arrays there")
        plain = {name: arr for name, arr in shared.items() if name not in reduce}
        region = Region(kind, key, fn_bytes, nthreads, space.start, space.stop, space.step, chunk or 0, schedule,
                        chunked, {name: _share_spec(name, arr) for name, arr in plain.items()})
        views: dict[str, Any] = {name: _local_view(arr) for name, arr in plain.items()}
        targets: dict[str, tuple[str, np.ndarray]] = {}
        for name, op in reduce.items():
            if op not in REDUCE_OPS:
                raise ValueError(f"reduce[{name!r}]: unknown op {op!r}; use one of {', '.join(REDUCE_OPS)}")
            target = _local_view(shared[name])
            if not isinstance(target, np.ndarray):
                raise TypeError(f"reduce[{name!r}] needs a numpy array (or shared array) in shared=")
            targets[name] = (op, target)
            paths = [""] + [self._private(name, t, target).name for t in range(1, nthreads)]
            region.reduce[name] = (op, paths, target.shape, target.dtype.str)
            views[name] = np.full(target.shape, identity(op, target.dtype), dtype=target.dtype)
        board = self.board
        board.nthreads = nthreads
        gen = board.publish(region)
        mine: BaseException | None = None
        try:
            run_share(region, body, 0, views, Context(board, 0, nthreads), board.next_chunk)
        except BaseException as exc:  # noqa: BLE001 - re-raised at the join, as a member's would be
            mine = exc
        lease = self.lease
        board.wait_until(lambda: all(board.done(t) >= gen for t in range(1, nthreads))
                         or (lease is not None and lease.done()))
        if mine is not None:
            raise mine
        for t in range(1, nthreads):
            err = board.take_error(t)
            if err is not None:
                failure, text = err
                failure.add_note(f"\n(in parallel region thread {t} of {nthreads})\nRemote traceback:\n{text.rstrip()}")
                raise failure
        if any(board.done(t) < gen for t in range(1, nthreads)):
            self._closed = True
            assert lease is not None
            cause = lease.exception()
            raise TeamError(f"a team member stopped during the parallel region: {cause}") from cause
        for name, (op, target) in targets.items():
            combine(op, target, views[name])
            for t in range(1, nthreads):
                combine(op, target, self._privates[(name, t)].array)

    def bytes_shipped(self) -> tuple[int, int]:
        """(bytes sent to, bytes received from) members on other hosts, over the team's life."""
        return self.listener.bytes_shipped() if self.listener is not None else (0, 0)

    def _private(self, name: str, thread: int, like: np.ndarray) -> SharedArray:
        """Thread ``thread``'s copy of reduction variable ``name``, kept for the team's next regions."""
        seg = self._privates.get((name, thread))
        if seg is None or seg.shape != like.shape or seg.dtype != like.dtype:
            if seg is not None:
                seg.unlink()
            seg = self._privates[(name, thread)] = SharedArray.create(like.shape, like.dtype, app_id="team")
        return seg

    def close(self) -> None:
        if self._closed and self.lease is None:
            return
        if not self._closed:
            self._closed = True
            self.board.nthreads = self.size
            self.board.publish(None, EXIT)
        if self.lease is not None:
            if getattr(self.client, "_closed", False):
                self.lease.cancel()  # no cluster to wait on: do not block the exit
            else:
                try:
                    self.lease.result(timeout=10)
                except Exception:  # noqa: BLE001 - a member that already failed was reported by its region
                    self.lease.cancel()
            self.lease = None
        if self.listener is not None:
            self.listener.close()
        self.board.unlink()
        self.board.close()
        for seg in self._privates.values():
            seg.unlink()
        self._privates.clear()

    def __enter__(self) -> Team:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _share_spec(name: str, arr: Any) -> tuple[str, tuple[int, ...], str, int]:
    if not isinstance(arr, SharedArray):
        raise TypeError(f"shared[{name!r}] is a {type(arr).__name__}, not a shared array: create it with "
                        "granny.shared_array(shape, dtype) so the team's granules can map it")
    return arr.name, arr.shape, arr.dtype.str, arr.offset


def _local_view(arr: Any) -> Any:
    view = getattr(arr, "array", None)
    return view if isinstance(view, np.ndarray) else arr
