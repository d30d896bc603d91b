"""The ``granny`` command against a real cluster, run as a subprocess the way a user would."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from granny.cluster import LocalCluster

from ..polling import wait_for

FINAL = {"succeeded", "failed", "cancelled"}


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRANNY_")}
    env["COLUMNS"] = "250"  # rich tables: wide enough not to truncate ids
    env.update(extra)
    return env


def granny(*args: str, env: dict[str, str], timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "granny", *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture
def env(cluster: LocalCluster) -> dict[str, str]:
    return clean_env(GRANNY_ADDRESS=cluster.address, GRANNY_TOKEN=cluster.token)


def script(tmp_path: Path, body: str, name: str = "job.py") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return path


def status_json(env: dict[str, str], *args: str) -> Any:
    proc = granny("status", *args, "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def wait_app(env: dict[str, str], app_id: str, states: set[str], timeout: float = 30.0) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        data: dict[str, Any] = status_json(env, app_id)
        return data if data["state"] in states else None

    return wait_for(reached, timeout, f"app {app_id} to reach one of {sorted(states)}", interval=0.05)


def wait_hosts(env: dict[str, str], predicate: Any, what: str, timeout: float = 30.0) -> list[dict[str, Any]]:
    def hosts() -> list[dict[str, Any]] | None:
        proc = granny("hosts", "--json", env=env)
        assert proc.returncode == 0, proc.stderr
        listed: list[dict[str, Any]] = json.loads(proc.stdout)
        return listed if predicate(listed) else None

    return wait_for(hosts, timeout, what, interval=0.05)


# --- granny run ---------------------------------------------------------------------------------
def test_run_prints_output_and_exits_zero(env: dict[str, str], tmp_path: Path) -> None:
    path = script(tmp_path, """
        import sys
        print("hello")
        print("to stderr", file=sys.stderr)
        print("args", sys.argv[1:])
    """)
    proc = granny("run", str(path), "a", "--flag", env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "hello\nargs ['a', '--flag']\n"
    assert "to stderr" in proc.stderr and "to stderr" not in proc.stdout


def test_run_exits_with_the_scripts_exit_code(env: dict[str, str], tmp_path: Path) -> None:
    path = script(tmp_path, """
        import sys
        print("before exit")
        sys.exit(3)
        print("never")
    """)
    proc = granny("run", str(path), env=env)
    assert proc.returncode == 3, (proc.stdout, proc.stderr)
    assert proc.stdout == "before exit\n"
    assert "Traceback" not in proc.stderr


def test_run_with_tag_output_prefixes_lines(env: dict[str, str], tmp_path: Path) -> None:
    path = script(tmp_path, """
        import os
        rank, size = os.environ["GRANNY_INDEX"], os.environ["GRANNY_SIZE"]
        print(f"rank {rank} of {size}")
        print(f"second line from {rank}")
    """)
    proc = granny("run", "-n", "2", "--tag-output", str(path), env=env)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert sorted(lines) == ["[0] rank 0 of 2", "[0] second line from 0", "[1] rank 1 of 2", "[1] second line from 1"]
    for rank in ("0", "1"):  # each granule's own lines stay in order
        mine = [line for line in lines if line.startswith(f"[{rank}]")]
        assert mine == [f"[{rank}] rank {rank} of 2", f"[{rank}] second line from {rank}"]


def test_exception_in_script_gives_traceback_and_exit_code_1(env: dict[str, str], tmp_path: Path) -> None:
    path = script(tmp_path, """
        def fail():
            raise ValueError("boom")
        print("started")
        fail()
    """)
    proc = granny("run", str(path), env=env)
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert proc.stdout == "started\n"
    assert "Traceback (most recent call last)" in proc.stderr
    assert "ValueError: boom" in proc.stderr
    assert f'File "{path}", line 3, in fail' in proc.stderr


def test_one_failing_granule_fails_the_run(env: dict[str, str], tmp_path: Path) -> None:
    path = script(tmp_path, """
        import os, sys
        if os.environ["GRANNY_INDEX"] == "1":
            sys.exit(5)
    """)
    proc = granny("run", "-n", "2", str(path), env=env)
    assert proc.returncode == 5, (proc.stdout, proc.stderr)


def test_run_larger_than_the_cluster_fails_at_once(env: dict[str, str], tmp_path: Path) -> None:
    path = script(tmp_path, 'print("never runs")\n')
    proc = granny("run", "-n", "3", str(path), env=env, timeout=30)
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert proc.stdout == ""
    assert "never fit" in proc.stderr.replace("\n", " ")


def test_script_queued_behind_another_script_runs(env: dict[str, str], tmp_path: Path) -> None:
    gate = tmp_path / "go"
    first = script(tmp_path, f"""
        import os, time
        while not os.path.exists({str(gate)!r}):
            time.sleep(0.01)
        print("first done")
    """, "first.py")
    second = script(tmp_path, 'print("second done")\n', "second.py")
    runner = subprocess.Popen([sys.executable, "-m", "granny", "run", "-n", "2", str(first)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    queued: subprocess.Popen[str] | None = None
    try:
        wait_hosts(env, lambda hosts: hosts[0]["used"] == 2, "the first script to hold both slots")
        queued = subprocess.Popen([sys.executable, "-m", "granny", "run", str(second)], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_for(lambda: [a for a in status_json(env) if a["name"] == str(second)], 30,
                 "the second script to be submitted", interval=0.05)
        gate.touch()
        _, err = runner.communicate(timeout=30)
        assert runner.returncode == 0, err
        out2, err2 = queued.communicate(timeout=30)
        assert (queued.returncode, out2) == (0, "second done\n"), err2
    finally:
        gate.touch()
        for proc in (runner, queued):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.communicate()


# --- cluster views --------------------------------------------------------------------------------
def test_hosts(env: dict[str, str]) -> None:
    hosts = wait_hosts(env, lambda h: h and h[0]["idle_granules"] == 2, "two warm granules")
    assert [(h["host_id"], h["slots"], h["used"], h["alive"]) for h in hosts] == [("local", 2, 0, True)]
    assert hosts[0]["last_heartbeat_age"] < 30

    proc = granny("hosts", env=env)
    assert proc.returncode == 0, proc.stderr
    assert "local" in proc.stdout and "yes" in proc.stdout  # a listing goes to stdout (it can be piped)


def test_submit_status_and_logs(env: dict[str, str], tmp_path: Path) -> None:
    path = script(tmp_path, """
        import os
        print("line one")
        print("rank", os.environ["GRANNY_INDEX"])
    """)
    proc = granny("submit", str(path), env=env)
    assert proc.returncode == 0, proc.stderr
    app_id = proc.stdout.strip()
    assert re.fullmatch(r"run-[0-9a-f]{12}", app_id), proc.stdout

    data = wait_app(env, app_id, FINAL)
    assert data["state"] == "succeeded", data
    assert data["app_id"] == app_id and data["kind"] == "script" and data["name"] == str(path)
    assert data["tasks"]["succeeded"] == 1 and [g["state"] for g in data["granules"]] == ["succeeded"]

    logs = granny("logs", app_id, env=env)
    assert logs.returncode == 0, logs.stderr
    assert logs.stdout == "line one\nrank 0\n"

    apps = {a["app_id"]: a for a in status_json(env)}
    assert apps[app_id]["state"] == "succeeded"
    table = granny("status", env=env)
    assert table.returncode == 0 and app_id in table.stdout.replace("\n", "")  # listings go to stdout
    one = granny("status", app_id, env=env)
    assert one.returncode == 0 and "succeeded" in one.stdout


def test_submitted_failure_is_visible_in_status_and_logs(env: dict[str, str], tmp_path: Path) -> None:
    path = script(tmp_path, 'raise RuntimeError("kaput")\n')
    app_id = granny("submit", "-n", "2", str(path), env=env).stdout.strip()
    data = wait_app(env, app_id, FINAL)
    assert data["state"] == "failed"
    assert sum(data["tasks"].values()) == 2 and data["tasks"]["failed"] >= 1
    logs = granny("logs", app_id, env=env)
    assert "RuntimeError: kaput" in logs.stderr


def test_cancel(env: dict[str, str], tmp_path: Path) -> None:
    path = script(tmp_path, f"""
        import os, time
        while not os.path.exists({str(tmp_path / "never")!r}):
            time.sleep(0.01)
    """)
    app_id = granny("submit", "-n", "2", str(path), env=env).stdout.strip()
    wait_app(env, app_id, {"running"})
    wait_hosts(env, lambda h: h[0]["used"] == 2, "both granules to start")
    proc = granny("cancel", app_id, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "cancelled" in proc.stderr
    data = wait_app(env, app_id, FINAL)
    assert data["state"] == "cancelled" and data["tasks"]["cancelled"] == 2
    wait_hosts(env, lambda h: h[0]["used"] == 0 and h[0]["idle_granules"] == 2, "the killed granules to be replaced")


def test_terminating_granny_run_cancels_its_app(env: dict[str, str], tmp_path: Path) -> None:
    """Like mpirun: SIGTERM to `granny run` stops the ranks, so no granule keeps its slot."""
    import signal

    path = script(tmp_path, f"""
        import os, time
        while not os.path.exists({str(tmp_path / "never")!r}):
            time.sleep(0.01)
    """)
    with subprocess.Popen([sys.executable, "-m", "granny", "run", "-n", "2", str(path)], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        try:
            wait_hosts(env, lambda h: h[0]["used"] == 2, "both granules to start")
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) != 0
        finally:
            proc.kill()
    wait_hosts(env, lambda h: h[0]["used"] == 0 and h[0]["idle_granules"] == 2, "the granules to be stopped")


def check_unknown_app(env: dict[str, str]) -> None:
    proc = granny("status", "run-nope", env=env)
    assert proc.returncode != 0
    assert "run-nope" in proc.stderr and "Traceback" not in proc.stderr
    logs = granny("logs", "run-nope", env=env)
    assert logs.returncode == 0 and logs.stdout == ""


# --- bad invocations ----------------------------------------------------------------------------
def test_worker_without_a_secret_fails_clearly() -> None:
    proc = granny("worker", "--planner", "127.0.0.1:9", env=clean_env(), timeout=30)
    assert proc.returncode == 2
    assert "no cluster secret" in proc.stderr and "--secret-file" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_worker_with_a_missing_secret_file_fails_clearly(tmp_path: Path) -> None:
    missing = tmp_path / "no-secret"
    proc = granny("worker", "--planner", "127.0.0.1:9", "--secret-file", str(missing), env=clean_env(), timeout=30)
    assert proc.returncode == 2
    assert str(missing) in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("argv", [
    ["worker", "--planner", "127.0.0.1:9", "--slots", "0"],
    ["up", "--slots", "0"],
    ["worker", "--planner", "127.0.0.1:9", "--slots", "-3"],
])
def test_bad_slots_fail_clearly(argv: list[str]) -> None:
    proc = granny(*argv, env=clean_env(GRANNY_SECRET="s"), timeout=30)
    assert proc.returncode == 2
    assert "--slots" in proc.stderr and "at least 1" in proc.stderr
    assert "Traceback" not in proc.stderr


def check_bad_granule_count_and_missing_script_fail_clearly(env: dict[str, str], tmp_path: Path) -> None:
    proc = granny("run", "-n", "0", "x.py", env=env, timeout=30)
    assert proc.returncode == 2 and "at least 1" in proc.stderr
    missing = tmp_path / "missing.py"
    proc = granny("run", str(missing), env=env, timeout=30)
    assert proc.returncode == 2 and "no such script" in proc.stderr and "Traceback" not in proc.stderr


def check_wrong_token_fails_clearly(cluster: LocalCluster, tmp_path: Path) -> None:
    path = script(tmp_path, 'print("never")\n')
    proc = granny("run", str(path), env=clean_env(GRANNY_ADDRESS=cluster.address, GRANNY_TOKEN="wrong"), timeout=30)
    assert proc.returncode == 2
    assert "refused" in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stdout == ""


def test_user_errors_against_a_cluster_fail_clearly(cluster: LocalCluster, env: dict[str, str], tmp_path: Path) -> None:
    check_unknown_app(env)
    check_bad_granule_count_and_missing_script_fail_clearly(env, tmp_path)
    check_wrong_token_fails_clearly(cluster, tmp_path)


def test_status_on_a_narrow_terminal_never_cuts_an_app_id(env: dict[str, str], tmp_path: Path) -> None:
    script = tmp_path / "ok.py"
    script.write_text("print('ok')\n")
    app_id = granny("submit", str(script), env=env).stdout.strip()
    narrow = dict(env, COLUMNS="30")
    proc = granny("status", env=narrow)
    assert proc.returncode == 0, proc.stderr
    assert "…" not in proc.stdout
    cells = [line.split("│")[1].strip() for line in proc.stdout.splitlines() if line.count("│") > 2]
    assert app_id in "".join(cells), proc.stdout  # the id column folds over lines, never cut


# --- where the planner keeps its files ------------------------------------------------------------
@pytest.mark.parametrize("flag", [False, True])
def test_the_planner_data_dir_comes_from_the_flag_else_granny_data_dir(tmp_path: Path, flag: bool) -> None:
    """$GRANNY_DATA_DIR is the default of `granny planner --data-dir`; the flag beats it."""
    from_env, from_flag = tmp_path / "from-env", tmp_path / "from-flag"
    argv = [sys.executable, "-m", "granny", "planner", "--port", "0", "--no-http"]
    argv += ["--data-dir", str(from_flag)] if flag else []
    proc = subprocess.Popen(argv, cwd=tmp_path, env=clean_env(GRANNY_DATA_DIR=str(from_env)),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("READY"), line
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    used, unused = (from_flag, from_env) if flag else (from_env, from_flag)
    assert (used / "token").is_file() and (used / "journal.sqlite").is_file(), err
    assert not unused.exists() and not (tmp_path / ".granny").exists()
