"""Every listing command of ``granny`` has ``--json`` (valid JSON, ids whole), and its table never cuts nor
folds an id, however narrow the terminal: ids are copied from there into other commands."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from granny.cluster import LocalCluster

from ..polling import wait_for

FINAL = {"succeeded", "failed", "cancelled"}


def granny(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "granny", *args], env=env, capture_output=True, text=True,
                          timeout=60)


def as_json(*args: str, env: dict[str, str]) -> Any:
    proc = granny(*args, "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)  # the whole of stdout is one JSON document


@pytest.fixture
def env(cluster: LocalCluster) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRANNY_")}
    return env | {"GRANNY_ADDRESS": cluster.address, "GRANNY_TOKEN": cluster.token, "COLUMNS": "250"}


@pytest.fixture
def finished_app(env: dict[str, str], tmp_path: Path) -> str:
    script = tmp_path / "job.py"
    script.write_text(textwrap.dedent("""
        import sys
        print("out line")
        print("err line", file=sys.stderr)
    """))
    proc = granny("submit", "-n", "2", str(script), env=env)
    assert proc.returncode == 0, proc.stderr
    app_id = proc.stdout.strip()
    wait_for(lambda: as_json("status", app_id, env=env)["state"] in FINAL, 60, "the app to finish", interval=0.05)
    return app_id


def test_every_listing_command_has_json_with_whole_ids(env: dict[str, str], finished_app: str) -> None:
    apps = as_json("status", env=env)
    assert finished_app in [a["app_id"] for a in apps]

    one = as_json("status", finished_app, env=env)
    assert one["app_id"] == finished_app and one["state"] == "succeeded"
    req_ids = [g["req_id"] for g in one["granules"]]
    assert len(req_ids) == 2 and all(r.startswith(finished_app) for r in req_ids)

    hosts = as_json("hosts", env=env)
    assert [h["host_id"] for h in hosts] == ["local"]

    policy = as_json("policy", env=env)
    assert policy["policy"] in policy["policies"] and "bin-pack" in policy["policies"]

    logs = as_json("logs", finished_app, env=env)
    assert sorted((r["stream"], r["data"]) for r in logs) == [("stderr", "err line\n")] * 2 + [
        ("stdout", "out line\n")] * 2

    evicted = as_json("hosts", "evict", "local", "--in", "1h", env=env)
    assert evicted["host_id"] == "local" and evicted["evicting_in"] > 0
    restored = as_json("hosts", "restore", "local", env=env)
    assert restored["host_id"] == "local" and restored.get("evicting_in") is None


def id_lines(stdout: str) -> list[str]:
    """The cells of the table's rows, as lines of text."""
    return [cell.strip() for line in stdout.splitlines() if line.count("│") > 2 for cell in line.split("│")[1:-1]]


@pytest.mark.parametrize("columns", ["30", "60"])
def test_tables_keep_every_id_whole_on_one_line(env: dict[str, str], finished_app: str, columns: str) -> None:
    narrow = dict(env, COLUMNS=columns)
    one = granny("status", finished_app, env=narrow)
    assert one.returncode == 0, one.stderr
    cells = id_lines(one.stdout)
    granules = as_json("status", finished_app, env=env)["granules"]
    ids = [g["req_id"] for g in granules] + [g["granule_id"] for g in granules] + [g["host_id"] for g in granules]
    assert all(ids) and len(ids) == 6
    for ident in ids:
        assert ident in cells, (ident, one.stdout)  # one cell holds the whole id: not cut, not folded
    assert "…" not in one.stdout

    listing = granny("status", env=narrow)
    assert finished_app in id_lines(listing.stdout), listing.stdout
    hosts = granny("hosts", env=narrow)
    assert "local" in id_lines(hosts.stdout), hosts.stdout
