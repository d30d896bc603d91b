"""The planner's journal: every accepted submission and every finished result, in SQLite.

Theory of operation: the event loop never waits on the disk. It appends records to a list and hands
the list to one writer thread at most every ``FLUSH_INTERVAL`` (or at once when someone waits for
durability); the writer writes each batch in one transaction (group commit) and then runs the
callbacks that were waiting for it (an HTTP 202, say). Batching keeps the writer from waking, and
taking the GIL, once per record. WAL mode with ``synchronous=NORMAL``
survives ``kill -9`` of the planner: a committed transaction is in the WAL file, and the OS keeps it
even though the process is gone. Python clients do not wait for the commit: they keep every payload
until its result arrives and resubmit after a reconnect, and submission is idempotent by request id.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import json
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import create_private_file, private_dir
from ..tunables import FLUSH_INTERVAL, VACUUM_INTERVAL

SCHEMA = """
CREATE TABLE IF NOT EXISTS apps (app_id TEXT PRIMARY KEY, kind TEXT, name TEXT, state TEXT,
    created REAL, updated REAL);
CREATE TABLE IF NOT EXISTS requests (req_id TEXT PRIMARY KEY, app_id TEXT, header BLOB, payload BLOB,
    created REAL);
CREATE TABLE IF NOT EXISTS results (req_id TEXT, idx INTEGER, header BLOB, payload BLOB, finished REAL,
    PRIMARY KEY (req_id, idx));
CREATE TABLE IF NOT EXISTS functions (name TEXT PRIMARY KEY, spec TEXT, created REAL);
CREATE TABLE IF NOT EXISTS logs (id INTEGER PRIMARY KEY AUTOINCREMENT, app_id TEXT, req_id TEXT,
    idx INTEGER, stream TEXT, data TEXT, run TEXT, part INTEGER);
CREATE INDEX IF NOT EXISTS logs_app ON logs (app_id, id);
CREATE INDEX IF NOT EXISTS logs_req ON logs (req_id);
CREATE INDEX IF NOT EXISTS requests_app ON requests (app_id);
CREATE TABLE IF NOT EXISTS pruned_requests (req_id TEXT PRIMARY KEY, pruned REAL);
CREATE TABLE IF NOT EXISTS pruned_apps (app_id TEXT PRIMARY KEY, kind TEXT, name TEXT, state TEXT, pruned REAL);
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT, updated REAL);
CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL, app_id TEXT, req_id TEXT,
    kind TEXT, text TEXT, data TEXT);
CREATE INDEX IF NOT EXISTS events_app ON events (app_id, id);
CREATE TABLE IF NOT EXISTS frozen (req_id TEXT PRIMARY KEY, gen INTEGER, n INTEGER, at REAL, ran REAL);
CREATE TABLE IF NOT EXISTS checkpoints (req_id TEXT PRIMARY KEY, ckpt INTEGER, at REAL);
"""


@dataclass
class Restored:
    apps: list[tuple[str, str, str, str]]  # app_id, kind, name, state
    requests: list[tuple[str, str, bytes, bytes | None]]  # req_id, app_id, header, payload (None: held)
    finished: dict[str, set[int]]
    functions: dict[str, dict[str, Any]]
    all_requests: list[str] = field(default_factory=list)  # every journaled request id
    ended_apps: list[str] = field(default_factory=list)  # apps no longer running
    pruned: list[tuple[str, float]] = field(default_factory=list)  # tombstones: req_id, wall-clock time
    settings: dict[str, str] = field(default_factory=dict)  # choices made at run time (the policy, say)


COMMIT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class CommitStats:
    """A histogram of group-commit times. Written by the writer thread only; read at scrape time (a read
    may see one commit half-counted, which a scrape tolerates)."""

    def __init__(self) -> None:
        self.buckets = [0] * (len(COMMIT_BUCKETS) + 1)
        self.total = 0.0

    def add(self, seconds: float) -> None:
        self.buckets[bisect.bisect_left(COMMIT_BUCKETS, seconds)] += 1
        self.total += seconds


class _Job:
    """Maintenance run by the writer thread outside the batch's transaction (see Journal.prune)."""

    def __init__(self, fn: Callable[[sqlite3.Connection], None]) -> None:
        self.fn = fn


ROWS_PER_INSERT = 100  # 500 bound values per statement, far below SQLite's limit
_PLACEHOLDERS = ["", *(",".join(["(?,?,?,?,?)"] * n) for n in range(1, ROWS_PER_INSERT + 1))]
# Markers (compared by identity) for the two tables written as multi-row inserts; the value is the table.
_REQUESTS = "requests"
_RESULTS = "results"

Record = tuple[str, tuple[Any, ...]]


class Journal:
    """Not thread-safe for writers: records are added from the event loop thread only."""

    def __init__(self, path: Path, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.path = path
        private_dir(path.parent)
        # SQLite gives the -wal and -shm files it creates the mode of the database file: so 0600 too.
        # Files an older version left wider are narrowed.
        for file in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            if file == path or file.exists():
                create_private_file(file)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        # Pages freed by pruning go back to the file system a little at a time (incremental_vacuum
        # after each prune) instead of in a whole-file VACUUM. Only a new database takes this at once;
        # an older one is converted by one VACUUM on the writer thread at its first prune.
        self._db.execute("PRAGMA auto_vacuum=INCREMENTAL")
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(logs)")}
        for column, kind in (("run", "TEXT"), ("part", "INTEGER")):  # journals written before they existed
            if column not in columns:
                self._db.execute(f"ALTER TABLE logs ADD COLUMN {column} {kind}")
        if "ran" not in {row[1] for row in self._db.execute("PRAGMA table_info(frozen)")}:
            self._db.execute("ALTER TABLE frozen ADD COLUMN ran REAL")
        # After a restart, the output a task's run already has here (see planner/outputs.py).
        self._db.execute("CREATE INDEX IF NOT EXISTS logs_task ON logs (req_id, idx, run, part)")
        self.batches = 0  # batches handed to the writer so far (see on_commit)
        self._q: queue.SimpleQueue[list[Record | Callable[[], None] | _Job] | None] = queue.SimpleQueue()
        self._batch: list[Record | Callable[[], None] | _Job] = []
        self._loop = loop
        self._timer: asyncio.TimerHandle | None = None
        self._lock = threading.Lock()  # serialises the writer with synchronous reads
        self._vacuumed = float("-inf")  # writer thread only: when pages were last given back
        self.commits = CommitStats()  # how long each group commit took (/metrics)
        self._thread = threading.Thread(target=self._run, name="granny-journal", daemon=True)
        self._thread.start()

    def _put(self, item: Record | Callable[[], None] | _Job, now: bool = False) -> None:
        self._batch.append(item)
        if now or self._loop is None:
            self.flush()
        elif self._timer is None:
            self._timer = self._loop.call_later(FLUSH_INTERVAL, self.flush)

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._batch:
            batch, self._batch = self._batch, []
            self.batches += 1
            self._q.put(batch)

    # --- writes (any thread, never block) ---------------------------------------------------------
    def app(self, app_id: str, kind: str, name: str, state: str) -> None:
        now = time.time()
        self._put(("INSERT INTO apps VALUES (?,?,?,?,?,?) ON CONFLICT(app_id) DO UPDATE SET state=excluded.state, "
                     "updated=excluded.updated", (app_id, kind, name, state, now, now)))

    def request(self, req_id: str, app_id: str, header: bytes, payload: bytes | memoryview | None) -> None:
        self._put((_REQUESTS, (req_id, app_id, header, payload, time.time())))

    def result(self, req_id: str, idx: int, header: bytes, payload: bytes | memoryview | None) -> None:
        self._put((_RESULTS, (req_id, idx, header, payload, time.time())))

    def function(self, name: str, spec: dict[str, Any]) -> None:
        self._put(("INSERT OR REPLACE INTO functions VALUES (?,?,?)", (name, json.dumps(spec), time.time())))

    def setting(self, key: str, value: str) -> None:
        self._put(("INSERT OR REPLACE INTO settings VALUES (?,?,?)", (key, value, time.time())))

    def frozen(self, req_id: str, gen: int, n: int, ran: float = 0.0) -> None:
        """A world froze at generation ``gen`` (its state is in the planner's store); gen 0: it no longer is.
        ``ran``: a frozen delay-tolerant call's seconds of work so far (planner/deadlines.py)."""
        if gen:
            self._put(("INSERT OR REPLACE INTO frozen VALUES (?,?,?,?,?)", (req_id, gen, n, time.time(), ran)))
        else:
            self._put(("DELETE FROM frozen WHERE req_id=?", (req_id,)))

    def checkpoint(self, req_id: str, ckpt: int) -> None:
        """A world's latest complete checkpoint (its state is in the planner's store); 0: none any more."""
        if ckpt:
            self._put(("INSERT OR REPLACE INTO checkpoints VALUES (?,?,?)", (req_id, ckpt, time.time())))
        else:
            self._put(("DELETE FROM checkpoints WHERE req_id=?", (req_id,)))

    def event(self, app_id: str, req_id: str, kind: str, text: str, data: dict[str, Any], event_id: int | None = None,
              at: float | None = None) -> None:
        """Something the planner decided or saw happen (see event_feed.py), for status, events and metrics."""
        self._put(("INSERT INTO events (id, at, app_id, req_id, kind, text, data) VALUES (?,?,?,?,?,?,?)",
                   (event_id, time.time() if at is None else at, app_id, req_id, kind, text, json.dumps(data))))

    def drop_events(self, upto: int) -> None:
        """Delete the events with an id up to ``upto`` (the retention bound of the event stream)."""
        if upto > 0:
            self._put(("DELETE FROM events WHERE id<=?", (upto,)))

    def log(self, app_id: str, req_id: str, idx: int, stream: str, data: str, run: str = "", part: int = 0) -> None:
        self._put(("INSERT INTO logs (app_id, req_id, idx, stream, data, run, part) VALUES (?,?,?,?,?,?,?)",
                     (app_id, req_id, idx, stream, data, run, part)))

    def prune(self, req_ids: list[str], app_ids: list[str], tombstones_before: float,
              app_tombstones_before: float) -> None:
        """Delete the rows of pruned requests and apps, leave tombstones, expire old ones, give the
        freed pages back. Runs on the writer thread, after everything queued before it is committed;
        times are wall-clock (``time.time()``)."""
        self._put(_Job(lambda db: self._prune(db, req_ids, app_ids, tombstones_before, app_tombstones_before)),
                  now=True)

    def _prune(self, db: sqlite3.Connection, req_ids: list[str], app_ids: list[str], tombstones_before: float,
               app_tombstones_before: float) -> None:
        with self._lock:
            _prune(db, req_ids, app_ids, tombstones_before, app_tombstones_before)
        now = time.monotonic()
        if now - self._vacuumed >= VACUUM_INTERVAL:  # each one rewrites pages: not on every prune
            self._vacuumed = now
            _vacuum(db, self._lock)

    def size(self) -> int:
        """Bytes on disk: the database and its write-ahead log."""
        total = 0
        for suffix in ("", "-wal"):
            try:
                total += Path(f"{self.path}{suffix}").stat().st_size
            except FileNotFoundError:
                pass
        return total

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` on the writer thread once everything queued before it is committed."""
        self._put(callback, now=True)

    def call_after_commit(self, fn: Callable[..., None], *args: Any, hurry: bool = True) -> None:
        """Run ``fn(*args)`` on the event loop once everything queued so far is committed (``hurry``:
        commit now; otherwise with the current batch, see on_commit)."""
        loop = self._loop
        assert loop is not None

        def on_writer() -> None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: the planner is stopping
                loop.call_soon_threadsafe(fn, *args)

        self._put(on_writer, now=hurry)

    def on_commit(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` on the writer thread once the current batch is committed (not hurried:
        it and whatever else joins this batch until ``batches`` changes commit together)."""
        self._put(callback)

    # --- reads (synchronous; rare: start-up, status queries) ----------------------------------------
    def query(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return list(self._db.execute(sql, args))

    def restore(self) -> Restored:
        finished: dict[str, set[int]] = {}
        for req_id, idx in self.query("SELECT req_id, idx FROM results"):
            finished.setdefault(req_id, set()).add(idx)
        return Restored(
            apps=[tuple(r) for r in self.query("SELECT app_id, kind, name, state FROM apps")],
            requests=[tuple(r) for r in self.query(
                "SELECT r.req_id, r.app_id, r.header, r.payload FROM requests r JOIN apps a USING (app_id) "
                "WHERE a.state = 'running' ORDER BY r.created")],
            finished=finished,
            functions={n: json.loads(s) for n, s in self.query("SELECT name, spec FROM functions")},
            all_requests=[r[0] for r in self.query("SELECT req_id FROM requests")],
            ended_apps=[r[0] for r in self.query("SELECT app_id FROM apps WHERE state != 'running'")],
            pruned=[(r[0], r[1]) for r in self.query("SELECT req_id, pruned FROM pruned_requests")],
            settings={k: v for k, v in self.query("SELECT key, value FROM settings")},
        )

    def close(self) -> None:
        self.flush()
        self._q.put(None)
        self._thread.join(timeout=10)
        self._db.close()

    # --- the writer thread --------------------------------------------------------------------
    def _insert_rows(self, table: str, rows: list[tuple[Any, ...]]) -> None:
        """INSERT OR IGNORE ``rows`` (5 columns each), up to ROWS_PER_INSERT per statement.

        One statement step per chunk instead of one per row: the sqlite3 module releases the GIL
        around every step, and each release is a chance for a hand-off with the event loop."""
        for i in range(0, len(rows), ROWS_PER_INSERT):
            chunk = rows[i:i + ROWS_PER_INSERT]
            self._db.execute(f"INSERT OR IGNORE INTO {table} VALUES {_PLACEHOLDERS[len(chunk)]}",
                             [v for row in chunk for v in row])

    def _run(self) -> None:
        while True:
            batches = [self._q.get()]
            while True:
                try:
                    batches.append(self._q.get_nowait())
                except queue.Empty:
                    break
            callbacks: list[Callable[[], None]] = []
            jobs: list[_Job] = []
            keyed: dict[str, list[tuple[Any, ...]]] = {_REQUESTS: [], _RESULTS: []}
            stop = False
            started = time.perf_counter()
            with self._lock:
                self._db.execute("BEGIN")
                for batch in batches:
                    if batch is None:
                        stop = True
                        continue
                    # executemany over runs of the same statement: one C loop instead of a Python
                    # call per row. Order across statements is kept, except for requests and
                    # results: those rows are insert-once and keyed, so their order within the
                    # transaction does not matter, and they go in as multi-row INSERTs.
                    run_sql = ""
                    run_rows: list[tuple[Any, ...]] = []
                    for item in batch:
                        if isinstance(item, _Job):
                            jobs.append(item)
                            continue
                        if callable(item):
                            callbacks.append(item)
                            continue
                        sql = item[0]
                        if sql is _REQUESTS or sql is _RESULTS:
                            keyed[sql].append(item[1])
                            continue
                        if sql != run_sql and run_rows:
                            self._db.executemany(run_sql, run_rows)
                            run_rows = []
                        run_sql = sql
                        run_rows.append(item[1])
                    if run_rows:
                        self._db.executemany(run_sql, run_rows)
                for table, rows in keyed.items():
                    self._insert_rows(table, rows)
                self._db.execute("COMMIT")
            self.commits.add(time.perf_counter() - started)
            for job in jobs:  # outside the lock: a job takes it per step, so reads wait for one step only
                job.fn(self._db)
            for cb in callbacks:
                cb()
            if stop:
                return


_CHUNK = 500  # ids per DELETE ... IN (...), far below SQLite's bound-parameter limit


def _prune(db: sqlite3.Connection, req_ids: list[str], app_ids: list[str], tombstones_before: float,
           app_tombstones_before: float) -> None:
    now = time.time()
    db.execute("BEGIN")
    for i in range(0, len(req_ids), _CHUNK):
        chunk = req_ids[i:i + _CHUNK]
        marks = ",".join("?" * len(chunk))
        for table in ("results", "requests", "logs", "events"):
            db.execute(f"DELETE FROM {table} WHERE req_id IN ({marks})", chunk)
        db.executemany("INSERT OR REPLACE INTO pruned_requests VALUES (?,?)", [(rid, now) for rid in chunk])
    for app_id in app_ids:
        db.execute("INSERT OR REPLACE INTO pruned_apps SELECT app_id, kind, name, state, ? FROM apps WHERE app_id=?",
                   (now, app_id))
        db.execute("DELETE FROM apps WHERE app_id=?", (app_id,))
        db.execute("DELETE FROM logs WHERE app_id=?", (app_id,))
        db.execute("DELETE FROM events WHERE app_id=?", (app_id,))
        db.execute("DELETE FROM requests WHERE app_id=?", (app_id,))
    db.execute("DELETE FROM pruned_requests WHERE pruned < ?", (tombstones_before,))
    db.execute("DELETE FROM pruned_apps WHERE pruned < ?", (app_tombstones_before,))
    db.execute("COMMIT")


def _vacuum(db: sqlite3.Connection, lock: threading.Lock) -> None:
    with lock:
        if db.execute("PRAGMA auto_vacuum").fetchone()[0] != 2:  # a journal made before auto_vacuum was set
            db.execute("PRAGMA auto_vacuum=INCREMENTAL")
            db.execute("VACUUM")  # once per journal, ever: the only long step
    with lock:
        db.executescript("PRAGMA incremental_vacuum;")  # execute() would step it once: one page freed
    with lock:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the WAL file keeps its largest size otherwise
