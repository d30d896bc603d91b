"""The server's side of the deadline guard (planner/deadlines.py): what a call's Done teaches the runtime
estimate, and what of it is journaled."""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

from granny.planner import deadlines
from granny.planner.batch_queue import Batch, Delayed
from granny.wire import Done, Status


class _Journal:
    def __init__(self) -> None:
        self.settings: dict[str, str] = {}

    def setting(self, key: str, value: str) -> None:
        self.settings[key] = value


def _server(now: list[float], sent: dict[tuple[str, int], float]) -> Any:
    payload = SimpleNamespace(submit=SimpleNamespace(fn_key="f", name=""))
    return SimpleNamespace(loop=SimpleNamespace(time=lambda: now[0]), state=SimpleNamespace(batch=Batch()),
                           sent_at=sent, payloads={"a": payload, "b": payload, "c": payload}, journal=_Journal())


def test_a_paused_calls_runtime_leaves_out_the_time_it_stood_stopped_and_the_spread_is_journaled() -> None:
    now = [100.0]
    p = _server(now, {("a", 0): 100.0, ("b", 0): 200.0, ("c", 0): 300.0})
    b: Batch = p.state.batch
    now[0] = 102.0
    deadlines.observe_runtime(p, Done(req_id="a", index=0, status=Status.OK))
    assert b.runtimes["f"] == 2.0 and p.journal.settings == {"runtime:f": "2.0"}  # no spread after one call
    # "b" ran 1 s, stood paused for 10 s (pausing.py banks what it ran and restarts its clock on continue), ran 1 s.
    b.known["b"] = Delayed(math.inf, 200.0, 1, "b", "f", started=211.0, ran=1.0)
    now[0] = 212.0
    deadlines.observe_runtime(p, Done(req_id="b", index=0, status=Status.OK))
    assert b.runtimes["f"] == 2.0  # 2 s of work, not 12
    # "c" was being paused as it ended (the pause did not hold): all it had was work.
    b.known["c"] = Delayed(math.inf, 300.0, 2, "c", "f", started=300.0, ran=3.5)
    b.paused["c"] = "g1"
    now[0] = 304.0
    deadlines.observe_runtime(p, Done(req_id="c", index=0, status=Status.OK))
    assert b.runtimes["f"] == 0.7 * 2.0 + 0.3 * 4.0 and b.spread["f"] == 0.25 * 2.0
    assert p.journal.settings == {"runtime:f": repr(b.runtimes["f"]), "spread:f": repr(b.spread["f"])}
    assert b.journaled["f"] == (b.runtimes["f"], b.spread["f"])
