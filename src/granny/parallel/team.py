"""A team: granules leased once and reused by many fork-join regions, like OpenMP's thread pool.

Theory of operation
- The master (the caller, thread 0) creates the board and asks the planner once for ``n - 1``
  gang-placed granules that run :func:`member.member_main`. That request is the team's *lease*: the
  granules stay with the team between regions, so a tight loop of small regions never pays a planner
  round trip per fork. Closing the team (or the planner cancelling the lease) ends it.
- A fork publishes a :class:`Region` on the board; the master runs its own share as thread 0, then
  waits for every member's ``done`` word. The join takes every member's error off the board and
  re-raises the caller's own, else the first member's (with its traceback as a note), then folds each thread's private copy of every reduction variable into the
  caller's array.
- A member that dies fails the lease future (the planner cancels the rest of the gang); the master
  notices while waiting and fails the region instead of hanging.
- An elastic team keeps the threads it was created with (one plain gang, never asked back) and, at a
  fork, first gives back what the planner asked for (its highest grown threads retire), else grows
  into the free slots of its master's host (of the cluster, for a master outside it), one revocable
  lease of one granule per thread. It grows only when nothing waits in the planner's queue and every
  thread it leased has joined: a lease the planner has not placed yet is not in the hosts' ``used``
  counts, so asking again would lease the same free slots twice, and the surplus would wait at the
  head of the queue. Its first fork never grows (its own threads are still joining), as the
  simulator's teams first grow at their first fork after the start. A retired thread's number is
  leased again only once its granule has ended, so an old member never runs as a new one.
"""

from __future__ import annotations

import os
import secrets
import time
import uuid
from collections.abc import Callable
from typing import Any

import numpy as np

from .. import serde
from ..config import ENV_HOST_ID, env, parse_address
from ..errors import GrannyError
from ..memory.segments import SharedArray
from ..mpi.world import route_ip
from ..transport import local_id
from ..tunables import GROWTH_INTERVAL
from .board import EXIT, Board, board_path
from .context import Context
from .member import member_main
from .region import REDUCE_OPS, SCHEDULES, Region, combine, identity, run_share
from .remote import Listener


class TeamError(GrannyError):
    """A parallel region failed: a team member raised, or died."""


class Team:
    def __init__(self, client: Any, num_threads: int, elastic: bool = False) -> None:
        if num_threads < 1:
            raise ValueError(f"num_threads must be at least 1, got {num_threads}")
        self.client = client
        self.team_id = uuid.uuid4().hex[:10]
        self.board = Board(board_path(self.team_id, os.getpid()), self.team_id, 0, create=True)
        self.elastic = elastic
        self.base = num_threads  # an elastic team never shrinks below the threads it was created with
        self.size = 1  # threads leased so far, the master included
        self.leases: list[tuple[Any, int, int]] = []  # (future, first thread, granules)
        self.retired: set[int] = set()
        self._holder: dict[int, Any] = {}  # thread -> the lease future of the granule that runs it
        self._forks = 0
        self._last_growth = 0.0
        # Members on another host cannot map the board: they dial this listener instead (remote.py).
        self._key = secrets.token_bytes(16)
        self.listener = Listener(self.board.path, self.team_id, self._key, route_ip(*parse_address(client.address)))
        self._privates: dict[tuple[str, int], SharedArray] = {}
        self._closed = False
        self._lease(1, num_threads - 1, revocable=False)
        self.size = num_threads

    def _lease(self, first: int, count: int, revocable: bool) -> None:
        """Lease ``count`` granules as threads ``first .. first + count - 1``."""
        if count <= 0:
            return
        lease = self.client.submit_gang(member_main, count, (
            self.team_id, self.board.path, local_id(), self.listener.address, self._key, first), lease=revocable)
        self.leases.append((lease, first, count))
        for t in range(first, first + count):
            self._holder[t] = lease

    def _rescale(self) -> None:
        """Elastic teams, at a fork: give back what the planner asked for, else take free slots."""
        give = sum(self.client.take_revoked(lease.req_id) for lease, _, _ in self.leases)
        live = [t for t in range(1, self.size) if t not in self.retired]
        for t in [t for t in live if t >= self.base][::-1][:give]:  # the highest go: the rest stay 1..n-1
            self.board.retire(t)
            self.retired.add(t)
        if give:
            self.size = 1 + max((t for t in live if t not in self.retired), default=0)
            return
        self._forks += 1
        now = time.monotonic()
        if self._forks == 1 or now - self._last_growth <= GROWTH_INTERVAL or self._joining():
            return
        self._last_growth = now  # a planner round trip: not on every fork
        free = self._free_slots()
        grow = 0
        while grow < free and self._reusable(self.size + grow):
            grow += 1
        for t in range(self.size, self.size + grow):
            if t in self.retired:
                self.retired.discard(t)
                self.board.reset(t)
            self._lease(t, 1, revocable=True)  # one lease each: a thread given back frees its own number
        self.size += grow

    def _joining(self) -> bool:
        """A leased thread has not joined yet (its granule is queued or starting)."""
        return any(not self.board.present(t) and not self._holder[t].done()
                   for t in range(1, self.size) if t not in self.retired)

    def _reusable(self, thread: int) -> bool:
        """``thread`` can be leased: new, or the granule that ran it before has ended."""
        holder = self._holder.get(thread)
        return holder is None or holder.done()

    def _free_slots(self) -> int:
        """Free slots of the master's host (of the cluster, outside one), none while anything is queued."""
        hosts = [h for h in self.client.hosts() if h.alive]
        mine = [h for h in hosts if h.host_id == env(ENV_HOST_ID)]
        free = sum(max(0, h.slots - h.used) for h in (mine or hosts))
        # Asked second, and only then: a fork of a team that fills its host pays one round trip, not two.
        return free if free and not self.client.query("waiting") else 0

    def _ready_threads(self, wanted: int) -> int:
        """Threads that can take part now: the master plus members present without a gap."""
        n = 1
        while n < min(wanted, self.size) and n not in self.retired and self.board.present(n):
            n += 1
        return n

    def fork(self, kind: str, body: Callable[..., Any], shared: dict[str, Any], reduce: dict[str, str],
             nthreads: int, space: range = range(0), schedule: str = "static", chunk: int | None = None,
             chunked: bool = False, retry: bool = False) -> None:
        if retry and (schedule != "static" or kind != "for"):
            raise ValueError("retry=True re-runs a lost thread's chunks, so it needs parallel_for with "
                             "schedule='static' (dynamic chunks are not known after a member dies)")
        if self._closed:
            raise TeamError("this team is closed")
        if schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
        if self.elastic:
            self._rescale()
            # Its own threads always take part (they are on their way); grown ones once they have joined.
            nthreads = max(min(self.base, self.size), self._ready_threads(self.size))
        else:
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
        except BaseException as exc:  # re-raised at the join, as a member's would be
            mine = exc
        board.wait_until(lambda: all(board.done(t) >= gen for t in range(1, nthreads)) or self._failed() is not None)
        self.listener.merge_joins()  # remote members' pages, now that no thread of the region writes any more
        # Every thread's error is taken off the board here, whichever one is raised: a failure is
        # reported once, by the region that failed, and never again by the next one.
        errors = [(t, err) for t in range(1, self.size) if (err := board.take_error(t, gen)) is not None]
        if mine is not None:
            raise mine
        for t, (failure, text) in errors[:1]:
            failure.add_note(f"\n(in parallel region thread {t} of {nthreads})\nRemote traceback:\n{text.rstrip()}")
            if len(errors) > 1:
                failure.add_note(f"({len(errors) - 1} other thread(s) of the region failed too)")
            raise failure
        lost = [t for t in range(1, nthreads) if board.done(t) < gen]
        if lost:
            self._closed = True
            cause = self._failed()
            if not retry:
                raise TeamError(f"a team member stopped during the parallel region: {cause}") from cause
            # Chunks are pure functions of the region's input, so the lost threads' chunks are simply
            # run again, here; their reduction partials are recomputed from the identity.
            for t in lost:
                again = dict(views)
                for name, (op, target) in targets.items():
                    again[name] = self._private(name, t, target).array
                    again[name][...] = identity(op, target.dtype)
                run_share(region, body, t, again, Context(board, 0, 1), board.next_chunk)
        for name, (op, target) in targets.items():
            combine(op, target, views[name])
            for t in range(1, nthreads):
                combine(op, target, self._privates[(name, t)].array)

    def _failed(self) -> BaseException | None:
        """The error of a lease whose granules died (the planner cancels the rest of that gang)."""
        for lease, _, _ in self.leases:
            if lease.done() and not lease.cancelled():
                exc = lease.exception()
                if exc is not None:
                    return exc  # type: ignore[no-any-return]
        return None

    @property
    def num_threads(self) -> int:
        return self._ready_threads(self.size) if self.elastic else self.size

    def bytes_shipped(self) -> tuple[int, int]:
        """(bytes sent to, bytes received from) members on other hosts, over the team's life."""
        return self.listener.bytes_shipped()

    def _private(self, name: str, thread: int, like: np.ndarray) -> SharedArray:
        """Thread ``thread``'s copy of reduction variable ``name``, kept for the team's next regions."""
        seg = self._privates.get((name, thread))
        if seg is None or seg.shape != like.shape or seg.dtype != like.dtype:
            if seg is not None:
                seg.unlink()
            seg = self._privates[(name, thread)] = SharedArray.create(like.shape, like.dtype, app_id="team")
        return seg

    def close(self) -> None:
        if self._closed and not self.leases:
            return
        if not self._closed:
            self._closed = True
            self.board.nthreads = self.size
            self.board.publish(None, EXIT)
        for lease, _, _ in self.leases:
            if getattr(self.client, "_closed", False):
                lease.cancel()  # no cluster to wait on: do not block the exit
            else:
                try:
                    lease.result(timeout=10)
                except Exception:  # a member that already failed was reported by its region
                    lease.cancel()
        self.leases.clear()
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
