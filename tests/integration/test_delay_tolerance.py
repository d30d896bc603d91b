"""Delay-tolerant calls on real processes (planner/batch.py): they run in free slots, a deadline that cannot
be met is refused at submission (client and HTTP), and the planner counts deadlines met."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest

import granny
from granny.cluster import LocalCluster
from granny.errors import ConfigError, DeadlineError, GrannyError

from ..polling import wait_for, wait_for_pid


def slow(seconds: float) -> float:
    import time

    end = time.monotonic() + seconds
    while time.monotonic() < end:  # busy: the call's runtime is what the planner observes
        pass
    return seconds


def test_delay_tolerant_calls_run_and_impossible_deadlines_are_refused(cluster: LocalCluster) -> None:
    with granny.connect(cluster.address, cluster.token) as client:
        relaxed = client.options(delay_tolerance=30)
        assert relaxed.submit(slow, 0.3).result(timeout=60) == 0.3  # teaches the planner its runtime
        futures = [relaxed.submit(slow, 0.3) for _ in range(3)] + [client.options(delay_tolerance=-1).submit(pow, 2, 5)]
        assert [f.result(timeout=60) for f in futures] == [0.3, 0.3, 0.3, 32]
        with pytest.raises(DeadlineError, match="cannot be met"):
            client.options(delay_tolerance=0.1).submit(slow, 0.3).result(timeout=60)
        counts = client.query("counters")["batch"]
        assert counts["met"] >= 4 and counts["refused"] == 1 and counts.get("missed", 0) == 0
    with pytest.raises(ConfigError, match="delay_tolerance"):
        client.options(delay_tolerance="soon")  # type: ignore[arg-type]


def test_http_invoke_carries_a_tolerance_and_refuses_an_impossible_deadline(cluster: LocalCluster) -> None:
    base = f"http://{cluster.http_address}"
    headers = {"Authorization": f"Bearer {cluster.token}", "Content-Type": "application/json"}

    def post(path: str, body: object) -> tuple[int, dict[str, object]]:
        req = urllib.request.Request(base + path, data=json.dumps(body).encode(), headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    source = "import time\ndef main(x):\n    end = time.monotonic() + x\n    while time.monotonic() < end:\n        pass\n    return x\n"
    status, _ = post("/v1/functions", {"name": "spin", "source": source, "delay_tolerance": 20})
    assert status == 201
    status, body = post("/v1/functions/spin/invoke?wait=true", {"input": 0.3})
    assert status == 200 and body["state"] == "succeeded", body  # the function's default tolerance: 20 s
    status, body = post("/v1/functions/spin/invoke?wait=true", {"input": 0.3, "delay_tolerance": 0.05})
    assert status == 422 and "cannot be met" in str(body), body
    status, body = post("/v1/functions/spin/invoke?wait=true", {"input": 0.01, "delay_tolerance": -1})
    assert status == 200 and body["state"] == "succeeded", body


def spin_logged(path: str, seconds: float) -> int:
    import time

    with open(path, "a") as fh:
        fh.write("start\n")
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass
    with open(path) as fh:
        return len(fh.readlines())


def test_a_restartable_call_gives_its_slot_to_latency_sensitive_work_and_runs_again(tmp_path: Path) -> None:
    log = tmp_path / "starts"
    cluster = LocalCluster(workers=1, slots=1, data_dir=tmp_path / "data", granule_user="same")
    try:
        with granny.connect(cluster.address, cluster.token) as client:
            background = client.options(delay_tolerance=120, restartable=True).submit(spin_logged, str(log), 2.0)
            wait_for(lambda: log.exists(), timeout=60, what="the background call running")
            assert client.submit(pow, 3, 3).result(timeout=60) == 27  # it did not wait 2 s behind the other
            assert background.result(timeout=60) == 2  # stopped once, then run again from the start
            assert client.query("counters")["batch"]["preempted"] == 1
    finally:
        cluster.stop()


def spin_until(pidfile: str, flag: str) -> int:
    import os

    with open(pidfile, "w") as fh:
        fh.write(str(os.getpid()))
    spins = 0
    while not os.path.exists(flag):  # busy, and no migration point: it can only be paused
        spins += 1
    return os.getpid()


def read_fifo(path: str) -> str:
    with open(path) as fh:  # blocks until the test writes: the call is running meanwhile
        return fh.read()


def test_a_call_that_cannot_restart_is_paused_for_latency_sensitive_work_and_continues(tmp_path: Path) -> None:
    import os

    pidfile, flag, fifo = tmp_path / "pid", tmp_path / "flag", tmp_path / "fifo"
    os.mkfifo(fifo)
    cluster = LocalCluster(workers=1, slots=1, data_dir=tmp_path / "data", granule_user="same")
    try:
        with granny.connect(cluster.address, cluster.token) as client:
            # A call submitted before the worker's granule is warm waits in the batch queue ("delayed").
            wait_for(lambda: [h.idle_granules for h in client.hosts()] == [1], timeout=60, what="a warm granule")
            background = client.options(delay_tolerance=120).submit(spin_until, str(pidfile), str(flag))
            pid = wait_for_pid(pidfile, what="the background call running")
            urgent = client.submit(read_fifo, str(fifo))  # finds the only slot taken

            def state() -> str:
                with open(f"/proc/{pid}/status") as fh:
                    return next(line.split()[1] for line in fh if line.startswith("State:"))

            wait_for(lambda: state() == "T", timeout=60, what="the background call's process stopped")
            row = next(g for g in client.query("app", client.app_id)["granules"] if g["req_id"] == background.req_id)
            assert row["paused"] and row["preempted"] == 1 and row["delayed"] is False, row
            flag.touch()  # it cannot see this while it is stopped
            with open(fifo, "w") as fh:  # the latency-sensitive call runs while the other is paused
                fh.write("urgent")
            assert urgent.result(timeout=60) == "urgent"
            assert background.result(timeout=60) == pid  # the same process went on: not restarted
            counts = wait_for(lambda: (c := client.query("counters")["batch"]).get("met", 0) == 1 and c, timeout=30,
                              what="the deadline counted")
            assert counts["paused"] == 1 and counts["resumed"] == 1, counts
            assert counts.get("preempted", 0) == 0
    finally:
        cluster.stop()


def test_queued_delay_tolerant_calls_keep_their_deadlines_across_a_planner_kill9(tmp_path: Path) -> None:
    import contextlib
    import sqlite3
    import time

    from .test_functions import block_until
    from .test_recovery import restart_planner

    gate = tmp_path / "gate"
    cluster = LocalCluster(workers=1, slots=1, data_dir=tmp_path / "data", granule_user="same")
    try:
        with granny.connect(cluster.address, cluster.token) as client:
            relaxed = client.options(delay_tolerance=120)
            assert relaxed.submit(slow, 0.3).result(timeout=60) == 0.3  # its runtime estimate is journaled
            # Submitted at once: the first call's result reached us over its lane, maybe before its Done left
            # its granule; a pause of that granule then does not hold (worker/finishing.py): the estimate
            # still reaches the journal before the restart below.
            blocker = client.submit(block_until, str(gate))  # holds the only slot
            wait_for(lambda: client.query("hosts")[0]["used"] == 1, timeout=60, what="the slot taken")
            t0 = time.time()
            queued = [relaxed.submit(slow, 0.3) for _ in range(2)] + [client.options(delay_tolerance=-1).submit(slow, 0.3)]

            def described() -> dict[str, dict[str, object]]:
                try:
                    return {g["req_id"]: g for g in client.query("app", client.app_id)["granules"]}
                except GrannyError:  # the planner is being restarted
                    return {}

            def journaled() -> bool:  # (else the client resubmits them: deadlines from then on)
                with contextlib.closing(sqlite3.connect(f"file:{tmp_path / 'data' / 'journal.sqlite'}?mode=ro",
                                                        uri=True)) as db:
                    ids = {r[0] for r in db.execute("SELECT req_id FROM requests")}
                    estimates = db.execute("SELECT count(*) FROM settings WHERE key LIKE 'runtime:%'").fetchone()[0]
                return estimates > 0 and all(f.req_id in ids for f in queued)

            def all_waiting() -> bool:
                rows = described()
                return all(rows.get(f.req_id, {}).get("waiting") for f in queued)

            wait_for(all_waiting, timeout=60, what="the calls in the batch queue")
            wait_for(journaled, timeout=60, what="the calls in the planner's journal")
            restart_planner(cluster, True, "--restart-grace", "1")
            wait_for(all_waiting, timeout=60, what="the calls back in the batch queue after the restart grace")
            before = time.time()
            rows = described()
            for f in queued[:2]:
                row = rows[f.req_id]
                deadline_in, slack = float(row["deadline_in"]), float(row["slack"])  # type: ignore[arg-type]
                # Counted from the original submission (journal lag aside), not from the restart:
                assert deadline_in <= 120 - (before - t0) + 0.5, (deadline_in, before - t0)
                assert deadline_in - slack >= 0.3  # latest start = deadline - estimate - margin: the estimate survived
            assert rows[queued[2].req_id]["deadline_in"] is None  # "whenever" stays whenever
            gate.touch()
            assert blocker.result(timeout=60) == "local"
            assert [f.result(timeout=60) for f in queued] == [0.3, 0.3, 0.3]
            # (A result may reach its client, over its lane, before the planner has counted it.)
            counts = wait_for(lambda: (c := client.query("counters")["batch"]).get("met", 0) == 3 and c, timeout=30,
                              what="the deadlines counted")
            assert counts["restored"] == 3 and counts.get("missed", 0) == 0, counts
    finally:
        gate.touch()
        cluster.stop()


def my_nice() -> tuple[int, int]:
    import os

    return os.getpid(), os.nice(0)  # (the calling thread's nice value)


def test_with_batch_nice_delay_tolerant_calls_run_niced_and_the_granule_goes_back(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRANNY_BATCH_NICE", "19")  # the planner LocalCluster starts inherits it
    cluster = LocalCluster(workers=1, slots=1, data_dir=tmp_path / "data", granule_user="same")
    try:
        with granny.connect(cluster.address, cluster.token) as client:
            pid, nice = client.options(delay_tolerance=-1).submit(my_nice).result(timeout=60)
            assert nice == 19
            # (its result may come over the lane before the planner has the slot back: wait for that)
            wait_for(lambda: client.query("counters")["batch"].get("met") == 1, timeout=30, what="the call counted")
            pid_after, nice_after = client.submit(my_nice).result(timeout=60)
            assert nice_after == 0 and pid_after == pid  # the same granule, back at full priority
    finally:
        cluster.stop()


def stepwise(log: str, start: int, total: int, acc: int) -> int:
    """``total`` steps of busy work with a migration point after each: its result depends on every step."""
    import os
    import time

    import granny

    with open(log, "a") as fh:
        fh.write(f"{os.getpid()} {start}\n")
    for i in range(start, total):
        end = time.monotonic() + 0.05
        while time.monotonic() < end:
            pass
        acc = (acc * 31 + i) % 1_000_003
        with open(log + ".step", "w") as fh:
            fh.write(str(i))
        granny.migration_point(stepwise, log, i + 1, total, acc)
    return acc


def test_a_call_at_a_migration_point_is_frozen_for_latency_sensitive_work_and_resumes_from_there(
        tmp_path: Path) -> None:
    undisturbed = stepwise(str(tmp_path / "here"), 0, 40, 7)  # outside a granule its points return at once
    log = tmp_path / "runs"
    cluster = LocalCluster(workers=1, slots=1, data_dir=tmp_path / "data", granule_user="same")
    try:
        with granny.connect(cluster.address, cluster.token) as client:
            background = client.options(delay_tolerance=120).submit(stepwise, str(log), 0, 40, 7)
            step = Path(str(log) + ".step")
            # Past its second point the planner knows how far apart its points come.
            wait_for(lambda: _count(step) >= 3, timeout=60,
                     what="the background call past its first points")
            assert client.submit(pow, 3, 3).result(timeout=60) == 27  # it did not wait 2 s behind the other
            assert background.result(timeout=60) == undisturbed
            runs = [line.split() for line in log.read_text().splitlines()]
            assert len(runs) == 2 and runs[0][0] != runs[1][0], runs  # resumed in another process ...
            assert 3 < int(runs[1][1]) < 40, runs  # ... from the step it was frozen at, not from the start
            counts = wait_for(lambda: (c := client.query("counters")["batch"]).get("met", 0) == 1 and c, timeout=30,
                              what="the deadline counted")
            assert counts["frozen"] == 1 and counts.get("preempted", 0) == 0 and counts.get("paused", 0) == 0, counts
            assert counts["freezes"] == 1 and counts["thawed"] == 1, counts
            worlds = client.query("counters")["migration"]
            assert not {"freezes", "frozen", "thawed"} & set(worlds), worlds  # calls are not counted as worlds
    finally:
        cluster.stop()


def call_row(client: granny.Client, req_id: str) -> dict[str, object]:
    """The status row of one call of the client's app ({} while the planner is being restarted)."""
    try:
        rows = {g["req_id"]: g for g in client.query("app", client.app_id)["granules"]}
    except GrannyError:
        return {}
    return rows.get(req_id, {})


def _count(path: Path) -> int:
    """The number a call keeps rewriting in ``path`` (0 before it exists, or while it is being rewritten)."""
    try:
        return int(path.read_text() or 0)
    except (FileNotFoundError, ValueError):
        return 0


def test_a_frozen_call_thaws_from_where_it_was_frozen_after_a_planner_kill9(tmp_path: Path) -> None:
    import contextlib
    import sqlite3
    import time

    from .test_functions import block_until
    from .test_recovery import restart_planner

    undisturbed = stepwise(str(tmp_path / "here"), 0, 40, 7)
    log, gate = tmp_path / "runs", tmp_path / "gate"
    cluster = LocalCluster(workers=1, slots=1, data_dir=tmp_path / "data", granule_user="same")
    try:
        with granny.connect(cluster.address, cluster.token) as client:
            t0 = time.time()
            background = client.options(delay_tolerance=120).submit(stepwise, str(log), 0, 40, 7)
            step = Path(str(log) + ".step")
            wait_for(lambda: _count(step) >= 3, timeout=60, what="the background call past its first points")
            blocker = client.submit(block_until, str(gate))  # latency-sensitive: it freezes the call, keeps the slot

            def journaled_frozen() -> bool:
                with contextlib.closing(sqlite3.connect(f"file:{tmp_path / 'data' / 'journal.sqlite'}?mode=ro",
                                                        uri=True)) as db:
                    return background.req_id in {r[0] for r in db.execute("SELECT req_id FROM frozen")}

            wait_for(journaled_frozen, timeout=60, what="the frozen call in the planner's journal")
            frozen_at = _count(step)
            _frozen_call_visible(cluster, client.app_id, background.req_id)
            restart_planner(cluster, True, "--restart-grace", "1")

            def row() -> dict[str, object]:
                return call_row(client, background.req_id)

            waiting = wait_for(lambda: (r := row()).get("waiting") and r, timeout=60,
                               what="the frozen call back in the batch queue after the restart grace")
            deadline_in = float(waiting["deadline_in"])  # type: ignore[arg-type]
            assert deadline_in <= 120 - (time.time() - t0) + 0.5, deadline_in  # from its submission, not the restart
            assert _count(step) == frozen_at  # it stayed frozen: nothing ran it while the slot was taken
            gate.touch()
            assert blocker.result(timeout=60) == "local"
            assert background.result(timeout=60) == undisturbed
            runs = [line.split() for line in log.read_text().splitlines()]
            assert len(runs) == 2 and runs[0][0] != runs[1][0], runs  # thawed in another process ...
            assert 3 < int(runs[1][1]) <= frozen_at + 1, (runs, frozen_at)  # ... from its frozen step, not the start
            counts = wait_for(lambda: (c := client.query("counters")["batch"]).get("met", 0) == 1 and c, timeout=30,
                              what="the deadline counted")
            assert counts.get("missed", 0) == 0 and counts.get("failed", 0) == 0, counts
    finally:
        gate.touch()
        cluster.stop()


def _frozen_call_visible(cluster: LocalCluster, app_id: str, req_id: str) -> None:
    """One call, frozen and waiting, shows in /metrics (apart from frozen worlds), in `granny status` and per
    call over HTTP."""
    import os
    import subprocess
    import sys

    headers = {"Authorization": f"Bearer {cluster.token}"}
    metrics = urllib.request.urlopen(urllib.request.Request(f"http://{cluster.http_address}/metrics", headers=headers),
                                     timeout=30).read().decode()
    assert "granny_call_freezes_total 1.0" in metrics and "granny_freezes_total 0.0" in metrics
    app = json.loads(urllib.request.urlopen(urllib.request.Request(
        f"http://{cluster.http_address}/v1/apps/{app_id}", headers=headers), timeout=30).read())
    (row,) = [g for g in app["granules"] if g["req_id"] == req_id]
    assert row["frozen"] == 1 and row["preempted"] == 1 and row["waiting"], row
    out = subprocess.run([sys.executable, "-m", "granny", "status", "--address", cluster.address],
                         env={**os.environ, "GRANNY_TOKEN": cluster.token}, capture_output=True, text=True, timeout=60)
    assert "calls frozen 1, thawed 0" in out.stdout and "MPI worlds" not in out.stdout, out


def test_a_call_due_behind_a_whenever_call_that_overran_pauses_it(tmp_path: Path) -> None:
    from .test_functions import block_until

    gate = tmp_path / "gate"
    cluster = LocalCluster(workers=1, slots=1, data_dir=tmp_path / "data", granule_user="same")
    try:
        with granny.connect(cluster.address, cluster.token) as client:
            assert client.options(delay_tolerance=60).submit(slow, 0.5).result(timeout=60) == 0.5  # its estimate
            wait_for(lambda: client.query("counters")["batch"].get("met") == 1, timeout=30, what="the estimate")
            # A "whenever" call holds the only slot far longer than anyone expected (it has no estimate) ...
            holder = client.options(delay_tolerance=-1).submit(block_until, str(gate))
            wait_for(lambda: client.query("hosts")[0]["used"] == 1, timeout=60, what="the slot taken")
            # ... and a call due in 2 s waits behind it. Admission planned the slot free at the holder's estimated
            # end (no estimate: now), and without it the call misses its deadline: it takes the slot (planner/
            # overrun.py), earliest deadline first: the holder is paused, not waited for.
            due = client.options(delay_tolerance=2.0).submit(slow, 0.01)
            assert due.result(timeout=60) == 0.01
            assert not holder.done()
            gate.touch()
            assert holder.result(timeout=60) == "local"
            counts = wait_for(lambda: (c := client.query("counters")["batch"]).get("met", 0) == 3 and c, timeout=30,
                              what="the deadlines counted")
            assert counts["paused"] == 1 and counts["overrun_promoted"] == 1 and counts.get("missed", 0) == 0, counts
    finally:
        gate.touch()
        cluster.stop()


def test_two_calls_due_behind_a_call_that_overran_its_estimate_both_meet_their_deadlines(tmp_path: Path) -> None:
    """Both were admitted on the slot freeing at the holder's estimated end. At their common latest start
    only one could still make it: they take the slot from the holder's estimated end, one after the other
    (a hypothesis property found the second missing its deadline, tests/unit/planner/test_state_pausing.py)."""
    cluster = LocalCluster(workers=1, slots=1, data_dir=tmp_path / "data", granule_user="same")
    try:
        with granny.connect(cluster.address, cluster.token) as client:
            assert client.options(delay_tolerance=60).submit(slow, 0.5).result(timeout=60) == 0.5  # its estimate
            wait_for(lambda: client.query("counters")["batch"].get("met") == 1, timeout=30, what="the estimate")
            holder = client.options(delay_tolerance=-1).submit(slow, 6.0)  # estimated at 0.5 s: it overruns
            wait_for(lambda: client.query("hosts")[0]["used"] == 1, timeout=60, what="the slot taken")
            # Both latest starts are 3 s − 0.5 s − margin away: the first to take the slot there ends at
            # about 2.95 s, and the second, after it, past its deadline.
            due = [client.options(delay_tolerance=3.0).submit(slow, 0.5) for _ in range(2)]
            assert [f.result(timeout=60) for f in due] == [0.5, 0.5]
            assert holder.result(timeout=60) == 6.0
            counts = wait_for(lambda: (c := client.query("counters")["batch"]).get("met", 0) + c.get("missed", 0) == 4
                              and c, timeout=30, what="the deadlines counted")
            assert counts["overrun_promoted"] == 2 and counts.get("missed", 0) == 0, counts
    finally:
        cluster.stop()
