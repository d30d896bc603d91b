"""What ends with a granule's task: hooks run after every task, registered by the code that needs them.

A granule runs tasks of many apps in turn, and what a task set up for itself in the process must end
with it (a parallel region's team holds granules leased for that task's app). Code above the worker
registers a hook here when it first sets such a thing up; the granule runs the hooks after each task.
So the worker needs to know nothing of that code, nor look it up in ``sys.modules`` (issue 17).
In a process that is not a granule the hooks are registered and never run.
"""

from __future__ import annotations

from collections.abc import Callable

_hooks: list[Callable[[], None]] = []


def at_task_end(hook: Callable[[], None]) -> None:
    """Call ``hook()`` after every task this granule runs from now on (registering it again changes nothing)."""
    if hook not in _hooks:
        _hooks.append(hook)


def task_ended() -> None:
    """The granule's task ended: call the hooks, in the order they were registered."""
    for hook in list(_hooks):
        hook()
