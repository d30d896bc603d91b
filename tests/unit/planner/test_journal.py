"""The planner's journal: batched writes land in SQLite, in order where order matters."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from granny.planner.journal import ROWS_PER_INSERT, Journal


def _committed(j: Journal) -> None:
    done = threading.Event()
    j.after_commit(done.set)
    assert done.wait(10)


def test_a_large_mixed_batch_is_written_whole(tmp_path: Path) -> None:
    loop = asyncio.new_event_loop()  # never run: records wait in one batch until flush()
    j = Journal(tmp_path / "journal.db", loop)
    n = ROWS_PER_INSERT * 2 + 7  # several multi-row statements and a remainder
    j.app("app-1", "functions", "", "running")
    for i in range(n):
        j.request(f"r{i}", "app-1", b"h%d" % i, b"p" * (i % 5))
        j.log("app-1", f"r{i}", 0, "stdout", f"line {i}\n")
        j.result(f"r{i}", 0, b"res%d" % i, None if i % 2 else b"v")
    j.request("r0", "app-1", b"again", b"ignored")  # a duplicate (a client resubmitting) is ignored
    j.result("r0", 0, b"again", b"ignored")
    j.app("app-1", "functions", "", "succeeded")
    assert j.query("SELECT count(*) FROM requests")[0][0] == 0  # all of it still in one batch
    j.flush()
    _committed(j)
    assert j.query("SELECT count(*) FROM requests")[0][0] == n
    assert j.query("SELECT header, payload FROM requests WHERE req_id='r0'") == [(b"h0", b"")]
    assert j.query("SELECT header, payload FROM results WHERE req_id='r3'") == [(b"res3", None)]
    assert j.query("SELECT header, payload FROM results WHERE req_id='r0'") == [(b"res0", b"v")]
    assert [r[0] for r in j.query("SELECT data FROM logs ORDER BY id")] == [f"line {i}\n" for i in range(n)]
    assert j.query("SELECT state FROM apps") == [("succeeded",)]  # the later state wins
    restored = j.restore()
    assert len(restored.requests) == 0  # the app is no longer running
    assert restored.finished["r5"] == {0}
    j.close()
    loop.close()


def test_prune_deletes_rows_leaves_tombstones_and_gives_pages_back(tmp_path: Path) -> None:
    j = Journal(tmp_path / "journal.db")  # no loop: every record is flushed at once
    j.app("app-1", "functions", "", "running")
    j.app("app-2", "script", "job.py", "failed")
    for i in range(2000):
        app = "app-2" if i < 10 else "app-1"
        j.request(f"r{i}", app, b"h", b"p" * 2000)
        j.result(f"r{i}", 0, b"res", b"v" * 2000)
        j.log(app, f"r{i}", 0, "stdout", "x" * 200)
    _committed(j)
    full = j.size()
    j.prune([f"r{i}" for i in range(1990)], ["app-2"], tombstones_before=0.0, app_tombstones_before=0.0)
    _committed(j)
    assert j.query("SELECT req_id FROM requests ORDER BY req_id") == [(f"r{i}",) for i in range(1990, 2000)]
    assert j.query("SELECT count(*) FROM results")[0][0] == 10
    assert j.query("SELECT count(*) FROM logs")[0][0] == 10
    assert j.query("SELECT count(*) FROM pruned_requests")[0][0] == 1990
    assert j.query("SELECT app_id FROM apps") == [("app-1",)]
    assert j.query("SELECT app_id, kind, name, state FROM pruned_apps") == [("app-2", "script", "job.py", "failed")]
    assert j.size() < full / 10, "freed pages went back to the file system (incremental vacuum, WAL truncated)"
    restored = j.restore()
    assert len(restored.pruned) == 1990 and restored.ended_apps == []
    j.prune([], [], tombstones_before=float("inf"), app_tombstones_before=float("inf"))  # every tombstone expires
    _committed(j)
    assert j.query("SELECT count(*) FROM pruned_requests")[0][0] == 0
    assert j.query("SELECT count(*) FROM pruned_apps")[0][0] == 0
    j.close()


def test_prune_converts_a_journal_made_without_auto_vacuum(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "journal.db"
    old = sqlite3.connect(path)
    old.execute("CREATE TABLE requests (req_id TEXT PRIMARY KEY, app_id TEXT, header BLOB, payload BLOB, created REAL)")
    old.commit()
    old.close()
    j = Journal(path)
    assert j.query("PRAGMA auto_vacuum") == [(0,)]
    j.prune([], [], 0.0, 0.0)
    _committed(j)
    assert j.query("PRAGMA auto_vacuum") == [(2,)]
    j.close()


def test_the_journal_and_its_directory_are_private(tmp_path: Path) -> None:
    import os

    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    old = os.umask(0o022)
    try:
        stale = data / "journal.sqlite-shm"  # left 0644 by an older granny
        stale.touch(mode=0o644)
        j = Journal(data / "journal.sqlite")
        j.app("a", "functions", "", "running")
        _committed(j)
        assert data.stat().st_mode & 0o777 == 0o700
        for name in ("journal.sqlite", "journal.sqlite-wal", "journal.sqlite-shm"):
            assert (data / name).stat().st_mode & 0o777 == 0o600, name
        j.close()
    finally:
        os.umask(old)


def test_a_journal_from_before_numbered_output_gains_the_columns(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "journal.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE logs (id INTEGER PRIMARY KEY AUTOINCREMENT, app_id TEXT, req_id TEXT, idx INTEGER, "
               "stream TEXT, data TEXT)")
    db.execute("INSERT INTO logs (app_id, req_id, idx, stream, data) VALUES ('a', 'r', 0, 'stdout', 'old\n')")
    db.commit()
    db.close()
    j = Journal(path)
    j.log("a", "r", 0, "stdout", "new\n", "g1", 3)
    _committed(j)
    assert j.query("SELECT data, run, part FROM logs ORDER BY id") == [("old\n", None, None), ("new\n", "g1", 3)]
    j.close()


def test_on_commit_waits_for_the_batch_it_joined(tmp_path: Path) -> None:
    loop = asyncio.new_event_loop()  # never run: the batch waits for flush()
    j = Journal(tmp_path / "journal.db", loop)
    seen: list[int] = []
    done = threading.Event()
    j.log("a", "r", 0, "stdout", "x", "g1", 1)
    j.on_commit(lambda: (seen.append(j.query("SELECT count(*) FROM logs")[0][0]), done.set()))
    j.log("a", "r", 0, "stdout", "y", "g1", 2)  # joins the same batch: committed before the callback
    batches = j.batches
    j.flush()
    assert j.batches == batches + 1
    assert done.wait(10)
    assert seen == [2]
    j.close()
    loop.close()


def test_settings_keep_the_last_value_across_a_reopen(tmp_path: Path) -> None:
    j = Journal(tmp_path / "journal.db")
    assert j.restore().settings == {}
    j.setting("policy", "compact")
    j.setting("policy", "spot")  # the later choice wins
    _committed(j)
    j.close()
    j = Journal(tmp_path / "journal.db")
    assert j.restore().settings == {"policy": "spot"}
    j.close()
