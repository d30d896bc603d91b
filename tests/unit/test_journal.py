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
