"""The worker's shared-memory sweep: only its own tag, only dead creators."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from granny.config import worker_shm_tag
from granny.worker.reaper import sweep


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_sweep_removes_only_its_own_tag_of_dead_creators(tmp_path: Path) -> None:
    dead, alive = dead_pid(), os.getpid()
    names = {
        f"granny-shm-app-0123456789ab-wmine-p{dead}": False,  # this worker's, creator dead: removed
        f"granny-mpi-w1-0-wmine-p{dead}": False,
        f"granny-team-abc-wmine-p{dead}": False,
        f"granny-shm-app-0123456789ab-wmine-p{alive}": True,  # creator alive
        f"granny-shm-app-0123456789ab-wother-p{dead}": True,  # another worker's
        f"granny-shm-app-0123456789ab-p{dead}": True,  # no worker's (a client's)
        f"granny-whatever-p{dead}": True,  # merely looks like ours
        f"granny-x-wminer-p{dead}": True,  # a tag that only starts like ours
        "unrelated-wmine-p1": True,
    }
    for name in names:
        (tmp_path / name).write_bytes(b"")
    removed = sweep("mine", str(tmp_path))
    assert sorted(removed) == sorted(n for n, kept in names.items() if not kept)
    assert {p.name for p in tmp_path.iterdir()} == {n for n, kept in names.items() if kept}


def test_sweep_without_a_tag_removes_nothing(tmp_path: Path) -> None:
    name = f"granny-shm-app-0123456789ab-p{dead_pid()}"
    (tmp_path / name).write_bytes(b"")
    assert sweep("", str(tmp_path)) == []
    assert (tmp_path / name).exists()


def test_worker_tags_differ_between_workers_and_clusters() -> None:
    assert worker_shm_tag("h1", "10.0.0.1:7400") == worker_shm_tag("h1", "10.0.0.1:7400")
    assert worker_shm_tag("h1", "10.0.0.1:7400") != worker_shm_tag("h2", "10.0.0.1:7400")
    assert worker_shm_tag("local", "127.0.0.1:7400") != worker_shm_tag("local", "127.0.0.1:7402")
    assert worker_shm_tag("h1", "x:1").isalnum()
