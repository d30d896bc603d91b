"""Retention rules, driven purely: PlannerState plus Retention, time passed in, no clocks."""

from __future__ import annotations

import pytest

from granny.config import Config, format_duration, parse_duration
from granny.errors import ConfigError
from granny.planner.lifecycle import AppState
from granny.planner.retention import ABANDON_FACTOR, Known, Retention
from granny.planner.state import Dispatch, PlannerState

from .test_state import done, of, planner

RETAIN = 10.0


def run_calls(s: PlannerState, app_id: str, count: int, prefix: str = "r") -> list[str]:
    """Submit ``count`` one-granule calls and finish each one; returns their ids."""
    ids = []
    for i in range(count):
        rid = f"{prefix}{i}"
        ids.append(rid)
        (d,) = of(s.submit(rid, app_id, 1), Dispatch)
        done(s, d)
    return ids


def test_finished_requests_are_pruned_only_after_the_window() -> None:
    s, r = planner(("h", 2)), Retention(RETAIN)
    ids = run_calls(s, "a", 3)
    r.collect(s, now=100.0)
    assert not r.prune(s, now=100.0 + RETAIN - 0.1, busy=set())
    assert set(ids) <= set(s.requests)
    out = r.prune(s, now=100.0 + RETAIN, busy=set())
    assert [rid for rid, _ in out.requests] == ids
    assert not set(ids) & set(s.requests)
    assert s.apps["a"].requests == [] and s.apps["a"].pruned == {"succeeded": 3}
    assert all(r.lookup(rid) is Known.PRUNED for rid in ids)


def test_each_request_is_stamped_when_it_finishes() -> None:
    s, r = planner(("h", 2)), Retention(RETAIN)
    run_calls(s, "a", 1, "old")
    r.collect(s, now=0.0)
    run_calls(s, "a", 1, "new")
    r.collect(s, now=5.0)
    assert [rid for rid, _ in r.prune(s, now=RETAIN, busy=set()).requests] == ["old0"]
    assert [rid for rid, _ in r.prune(s, now=5.0 + RETAIN, busy=set()).requests] == ["new0"]


def test_running_request_is_never_pruned() -> None:
    s, r = planner(("h", 1)), Retention(RETAIN)
    s.submit("busy", "a", 1)
    r.collect(s, now=0.0)
    assert not r.prune(s, now=1e9, busy=set())
    assert "busy" in s.requests


def test_undelivered_result_is_kept_until_delivered() -> None:
    s, r = planner(("h", 2)), Retention(RETAIN)
    (rid,) = run_calls(s, "a", 1)
    r.undelivered.add(rid)
    r.collect(s, now=0.0)
    assert not r.prune(s, now=RETAIN, busy=set())
    assert not r.prune(s, now=10 * RETAIN, busy=set())
    r.delivered(rid)
    assert not r.prune(s, now=10 * RETAIN + RETAIN - 1, busy=set())  # looked at again one window after
    assert [x for x, _ in r.prune(s, now=11 * RETAIN, busy=set()).requests] == [rid]
    assert r.sizes()["waiting"] == 0


def test_undelivered_result_of_a_client_that_never_comes_back_is_pruned_in_the_end() -> None:
    s, r = planner(("h", 2)), Retention(RETAIN)
    (rid,) = run_calls(s, "a", 1)
    r.undelivered.add(rid)
    r.collect(s, now=0.0)
    now = RETAIN
    while not r.prune(s, now=now, busy=set()):
        assert now < RETAIN * (ABANDON_FACTOR + 3), "kept for ever"
        now += RETAIN
    assert now >= RETAIN * (ABANDON_FACTOR + 1) and rid not in s.requests
    assert r.sizes()["undelivered"] == 0 and r.sizes()["waiting"] == 0


def test_request_still_referenced_is_looked_at_again() -> None:
    s, r = planner(("h", 2)), Retention(RETAIN)
    (rid,) = run_calls(s, "a", 1)
    r.collect(s, now=0.0)
    assert not r.prune(s, now=RETAIN, busy={rid})
    assert rid in s.requests
    assert r.prune(s, now=2 * RETAIN, busy=set()).requests == [(rid, 1)]


def test_running_script_app_keeps_its_finished_requests() -> None:
    s, r = planner(("h", 2)), Retention(RETAIN)
    (d,) = of(s.submit("rank0", "job", 1, app_kind="script"), Dispatch)
    s.submit("rank1", "job", 1, app_kind="script")
    done(s, d)  # rank 0 ended; the job still runs
    r.collect(s, now=0.0)
    assert not r.prune(s, now=RETAIN, busy=set())
    assert s.apps["job"].state is AppState.RUNNING and "rank0" in s.requests


def test_ended_app_is_pruned_a_window_after_it_ended_and_its_requests_went() -> None:
    s, r = planner(("h", 2)), Retention(RETAIN)
    run_calls(s, "a", 2)
    s.close_app("a")
    r.collect(s, now=0.0)
    first = r.prune(s, now=1.0, busy=set())  # the app is seen ended at 1.0; its requests are not due
    assert not first
    assert [rid for rid, _ in r.prune(s, now=RETAIN, busy=set()).requests] == ["r0", "r1"]
    assert "a" in s.apps  # ended at 1.0: not yet a window ago
    out = r.prune(s, now=1.0 + RETAIN, busy=set())
    assert out.apps == [("a", "functions", "", "succeeded")] and "a" not in s.apps


def test_running_functions_app_is_never_pruned() -> None:
    s, r = planner(("h", 2)), Retention(RETAIN)
    run_calls(s, "a", 2)
    r.collect(s, now=0.0)
    r.prune(s, now=RETAIN, busy=set())
    assert not r.prune(s, now=1e9, busy=set()).apps
    assert s.apps["a"].state is AppState.RUNNING


def test_tombstones_expire_one_window_after_pruning() -> None:
    s, r = planner(("h", 2)), Retention(RETAIN)
    (rid,) = run_calls(s, "a", 1)
    r.collect(s, now=0.0)
    r.prune(s, now=RETAIN, busy=set())
    assert r.lookup(rid) is Known.PRUNED
    r.prune(s, now=2 * RETAIN - 1, busy=set())
    assert r.lookup(rid) is Known.PRUNED
    r.prune(s, now=2 * RETAIN, busy=set())
    assert r.lookup(rid) is None
    assert r.sizes() == {"finished": 0, "tombstones": 0, "undelivered": 0, "waiting": 0, "journal_only": 0}


def test_requests_finished_before_a_restart_are_known_then_pruned() -> None:
    s, r = PlannerState(5.0), Retention(RETAIN)
    r.remember(["old"], ["ended-app"], now=0.0)
    assert r.lookup("old") is Known.JOURNAL  # a resubmission is answered from the journal
    out = r.prune(s, now=RETAIN, busy=set())
    assert out.requests == [("old", 0)] and out.apps == [("ended-app", "", "", "")]
    assert r.lookup("old") is Known.PRUNED


def test_memory_stays_flat_over_many_windows() -> None:
    s, r = planner(("h", 2)), Retention(RETAIN)
    for window in range(50):
        run_calls(s, "a", 100, prefix=f"w{window}-")
        r.collect(s, now=window * RETAIN)
        r.prune(s, now=window * RETAIN, busy=set())
        assert len(s.requests) <= 200 and len(s.apps["a"].requests) <= 200
        assert r.sizes()["tombstones"] <= 200 and not s.finished
    assert s.apps["a"].pruned["succeeded"] >= 4800


@pytest.mark.parametrize(("raw", "seconds"), [("90", 90.0), ("90s", 90.0), ("15m", 900.0), ("1h", 3600.0),
                                              ("2d", 172800.0), ("500ms", 0.5), (" 1.5H ", 5400.0)])
def test_parse_duration(raw: str, seconds: float) -> None:
    assert parse_duration(raw) == seconds
    assert parse_duration(format_duration(seconds)) == seconds


@pytest.mark.parametrize("raw", ["", "soon", "-1h", "0", "inf", "nan"])
def test_parse_duration_rejects(raw: str) -> None:
    with pytest.raises(ConfigError):
        parse_duration(raw)


def test_config_retain_default_env_and_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GRANNY_RETAIN", raising=False)
    assert Config().retain == 3600.0
    monkeypatch.setenv("GRANNY_RETAIN", "30m")
    assert Config().retain == 1800.0
    assert Config().with_(retain=5.0).retain == 5.0


def test_planner_flag_retain() -> None:
    from granny.cli import build_parser

    assert build_parser().parse_args(["planner", "--retain", "2h"]).retain == "2h"
    assert build_parser().parse_args(["planner"]).retain is None  # GRANNY_RETAIN, else 1h
