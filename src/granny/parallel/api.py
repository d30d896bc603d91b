"""granny's OpenMP for numpy: ``parallel_for`` and ``parallel`` over teams of granules.

Differences from OpenMP, on purpose:
- A region's body is a function, not a block: ``body(i, **shared)`` (or ``body(r: range, **shared)``
  with ``chunked=True``) for ``parallel_for``, and ``body(team, **shared)`` for ``Team.run``.
- Threads are processes, so only shared arrays (``granny.shared_array``) are shared; any other
  state the body touches is private to each thread, as if declared ``private``.
- ``team.single()`` returns True in one thread and does not wait (OpenMP's ``single nowait``); call
  ``team.barrier()`` after it when the others must wait.
- Reduction variables are numpy arrays named in ``shared=`` and ``reduce=``; scalars go in 1-element
  arrays.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from ..client import shared_client
from ..config import ENV_SLOTS, env
from ..worker.task_end import at_task_end
from .context import Context
from .team import Team

_teams: dict[int, Team] = {}
_atexit = [False]


def _slots() -> int:
    return int(env(ENV_SLOTS) or "0") or (os.cpu_count() or 1)


def team(num_threads: int | None = None, elastic: bool = False) -> Team:
    """The process's cached team of ``num_threads`` (default: this machine's cores), leased on first use.

    An elastic team starts with what it is given and, at each fork, grows to the free slots and gives
    back what the planner asks for."""
    n = num_threads or _slots()
    key = -1 if elastic else n
    t = _teams.get(key)
    if t is None or t._closed:
        if t is not None:
            t.close()  # a team that lost a member: release what is left of it
        client = shared_client()
        if not _atexit[0]:
            import atexit

            # Registered after the client (atexit runs last-in first-out): the teams are released
            # while the (embedded) cluster is still there to take their lease back.
            _atexit[0] = True
            atexit.register(close_teams)
            at_task_end(close_teams)  # in a granule, a task's teams end with it (the granule runs others)
        t = _teams[key] = Team(client, n, elastic=elastic)
    return t


def parallel_for(n: int | range, body: Callable[..., Any], *, shared: dict[str, Any] | None = None,
                 reduce: dict[str, str] | None = None, schedule: str = "static", chunk: int | None = None,
                 num_threads: int | None = None, chunked: bool = False, elastic: bool = False,
                 retry: bool = False) -> None:
    """Run ``body(i, **shared)`` for every ``i`` in ``range(n)`` (or the given range) across a team.

    Blocks until every index has run (the join). ``reduce={"name": "sum"}`` gives each thread a private
    copy of ``shared["name"]`` starting at the op's identity, folded into the caller's array at the
    join. ``schedule="static"`` splits the range into one block per thread (or round-robin chunks of
    ``chunk``); ``"dynamic"`` hands out chunks as threads ask for them. With ``retry=True`` (static
    schedules) the chunks of a member that died, or whose host died, are run again by the caller."""
    space = range(n) if isinstance(n, int) else n
    if not isinstance(space, range):
        raise TypeError(f"parallel_for needs an int or a range, got {type(n).__name__}")
    t = team(num_threads if not elastic else (num_threads or 1), elastic=elastic)
    t.fork("for", body, dict(shared or {}), dict(reduce or {}), t.size, space, schedule, chunk, chunked, retry)


class parallel:  # used like a function: ``with granny.parallel(num_threads=4) as team``
    """``with parallel(num_threads=4) as team:`` a team for several regions; ``team.run(body)`` runs
    ``body(team_ctx, **shared)`` on every thread (``thread_num``, ``num_threads``, ``barrier()``,
    ``critical()``, ``single()``, ``master()``) and ``team.parallel_for(...)`` shares a loop."""

    def __init__(self, num_threads: int | None = None) -> None:
        self.num_threads = num_threads or _slots()
        self._team: Team | None = None

    def __enter__(self) -> parallel:
        self._team = team(self.num_threads)
        return self

    def __exit__(self, *exc: object) -> None:
        self._team = None

    @property
    def thread_num(self) -> int:
        return 0  # the caller is the team's master thread

    def run(self, body: Callable[..., Any], *, shared: dict[str, Any] | None = None,
            reduce: dict[str, str] | None = None) -> None:
        assert self._team is not None, "use `with granny.parallel(...) as team:`"
        self._team.fork("run", body, dict(shared or {}), dict(reduce or {}), self._team.size)

    def parallel_for(self, n: int | range, body: Callable[..., Any], **kwargs: Any) -> None:
        parallel_for(n, body, num_threads=self.num_threads, **kwargs)


def close_teams() -> None:
    for t in list(_teams.values()):
        t.close()
    _teams.clear()


__all__ = ["Context", "Team", "close_teams", "parallel", "parallel_for", "team"]
