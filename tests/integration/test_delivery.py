"""Delivery across a planner kill -9: output lines and call side effects, each exactly once."""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

import granny
from granny.cluster import LocalCluster

from .test_functions import block_until, wait_for
from .test_recovery import restart_planner

LINES = 30

# Each rank prints numbered lines slowly, on stdout through print() (the LogWriter) and on stderr
# through os.write (the fd-level capture), so both paths are crossed by the restart.
TALKER = textwrap.dedent(f"""
    import os, sys, time
    from mpi4py import MPI
    rank = MPI.COMM_WORLD.Get_rank()
    for i in range({LINES}):
        print(f"out rank {{rank}} line {{i}}", flush=True)
        os.write(2, f"err rank {{rank}} line {{i}}\\n".encode())
        time.sleep(0.1)
""")


def _expected(stream: str) -> dict[int, list[str]]:
    return {r: [f"{stream} rank {r} line {i}" for i in range(LINES)] for r in range(2)}


def _per_rank(lines: list[str], stream: str) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {0: [], 1: []}
    for line in lines:
        if line.startswith(f"{stream} rank "):
            out[int(line.split()[2])].append(line)
    return out


def test_output_of_a_run_survives_a_planner_kill9(cluster: LocalCluster, client: granny.Client,
                                                   tmp_path: Path) -> None:
    prog = tmp_path / "talker.py"
    prog.write_text(TALKER)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRANNY_")}
    env.update(GRANNY_ADDRESS=cluster.address, GRANNY_TOKEN=cluster.token)
    run = subprocess.Popen([sys.executable, "-m", "granny", "run", "-n", "2", str(prog)], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert run.stdout is not None and run.stderr is not None
    out: list[str] = []
    err: list[str] = []
    started = threading.Event()

    def read_err() -> None:
        assert run.stderr is not None
        err.extend(line.rstrip("\n") for line in run.stderr)

    reader = threading.Thread(target=read_err, daemon=True)
    reader.start()
    for line in run.stdout:
        out.append(line.rstrip("\n"))
        if line.startswith("out rank") and int(line.split()[4]) >= 5 and not started.is_set():
            started.set()
            restart_planner(cluster)  # mid-run: both ranks keep printing while it is away
    assert run.wait(timeout=120) == 0, "\n".join(err)
    reader.join(timeout=30)
    run.stdout.close()
    run.stderr.close()
    assert started.is_set(), out
    assert _per_rank(out, "out") == _expected("out"), "\n".join(out)
    assert _per_rank(err, "err") == _expected("err"), "\n".join(err)

    app_id = wait_for(lambda: next((a["app_id"] for a in client.query("apps") if a["kind"] == "script"), None),
                      what="the run's app")
    logs = subprocess.run([sys.executable, "-m", "granny", "logs", app_id], env=env, capture_output=True,
                          text=True, timeout=60)
    assert logs.returncode == 0, logs.stderr
    assert _per_rank(logs.stdout.splitlines(), "out") == _expected("out"), logs.stdout
    assert _per_rank(logs.stderr.splitlines(), "err") == _expected("err"), logs.stderr
    assert client.query("app", app_id)["state"] == "succeeded"


CALLS = 3000


def _append(path: str, i: int) -> int:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{i}\n".encode())
    finally:
        os.close(fd)
    return i


def _effects(path: Path) -> collections.Counter[int]:
    if not path.exists():
        return collections.Counter()
    return collections.Counter(int(x) for x in path.read_text().split())


def test_calls_run_exactly_once_across_a_planner_kill9(cluster: LocalCluster, client: granny.Client,
                                                     tmp_path: Path) -> None:
    effects = tmp_path / "effects.log"
    futures = [client.submit(_append, str(effects), i) for i in range(CALLS)]
    wait_for(lambda: len(_effects(effects)) >= CALLS // 4, timeout=120, what="a quarter of the calls")
    restart_planner(cluster)  # mid-run: calls finish while the old planner's journal batch is unwritten
    assert [f.result(timeout=120) for f in futures] == list(range(CALLS))
    ran = _effects(effects)
    twice = sorted(i for i, count in ran.items() if count > 1)
    assert not twice, f"{len(twice)} of {CALLS} calls ran more than once: {twice[:20]}"
    assert sorted(ran) == list(range(CALLS))


def _gated_append(gate: str, path: str, payload: object) -> int:
    from pathlib import Path

    Path(f"{gate}.started").touch()
    block_until(gate)
    return _append(path, 7)


CALLER = textwrap.dedent("""
    import sys
    import numpy as np
    import granny
    from tests.integration.test_delivery import _gated_append
    gate, effects = sys.argv[1:3]
    with granny.connect() as c:
        # Above the journal's inline limit: a restarted planner learns of this call only when this
        # client resubmits it (see planner/orphans.py).
        print(c.submit(_gated_append, gate, effects, np.ones(1 << 16)).result(timeout=90), flush=True)
""")


@pytest.mark.parametrize("first", ["report", "resubmission"])
def test_a_call_that_finished_while_the_planner_was_down_is_recorded_not_rerun(
        cluster: LocalCluster, client: granny.Client, tmp_path: Path, first: str) -> None:
    gate, effects = tmp_path / "gate", tmp_path / "effects.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRANNY_")}
    env.update(GRANNY_ADDRESS=cluster.address, GRANNY_TOKEN=cluster.token,
               PYTHONPATH=str(Path(__file__).resolve().parents[2]),
               GRANNY_RESULT_LANE="0")  # the result must come through the planner (a lane would skip the restart)
    caller = subprocess.Popen([sys.executable, "-c", CALLER, str(gate), str(effects)], env=env,
                              stdout=subprocess.PIPE, text=True)
    # Who reaches the new planner first: the granule's report (its client is stopped), or the
    # client's resubmission (the worker is stopped, and granules report only once it re-registers).
    held = caller if first == "report" else cluster.procs[1]
    assert caller.stdout is not None
    try:
        wait_for(Path(f"{gate}.started").exists, timeout=60, what="the call to start")
        held.send_signal(signal.SIGSTOP)
        planner = cluster.procs[0]
        planner.send_signal(signal.SIGKILL)
        planner.wait()
        gate.touch()  # the call finishes while no planner is there to hear of it
        wait_for(lambda: _effects(effects), what="the call's side effect")
        restart_planner(cluster, False, "--restart-grace", "30")  # the test's steps fit in it, however slow
        check = granny.connect(cluster.address, cluster.token)
        try:
            if first == "report":  # the worker re-registered and its granule reported: both idle
                wait_for(lambda: [(h.alive, h.idle_granules) for h in check.hosts()] == [(True, 2)], timeout=60,
                         what="the granule to report to the new planner")
            else:
                wait_for(lambda: any(a["tasks"].get("queued") for a in check.apps()), timeout=60,
                         what="the client to resubmit the call")
        finally:
            check.close()
        held.send_signal(signal.SIGCONT)
        out, _ = caller.communicate(timeout=90)
    finally:
        caller.kill()
        held.send_signal(signal.SIGCONT)
    assert out.strip() == "7"
    assert _effects(effects) == {7: 1}, "the call ran again after the restart"


def _gated(gate: str, path: str, i: int) -> int:
    block_until(gate)
    return _append(path, i)


def test_an_idempotency_key_runs_its_call_once_across_clients_and_a_restart(
        cluster: LocalCluster, client: granny.Client, tmp_path: Path) -> None:
    effects, gate = tmp_path / "effects.log", tmp_path / "gate"
    other = granny.connect(cluster.address, cluster.token)
    try:
        # Two callers wait on one key at once: one run, both get its result.
        first = client.options(key="k1").submit(_gated, str(gate), str(effects), 1)
        second = other.options(key="k1").submit(_gated, str(gate), str(effects), 1)
        gate.touch()
        assert first.result(timeout=30) == 1 and second.result(timeout=30) == 1
        assert other.options(key="k1").submit(_append, str(effects), 1).result(timeout=30) == 1  # finished: not rerun
        restart_planner(cluster)
        # After a restart the key is found in the journal.
        assert other.options(key="k1").submit(_append, str(effects), 1).result(timeout=60) == 1
        assert other.options(key="k2").submit(_append, str(effects), 2).result(timeout=60) == 2
    finally:
        other.close()
    assert _effects(effects) == {1: 1, 2: 1}
