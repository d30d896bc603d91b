"""Lifecycles of tasks (one granule's work), apps and granules, as ``(state, event) -> state`` tables.

Anything not in a table is illegal and raises InvalidTransitionError, so a bug shows up where it
happens instead of as a task stuck in a state nobody expected.
"""

from __future__ import annotations

import enum
from typing import TypeVar

from ..errors import InvalidTransitionError


class TaskState(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class TaskEvent(enum.StrEnum):
    DISPATCH = "dispatch"
    SUCCEED = "succeed"
    FAIL = "fail"
    CANCEL = "cancel"
    REQUEUE = "requeue"  # journaled work found unfinished after a planner restart


TASK_TRANSITIONS: dict[tuple[TaskState, TaskEvent], TaskState] = {
    (TaskState.QUEUED, TaskEvent.DISPATCH): TaskState.RUNNING,
    (TaskState.QUEUED, TaskEvent.CANCEL): TaskState.CANCELLED,
    (TaskState.QUEUED, TaskEvent.FAIL): TaskState.FAILED,  # never fits, app aborted
    (TaskState.RUNNING, TaskEvent.SUCCEED): TaskState.SUCCEEDED,
    (TaskState.RUNNING, TaskEvent.FAIL): TaskState.FAILED,
    (TaskState.RUNNING, TaskEvent.CANCEL): TaskState.CANCELLED,
    (TaskState.RUNNING, TaskEvent.REQUEUE): TaskState.QUEUED,
}
TASK_FINAL = frozenset({TaskState.SUCCEEDED, TaskState.FAILED, TaskState.CANCELLED})


class AppKind(enum.StrEnum):
    """What an app is; the wire's Kind says what one granule runs (a script's ranks are SCRIPT runs)."""

    FUNCTIONS = "functions"  # a client's calls, independent of one another
    SCRIPT = "script"  # a script run as N granules (granny run, MPI): a gang that fails as one


class AppState(enum.StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class AppEvent(enum.StrEnum):
    ALL_SUCCEEDED = "all_succeeded"
    TASK_FAILED = "task_failed"
    CANCEL = "cancel"
    CLOSE = "close"  # the client that owns a functions app went away


APP_TRANSITIONS: dict[tuple[AppState, AppEvent], AppState] = {
    (AppState.RUNNING, AppEvent.ALL_SUCCEEDED): AppState.SUCCEEDED,
    (AppState.RUNNING, AppEvent.TASK_FAILED): AppState.FAILED,
    (AppState.RUNNING, AppEvent.CANCEL): AppState.CANCELLED,
    (AppState.RUNNING, AppEvent.CLOSE): AppState.SUCCEEDED,
}


class GranuleState(enum.StrEnum):
    IDLE = "idle"
    BUSY = "busy"
    DEAD = "dead"


class GranuleEvent(enum.StrEnum):
    ASSIGN = "assign"
    RELEASE = "release"
    EXIT = "exit"


GRANULE_TRANSITIONS: dict[tuple[GranuleState, GranuleEvent], GranuleState] = {
    (GranuleState.IDLE, GranuleEvent.ASSIGN): GranuleState.BUSY,
    (GranuleState.BUSY, GranuleEvent.RELEASE): GranuleState.IDLE,
    (GranuleState.IDLE, GranuleEvent.EXIT): GranuleState.DEAD,
    (GranuleState.BUSY, GranuleEvent.EXIT): GranuleState.DEAD,
}

S = TypeVar("S", bound=enum.StrEnum)
E = TypeVar("E", bound=enum.StrEnum)


def transition(table: dict[tuple[S, E], S], state: S, event: E, what: str = "") -> S:
    try:
        return table[(state, event)]
    except KeyError:
        raise InvalidTransitionError(f"{what}: no transition from {state.value!r} on {event.value!r}") from None
