"""The worker's task-end hooks (worker/task_end.py): what code above the worker registers to end with a task."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from granny.worker import task_end


@pytest.fixture(autouse=True)
def no_hooks(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(task_end, "_hooks", [])
    yield


def test_hooks_run_after_every_task_in_the_order_registered() -> None:
    calls: list[str] = []
    task_end.at_task_end(lambda: calls.append("teams"))
    task_end.at_task_end(lambda: calls.append("arrays"))
    task_end.task_ended()
    task_end.task_ended()
    assert calls == ["teams", "arrays", "teams", "arrays"]


def test_a_hook_registered_twice_runs_once_per_task() -> None:
    calls: list[int] = []

    def hook() -> None:
        calls.append(1)

    task_end.at_task_end(hook)
    task_end.at_task_end(hook)  # e.g. a second team made in the process
    task_end.task_ended()
    assert calls == [1]
