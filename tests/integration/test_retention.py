"""A planner with a short --retain really forgets finished work (issue 10, defect 7).

Real planner and worker processes; GRANNY_RETAIN reaches the planner through the environment its
LocalCluster inherits. Nothing here measures time: every wait polls for an outcome with a deadline.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import granny
from granny.client import _future
from granny.cluster import LocalCluster
from granny.errors import GrannyError, PrunedError
from granny.pending import Pending

from ..polling import wait_for

RETAIN = "0.5s"


@pytest.fixture
def short(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalCluster]:
    monkeypatch.setenv("GRANNY_RETAIN", RETAIN)
    c = LocalCluster(workers=1, slots=2, data_dir=tmp_path / "data", heartbeat_timeout=2.0, granule_user="same")
    try:
        yield c
    finally:
        c.stop()


def square_and_say(x: int) -> int:
    print(f"square of {x}")
    return x * x


def journal_count(cluster: LocalCluster, sql: str, args: tuple[object, ...] = ()) -> int:
    db = sqlite3.connect(cluster.data_dir / "journal.sqlite")
    try:
        return int(db.execute(sql, args).fetchone()[0])
    finally:
        db.close()


def pruned_error(client: granny.Client, what: str, app_id: str) -> str:
    """The error the planner gives for ``what`` of ``app_id`` ("" while it still answers)."""
    try:
        client.query(what, app_id)
    except GrannyError as exc:
        return str(exc)
    return ""


def test_short_retention_prunes_calls_apps_and_journal_rows(short: LocalCluster) -> None:
    client = granny.connect(short.address, short.token)
    sent = recording(client)
    try:
        assert [f.result(60) for f in [client.submit(square_and_say, i) for i in range(20)]] == [
            i * i for i in range(20)]
        ids = [p.submit.req_id for p in sent]
        # The planner's view shrinks to nothing, while its counts still tell the whole story.
        wait_for(lambda: client.query("app", client.app_id)["granules"] == [], timeout=60,
                 what="the finished calls to be pruned from the planner's memory")
        assert client.query("app", client.app_id)["tasks"]["succeeded"] == 20
        marks = ",".join("?" * len(ids))
        wait_for(lambda: journal_count(short, f"SELECT count(*) FROM results WHERE req_id IN ({marks})",
                                       tuple(ids)) == 0, timeout=60, what="the journal's result rows to go")
        assert journal_count(short, f"SELECT count(*) FROM requests WHERE req_id IN ({marks})", tuple(ids)) == 0
        assert journal_count(short, "SELECT count(*) FROM logs WHERE app_id=?", (client.app_id,)) == 0

        # A client that comes back for a pruned call (as after a reconnect) is told, not re-run.
        with pytest.raises(PrunedError, match=f"finished more than {RETAIN} ago and was pruned"):
            resubmit(client, sent[0]).result(60)

        # An app that ended: status and logs say it was pruned, with its final state.
        other = granny.connect(short.address, short.token)
        assert other.submit(square_and_say, 3).result(60) == 9
        ended = other.app_id
        other.close()
        wait_for(lambda: "was pruned" in pruned_error(client, "app", ended), timeout=60,
                 what="the ended app to be pruned")
        assert "finished more than 0.5s ago" in pruned_error(client, "app", ended)
        assert "was pruned" in pruned_error(client, "logs", ended)
        for command in ("status", "logs"):  # what a user sees
            out = subprocess.run([sys.executable, "-m", "granny", command, ended, "--address", short.address],
                                 env=os.environ | {"GRANNY_TOKEN": short.token}, capture_output=True, text=True,
                                 timeout=60)
            assert out.returncode == 2 and "was pruned" in " ".join((out.stdout + out.stderr).split()), out
        assert ended not in {a["app_id"] for a in client.apps()}
        assert journal_count(short, "SELECT count(*) FROM apps WHERE app_id=?", (ended,)) == 0
        assert journal_count(short, "SELECT count(*) FROM pruned_apps WHERE app_id=?", (ended,)) == 1
    finally:
        client.close()


def test_running_app_and_running_call_are_kept(short: LocalCluster) -> None:
    client = granny.connect(short.address, short.token)
    try:
        assert client.submit(square_and_say, 2).result(60) == 4
        wait_for(lambda: client.query("app", client.app_id)["granules"] == [], timeout=60,
                 what="the finished call to be pruned")
        # Every pass since has found the running app (and its later call) and kept them.
        assert client.query("app", client.app_id)["state"] == "running"
        assert client.submit(square_and_say, 5).result(60) == 25
    finally:
        client.close()


def append_line(path: str) -> int:
    """A call with a side effect that counts its runs."""
    with open(path, "a") as fh:
        fh.write("ran\n")
    return len(Path(path).read_text().splitlines())


def resubmit(client: granny.Client, old: Pending) -> granny.GrannyFuture:
    """Send a finished call's Submit again under its id, as the client does after a reconnect."""
    again = _future(client, old.submit.req_id)
    client._send(Pending(old.submit, old.segments, again))
    return again


def recording(client: granny.Client) -> list[Pending]:
    sent: list[Pending] = []
    send = client._send
    client._send = lambda p: (sent.append(p), send(p))[1]  # type: ignore[method-assign]
    return sent


def test_pruned_call_resubmitted_after_a_planner_restart_is_not_run_again(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from .test_recovery import restart_planner

    # A tombstone outlives its call by one window: 0.5 s was shorter than a planner restart on a loaded
    # machine (the resubmission then found no tombstone and ran the call again). 5 s leaves room for it.
    monkeypatch.setenv("GRANNY_RETAIN", "5s")
    short = LocalCluster(workers=1, slots=2, data_dir=tmp_path / "data", heartbeat_timeout=2.0, granule_user="same")

    log = tmp_path / "runs"
    client = granny.connect(short.address, short.token)
    sent = recording(client)
    try:
        assert client.submit(append_line, str(log)).result(60) == 1
        wait_for(lambda: journal_count(short, "SELECT count(*) FROM pruned_requests WHERE req_id=?",
                                       (sent[0].submit.req_id,)) == 1, timeout=60, what="the call's tombstone")
        restart_planner(short)
        with pytest.raises(PrunedError, match="was pruned"):
            resubmit(client, sent[0]).result(60)
        assert log.read_text() == "ran\n"
    finally:
        client.close()
        short.stop()


def test_call_finished_before_a_restart_is_answered_from_the_journal(cluster: LocalCluster,
                                                                     tmp_path: Path) -> None:
    from .test_recovery import restart_planner

    log = tmp_path / "runs"
    client = granny.connect(cluster.address, cluster.token)
    sent = recording(client)
    try:
        assert client.submit(append_line, str(log)).result(60) == 1
        wait_for(lambda: journal_count(cluster, "SELECT count(*) FROM results WHERE req_id=?",
                                       (sent[0].submit.req_id,)) == 1, timeout=60, what="the result's journal row")
        restart_planner(cluster)
        assert resubmit(client, sent[0]).result(60) == 1  # the journaled result, not a second run
        assert log.read_text() == "ran\n"
    finally:
        client.close()
