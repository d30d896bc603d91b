"""The lifecycle tables: every legal transition works, every other (state, event) pair raises."""

from __future__ import annotations

import enum
import itertools

import pytest

from granny.errors import GrannyError, InvalidTransitionError
from granny.planner.lifecycle import (
    APP_TRANSITIONS,
    GRANULE_TRANSITIONS,
    TASK_FINAL,
    TASK_TRANSITIONS,
    AppEvent,
    AppState,
    GranuleEvent,
    GranuleState,
    TaskEvent,
    TaskState,
    transition,
)

# The specification, written out independently of the module under test.
T, TE = TaskState, TaskEvent
EXPECTED_TASK = {
    (T.QUEUED, TE.DISPATCH): T.RUNNING,
    (T.QUEUED, TE.CANCEL): T.CANCELLED,
    (T.QUEUED, TE.FAIL): T.FAILED,
    (T.RUNNING, TE.SUCCEED): T.SUCCEEDED,
    (T.RUNNING, TE.FAIL): T.FAILED,
    (T.RUNNING, TE.CANCEL): T.CANCELLED,
    (T.RUNNING, TE.REQUEUE): T.QUEUED,
}
A, AE = AppState, AppEvent
EXPECTED_APP = {
    (A.RUNNING, AE.ALL_SUCCEEDED): A.SUCCEEDED,
    (A.RUNNING, AE.TASK_FAILED): A.FAILED,
    (A.RUNNING, AE.CANCEL): A.CANCELLED,
    (A.RUNNING, AE.CLOSE): A.SUCCEEDED,
}
G, GE = GranuleState, GranuleEvent
EXPECTED_GRANULE = {
    (G.IDLE, GE.ASSIGN): G.BUSY,
    (G.BUSY, GE.RELEASE): G.IDLE,
    (G.IDLE, GE.EXIT): G.DEAD,
    (G.BUSY, GE.EXIT): G.DEAD,
}

MACHINES = [
    ("task", TASK_TRANSITIONS, EXPECTED_TASK, TaskState, TaskEvent),
    ("app", APP_TRANSITIONS, EXPECTED_APP, AppState, AppEvent),
    ("granule", GRANULE_TRANSITIONS, EXPECTED_GRANULE, GranuleState, GranuleEvent),
]


def all_pairs() -> list[object]:
    out = []
    for name, table, expected, states, events in MACHINES:
        for state, event in itertools.product(states, events):
            out.append(pytest.param(name, table, expected, state, event, id=f"{name}-{state.value}-{event.value}"))
    return out


@pytest.mark.parametrize(("name", "table", "expected", "state", "event"), all_pairs())
def test_every_pair(name: str, table: dict, expected: dict, state: enum.StrEnum, event: enum.StrEnum) -> None:  # type: ignore[type-arg]
    if (state, event) in expected:
        assert transition(table, state, event, f"{name} x") is expected[(state, event)]
    else:
        with pytest.raises(InvalidTransitionError) as info:
            transition(table, state, event, f"{name} x")
        message = str(info.value)
        assert f"{name} x" in message and repr(state.value) in message and repr(event.value) in message


@pytest.mark.parametrize(("name", "table", "expected", "states", "events"), MACHINES, ids=[m[0] for m in MACHINES])
def test_tables_match_the_specification(name: str, table: dict, expected: dict, states: type, events: type) -> None:  # type: ignore[type-arg]
    assert table == expected
    for (state, event), target in table.items():
        assert isinstance(state, states) and isinstance(event, events) and isinstance(target, states)


def test_final_task_states_are_terminal() -> None:
    assert {T.SUCCEEDED, T.FAILED, T.CANCELLED} == TASK_FINAL
    for state, event in itertools.product(TASK_FINAL, TaskEvent):
        with pytest.raises(InvalidTransitionError):
            transition(TASK_TRANSITIONS, state, event)


def test_final_app_states_and_dead_granules_are_terminal() -> None:
    for state, event in itertools.product([A.SUCCEEDED, A.FAILED, A.CANCELLED], AppEvent):
        with pytest.raises(InvalidTransitionError):
            transition(APP_TRANSITIONS, state, event)
    for event in GranuleEvent:
        with pytest.raises(InvalidTransitionError):
            transition(GRANULE_TRANSITIONS, G.DEAD, event)


def test_every_state_is_reachable_from_the_initial_one() -> None:
    for table, start, states in ((TASK_TRANSITIONS, T.QUEUED, TaskState), (APP_TRANSITIONS, A.RUNNING, AppState),
                                 (GRANULE_TRANSITIONS, G.IDLE, GranuleState)):
        seen, frontier = {start}, [start]
        while frontier:
            state = frontier.pop()
            for (src, _), dst in table.items():
                if src is state and dst not in seen:
                    seen.add(dst)
                    frontier.append(dst)
        assert seen == set(states)


def test_invalid_transition_is_a_granny_error_without_chained_keyerror() -> None:
    with pytest.raises(InvalidTransitionError) as info:
        transition(TASK_TRANSITIONS, T.SUCCEEDED, TE.DISPATCH, "task r[0]")
    assert isinstance(info.value, GrannyError)
    assert info.value.__cause__ is None and info.value.__suppress_context__
