"""``batch_nice`` (``--batch-nice``, ``GRANNY_BATCH_NICE``): a nice value 0-19 or ``idle`` (the kernel's idle class)."""

from __future__ import annotations

import pytest

from granny.config import NICE_IDLE, Config, parse_nice
from granny.errors import ConfigError


def test_idle_names_the_idle_class_and_survives_a_changed_copy() -> None:
    assert parse_nice("idle") == parse_nice(" IDLE ") == NICE_IDLE == 20
    assert parse_nice("19") == 19 and parse_nice(0) == 0
    config = Config(batch_nice="idle")  # type: ignore[arg-type]
    assert config.batch_nice == NICE_IDLE and config.with_(retain=5).batch_nice == NICE_IDLE


@pytest.mark.parametrize("raw", ["-1", "21", "soon", "19.5"])
def test_other_values_are_refused(raw: str) -> None:
    with pytest.raises(ConfigError, match="idle"):
        parse_nice(raw)


def test_the_environment_sets_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRANNY_BATCH_NICE", "idle")
    assert Config().batch_nice == NICE_IDLE


def test_by_default_delay_tolerant_calls_run_like_any_other(monkeypatch: pytest.MonkeyPatch) -> None:
    # Not idle by default: idle runs do not teach the runtime estimate (planner/idle.py), and under outside
    # load the idle class did worse (docs/functions.md).
    monkeypatch.delenv("GRANNY_BATCH_NICE", raising=False)
    assert Config().batch_nice == 0
