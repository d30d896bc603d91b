"""What the deadline guard knows survives a planner kill -9 (planner/deadlines.py): a function's runtime spread
beside its mean, and what a frozen call ran before its freeze."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import granny
from granny.cluster import LocalCluster
from granny.planner.batch_queue import DEVS, MARGIN

from ..polling import wait_for
from .test_delay_tolerance import _count, call_row, stepwise
from .test_functions import block_until
from .test_recovery import restart_planner


def test_a_frozen_calls_banked_runtime_and_the_guards_spread_survive_a_planner_kill9(tmp_path: Path) -> None:
    undisturbed = stepwise(str(tmp_path / "here"), 0, 60, 7)
    log, gate = tmp_path / "runs", tmp_path / "gate"
    journal = tmp_path / "data" / "journal.sqlite"

    def query(sql: str) -> list[tuple[object, ...]]:
        with contextlib.closing(sqlite3.connect(f"file:{journal}?mode=ro", uri=True)) as db:
            return list(db.execute(sql))

    cluster = LocalCluster(workers=1, slots=1, data_dir=tmp_path / "data", granule_user="same")
    try:
        with granny.connect(cluster.address, cluster.token) as client:
            relaxed = client.options(delay_tolerance=120)
            for steps in (4, 50):  # two runs of different lengths (0.2 s, 2.5 s): a mean and a wide spread
                assert relaxed.submit(stepwise, str(tmp_path / f"teach{steps}"), 0, steps, 7).result(timeout=120)
            settings = wait_for(lambda: (s := dict(query("SELECT key, value FROM settings WHERE key LIKE 'runtime:%' "
                                                         "OR key LIKE 'spread:%'"))) and len(s) == 2 and s,
                                timeout=30, what="the estimate and its spread journaled")
            mean, spread = (float(str(v)) for _, v in sorted(settings.items()))  # runtime:..., spread:...
            assert spread > 0.05, settings

            background = relaxed.submit(stepwise, str(log), 0, 60, 7)
            wait_for(lambda: _count(Path(str(log) + ".step")) >= 8, timeout=60, what="the call some steps in")
            blocker = client.submit(block_until, str(gate))  # latency-sensitive: the call freezes at its next point
            ran = wait_for(lambda: next((float(str(r[1])) for r in query("SELECT req_id, ran FROM frozen")
                                         if r[0] == background.req_id), 0.0), timeout=60, what="the frozen call journaled")
            # Both matter below, and cannot cancel out: lost, either would change the guard's count by more
            # than 0.3 s (the spread's part is more than twice ran).
            assert 0.3 < ran < DEVS * spread / 2, (ran, mean, spread)

            def row() -> dict[str, object]:
                return call_row(client, background.req_id)

            def needed(r: dict[str, object]) -> float:
                """deadline - latest start: the work left by the guard's count (mean + spreads - ran) + margin."""
                return float(str(r["deadline_in"])) - float(str(r["slack"]))

            before = wait_for(lambda: (r := row()).get("waiting") and r, timeout=60, what="the frozen call waiting")
            assert abs(needed(before) - (mean + DEVS * spread - ran + MARGIN)) < 0.005, (before, mean, spread, ran)
            restart_planner(cluster, True, "--restart-grace", "1")
            after = wait_for(lambda: (r := row()).get("waiting") and r, timeout=60,
                             what="the frozen call back in the batch queue after the restart grace")
            # Without the spread the guard would count the mean only; without ran, the whole runtime again.
            assert abs(needed(after) - needed(before)) < 0.005, (before, after)
            gate.touch()
            assert blocker.result(timeout=60) == "local"
            assert background.result(timeout=120) == undisturbed
    finally:
        gate.touch()
        cluster.stop()
