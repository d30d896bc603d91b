"""Planner crash and restart, and the embedded cluster's lifetime, with real processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import psutil
import pytest

import granny
from granny.cluster import LocalCluster

from .test_functions import block_until, wait_for


def restart_planner(cluster: LocalCluster, kill: bool = True, *extra: str) -> subprocess.Popen[bytes]:
    """kill -9 the cluster's planner (unless the caller did), then start a new one on the same port and
    data directory."""
    planner = cluster.procs[0]
    if kill:
        planner.send_signal(signal.SIGKILL)
    planner.wait()
    _, port = cluster.address.split(":")
    _, http_port = cluster.http_address.split(":")
    proc = subprocess.Popen(
        [sys.executable, "-m", "granny", "planner", "--bind", "127.0.0.1", "--port", port, "--http-port",
         http_port, "--data-dir", str(cluster.data_dir), "--heartbeat-timeout", "2", *extra],
        stdout=subprocess.PIPE)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith(b"READY"), line
    cluster.adopt(0, proc)  # the fixture's stop() terminates it
    return proc


def test_planner_kill9_loses_no_accepted_work(client: granny.Client, cluster: LocalCluster, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    futures = [client.submit(block_until, str(gate)) for _ in range(6)]  # 2 run, 2 prefetched, 2 queue
    wait_for(lambda: len(client.query("queue")) >= 1, what="queued work")
    restart_planner(cluster)
    gate.touch()
    # Running work finished across the restart and queued work was re-dispatched: all four results.
    assert [f.result(timeout=60) for f in futures] == ["local"] * 6
    assert client.submit(pow, 2, 4).result(timeout=30) == 16
    assert [h.alive for h in client.hosts()] == [True]  # the worker re-registered by itself


def test_http_call_accepted_before_crash_is_answered_after(cluster: LocalCluster, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    http = httpx.Client(base_url=f"http://{cluster.http_address}",
                        headers={"Authorization": f"Bearer {cluster.token}"}, timeout=30)
    source = textwrap.dedent(f"""
        import os, time
        def main(x):
            while not os.path.exists({str(gate)!r}):
                time.sleep(0.01)
            return {{"double": x * 2}}
    """)
    assert http.post("/v1/functions", json={"name": "slow", "source": source}).status_code == 201
    call_ids = [http.post("/v1/functions/slow/invoke", json={"input": i}).json()["call_id"] for i in range(3)]
    restart_planner(cluster)
    gate.touch()
    http2 = httpx.Client(base_url=f"http://{cluster.http_address}",
                         headers={"Authorization": f"Bearer {cluster.token}"}, timeout=30)

    def all_done() -> list[dict[str, object]] | None:
        views = [http2.get(f"/v1/calls/{cid}").json() for cid in call_ids]
        return views if all(v["state"] == "succeeded" for v in views) else None

    views = wait_for(all_done, timeout=60, what="calls to finish after the restart")
    assert [v["result"] for v in views] == [{"double": 0}, {"double": 2}, {"double": 4}]


OWNER = textwrap.dedent("""
    import json, os, sys, psutil, granny
    c = granny.connect()
    assert c.submit(pow, 2, 2).result(timeout=30) == 4
    me = psutil.Process()
    print(json.dumps([p.pid for p in me.children(recursive=True)]), flush=True)
    sys.stdin.read()
""")


def test_embedded_cluster_dies_with_its_owner_even_on_kill9(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRANNY_")}
    owner = subprocess.Popen([sys.executable, "-c", OWNER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
    assert owner.stdout is not None
    pids = json.loads(owner.stdout.readline())
    assert len(pids) >= 4  # planner, worker, zygote, granules
    owner.kill()
    owner.wait()
    owner.stdout.close()
    if owner.stdin is not None:
        owner.stdin.close()

    def all_gone() -> bool:
        return not [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]

    wait_for(all_gone, timeout=20, what="the embedded cluster's processes to exit")
    owners = {f"-p{pid}" for pid in [*pids, owner.pid]}  # this cluster's (other tests may hold their own)
    assert not [f for f in os.listdir("/dev/shm") if f.startswith("granny") and any(f.endswith(o) for o in owners)]


@pytest.mark.parametrize("argv", [["up", "--slots", "0"], ["worker", "--planner", "nohost"], ["run", "missing.py"],
                                  ["planner", "--batch-share", "2"], ["run", "--checkpoint", "0s", "x.py"]])
def test_cli_bad_arguments_fail_clearly(argv: list[str]) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRANNY_")}
    proc = subprocess.run([sys.executable, "-m", "granny", *argv], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode != 0
    assert proc.stderr.strip(), "a failing command must say why"
    assert "Traceback" not in proc.stderr


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # as a shell starts a background job (`granny up &`)


@pytest.mark.parametrize("background", [False, True], ids=["foreground", "background-job"])
def test_granny_up_serves_and_stops_cleanly(tmp_path: Path, background: bool) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRANNY_")}
    proc = subprocess.Popen([sys.executable, "-m", "granny", "up", "--port", "0", "--http-port", "0", "--slots", "2",
                             "--data-dir", str(tmp_path / "d"), "--granule-user", "same"], stdout=subprocess.PIPE, env=env,
                            preexec_fn=_ignore_sigint if background else None)
    assert proc.stdout is not None
    line = b""
    while not line.startswith(b"READY"):
        line = proc.stdout.readline()
        assert line, "granny up exited early"
    fields = dict(kv.split("=", 1) for kv in line.decode().split()[1:])
    token = Path(fields["token_file"]).read_text().strip()
    assert oct(Path(fields["token_file"]).stat().st_mode & 0o777) == "0o600"
    children = [p.pid for p in psutil.Process(proc.pid).children(recursive=True)]
    with granny.connect(fields["address"], token) as c:
        assert c.submit(pow, 3, 3).result(timeout=30) == 27
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=20) == 0
    proc.stdout.close()
    wait_for(lambda: not [p for p in children if psutil.pid_exists(p)
                          and psutil.Process(p).status() != psutil.STATUS_ZOMBIE], what="no stray processes")


def test_large_payloads_survive_planner_kill9_through_client_resubmission(
        client: granny.Client, cluster: LocalCluster, tmp_path: Path) -> None:
    import numpy as np

    gate = tmp_path / "gate"

    def checksum(path: str, arr: np.ndarray) -> float:
        block_until(path)
        return float(arr.sum())

    big = np.ones(1 << 18)  # 2 MiB: above the journal's inline limit, so only the client holds it
    futures = [client.submit(checksum, str(gate), big * i) for i in range(6)]
    wait_for(lambda: len(client.query("queue")) >= 1, what="queued work")
    restart_planner(cluster)
    gate.touch()
    assert [f.result(timeout=60) for f in futures] == [float(big.sum() * i) for i in range(6)]


def test_a_large_payload_whose_client_does_not_come_back_fails_when_the_restart_grace_ends(
        client: granny.Client, cluster: LocalCluster, tmp_path: Path) -> None:
    """The restart grace is the state's deadline now (grace.py): driven by the planner's ticks, it still
    ends, and the held request fails with a message that says why."""
    import sqlite3

    from granny.errors import ConnectionLostError
    from granny.wire import Result, decode_header

    gate = tmp_path / "gate"
    blockers = [client.submit(block_until, str(gate)) for _ in range(2)]  # both slots busy: the big call queues
    wait_for(lambda: len(client.query("apps")) >= 1, what="the blockers")
    script = textwrap.dedent(f"""
        import sys, time
        import numpy as np
        import granny
        c = granny.Client({cluster.address!r}, {cluster.token!r}, app_id="orphaned")
        fut = c.submit(sum, np.ones(1 << 18))  # 2 MiB: the journal keeps only its record
        c.query("queue")  # a round trip: the planner has it
        print("submitted", flush=True)
        time.sleep(600)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == b"submitted\n"

        def journaled() -> bool:  # its record, without the payload (journal writes are batched)
            with sqlite3.connect(cluster.data_dir / "journal.sqlite") as db:
                return bool(db.execute("SELECT 1 FROM requests WHERE app_id='orphaned' AND payload IS NULL")
                            .fetchall())

        wait_for(journaled, what="the request's record in the journal")
        proc.send_signal(signal.SIGKILL)  # gone without a word: nobody will resubmit its payload
        proc.wait()
        restart_planner(cluster)
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
        gate.touch()
    assert [f.result(timeout=60) for f in blockers] == ["local"] * 2

    def failed() -> bool:
        try:
            return bool(client.query("app", "orphaned")["tasks"].get("failed") == 1)
        except ConnectionLostError:
            return False  # asked on the old connection: the client's reader reconnects by itself

    wait_for(failed, timeout=60, what="the held request failed at the end of the grace")

    def lost() -> list[Result]:
        with sqlite3.connect(cluster.data_dir / "journal.sqlite") as db:
            rows = db.execute("SELECT results.header FROM results JOIN requests USING (req_id) "
                              "WHERE requests.app_id='orphaned'").fetchall()
        return [r for r in (decode_header(row[0]) for row in rows) if isinstance(r, Result)]

    (res,) = wait_for(lost, what="the failure in the journal")
    assert res.error_kind == "lost"
    assert "payload (too large to journal) did not reconnect within 3s" in res.message, res.message


def test_a_query_after_a_planner_kill9_is_asked_again_on_the_new_connection(client: granny.Client,
                                                                          cluster: LocalCluster) -> None:
    assert client.query("counters") is not None
    restart_planner(cluster)  # the client's connection is dead; its reader thread reconnects
    # The first query after the restart used to fail with "connection lost while sending: Broken pipe".
    assert isinstance(client.query("counters"), dict)
    wait_for(lambda: [h.alive for h in client.hosts()] == [True], what="the worker registered again")
