"""Serverless functions end to end on real planner, worker and granule processes."""

from __future__ import annotations

import concurrent.futures as cf
import os
import socket
import time
from pathlib import Path

import numpy as np
import pytest

import granny
from granny.cluster import LocalCluster

from ..polling import wait_for


def block_until(path: str) -> str:
    import os
    import time

    while not os.path.exists(path):
        time.sleep(0.01)
    return os.environ["GRANNY_HOST_ID"]


def test_submit_map_and_executor(client: granny.Client) -> None:
    assert client.submit(pow, 2, 10).result(timeout=30) == 1024
    assert list(client.map(lambda x, y: x * y, range(20), range(20))) == [i * i for i in range(20)]
    with granny.Executor(client=client) as ex:
        assert list(ex.map(abs, [-1, -2, 3])) == [1, 2, 3]
        assert ex.submit(sum, [1, 2, 3], start=4).result(timeout=30) == 10


def test_numpy_arguments_and_results(client: granny.Client) -> None:
    a = np.arange(1 << 20, dtype=np.float64)
    out = client.submit(lambda x: x * 2, a).result(timeout=30)
    assert isinstance(out, np.ndarray)
    np.testing.assert_array_equal(out, a * 2)


def test_function_that_raises_reraises_with_remote_traceback(client: granny.Client) -> None:
    def boom(x: int) -> None:
        raise ValueError(f"bad value {x}")

    fut = client.submit(boom, 7)
    with pytest.raises(ValueError, match="bad value 7") as info:
        fut.result(timeout=30)
    notes = "\n".join(getattr(info.value, "__notes__", []))
    assert "Remote traceback" in notes and "boom" in notes
    assert client.submit(pow, 3, 2).result(timeout=30) == 9  # the granule is still usable


def test_unpicklable_exception_becomes_remote_error(client: granny.Client) -> None:
    def boom() -> None:
        class Local(Exception):
            def __reduce__(self):  # type: ignore[no-untyped-def]
                raise TypeError("nope")

        raise Local("local failure")

    with pytest.raises(granny.RemoteError, match="local failure"):
        client.submit(boom).result(timeout=30)


def test_os_exit_is_reported_as_crash_and_slot_recovers(client: granny.Client) -> None:
    fut = client.submit(os._exit, 3)
    with pytest.raises(granny.GranuleCrashedError, match="exited with code 3") as info:
        fut.result(timeout=30)
    assert "local" in str(info.value)
    # Both slots come back: two concurrent calls still run.
    assert [f.result(timeout=30) for f in [client.submit(abs, -i) for i in range(4)]] == [0, 1, 2, 3]


def test_segfault_is_reported(client: granny.Client) -> None:
    def segv() -> None:
        import ctypes

        ctypes.string_at(0)

    with pytest.raises(granny.GranuleCrashedError, match="SIGSEGV"):
        client.submit(segv).result(timeout=30)


def test_unpicklable_return_value(client: granny.Client) -> None:
    def make_lock():  # type: ignore[no-untyped-def]
        import threading

        return threading.Lock()

    with pytest.raises(granny.ResultSerializationError, match="could not be serialised"):
        client.submit(make_lock).result(timeout=30)


def test_full_cluster_queues_then_runs(client: granny.Client, tmp_path: Path) -> None:
    gate = str(tmp_path / "gate")
    futures = [client.submit(block_until, gate) for _ in range(6)]  # 2 slots (+2 prefetched): 2 must queue
    queue = wait_for(lambda: client.query("queue"), what="queued requests")
    assert len(queue) >= 1 and all(not f.done() for f in futures)
    Path(gate).touch()
    assert [f.result(timeout=30) for f in futures] == ["local"] * 6
    assert client.query("queue") == []


def test_request_larger_than_cluster_fails_at_once(client: granny.Client, tmp_path: Path) -> None:
    script = tmp_path / "s.py"
    script.write_text("print('hi')\n")
    results = client.run_script(str(script), n=5)
    assert {r.error_kind for r in results} == {"never_fits"}
    assert "never fit" in results[0].message and "2 slots" in results[0].message


def test_chained_submit_from_inside_a_granule(client: granny.Client) -> None:
    def parent(x: int) -> int:
        import granny

        return int(granny.submit(lambda y: y + 1, x).result(timeout=30)) * 10

    assert client.submit(parent, 4).result(timeout=60) == 50


def test_memory_limit(client: granny.Client) -> None:
    def hog() -> int:
        import numpy as np

        return int(np.ones(1 << 28).sum())  # 2 GiB

    with pytest.raises(MemoryError) as info:
        client.options(memory_limit="256MiB").submit(hog).result(timeout=30)
    assert "Remote traceback" in "\n".join(getattr(info.value, "__notes__", []))
    assert client.submit(pow, 2, 3).result(timeout=30) == 8


def test_cancel_running_task_kills_granule(client: granny.Client, tmp_path: Path) -> None:
    fut = client.submit(block_until, str(tmp_path / "never"))
    wait_for(lambda: any(a["tasks"].get("running") for a in client.apps()), what="task running")
    assert fut.cancel()
    with pytest.raises(cf.CancelledError):
        fut.result(timeout=5)
    # The killed granule is replaced: two concurrent tasks run again.
    assert [f.result(timeout=30) for f in [client.submit(abs, -1), client.submit(abs, -2)]] == [1, 2]


def test_wrong_token_is_refused(cluster: LocalCluster) -> None:
    with pytest.raises(granny.GrannyError, match="authentication failed|refused"):
        granny.connect(cluster.address, "not-the-token")


def test_garbage_frames_close_only_that_connection(client: granny.Client, cluster: LocalCluster) -> None:
    host, port = cluster.address.split(":")
    for junk in (b"\xff" * 64, b"\x00" * 12, os.urandom(4096), b"GET / HTTP/1.1\r\n\r\n"):
        with socket.create_connection((host, int(port)), timeout=5) as s:
            s.recv(4096)  # the challenge
            s.sendall(junk)
            s.settimeout(5)
            try:
                while s.recv(4096):
                    pass
            except (ConnectionResetError, TimeoutError):
                pass
    assert client.submit(pow, 2, 5).result(timeout=30) == 32  # the planner is unharmed


def test_worker_killed_mid_granule_fails_with_host_name(client: granny.Client, cluster: LocalCluster,
                                                        tmp_path: Path) -> None:
    fut = client.submit(block_until, str(tmp_path / "never"))
    wait_for(lambda: any(a["tasks"].get("running") for a in client.apps()), what="task running")
    worker = cluster.procs[1]
    started = time.monotonic()
    worker.kill()
    with pytest.raises(granny.HostDiedError, match="host local stopped sending heartbeats"):
        fut.result(timeout=30)
    assert time.monotonic() - started < 30
    hosts = client.hosts()
    assert [h.alive for h in hosts] == [False]


def test_client_close_cancels_pending(cluster: LocalCluster, tmp_path: Path) -> None:
    c = granny.connect(cluster.address, cluster.token)
    fut = c.submit(block_until, str(tmp_path / "never"))
    c.close()
    with pytest.raises(granny.GrannyError):
        fut.result(timeout=10)


def test_cancel_prefetched_task_spares_the_running_one(client: granny.Client, tmp_path: Path) -> None:
    gate = str(tmp_path / "gate")
    running = [client.submit(block_until, gate) for _ in range(2)]
    wait_for(lambda: sum(a["tasks"].get("running", 0) for a in client.apps()) >= 2, what="two running")
    prefetched = [client.submit(block_until, gate) for _ in range(2)]  # sit behind the running ones
    wait_for(lambda: sum(a["tasks"].get("running", 0) for a in client.apps()) >= 4, what="two prefetched")
    assert prefetched[0].cancel()
    Path(gate).touch()
    assert [f.result(timeout=30) for f in running] == ["local", "local"]  # not killed by the cancel
    assert prefetched[1].result(timeout=30) == "local"
    assert prefetched[0].cancelled()


def test_parents_waiting_on_children_do_not_starve_them(client: granny.Client) -> None:
    """More waiting parents than slots: each lends its slot while it waits (Ray-style)."""

    def child(x: int) -> int:
        return x + 1

    def parent(x: int) -> int:
        import granny

        return int(granny.submit(child, x).result(timeout=60)) * 10

    futures = [client.submit(parent, i) for i in range(5)]  # 2 slots
    assert [f.result(timeout=90) for f in futures] == [(i + 1) * 10 for i in range(5)]


def test_output_below_python_is_captured_in_order(client: granny.Client) -> None:
    """What C code or os.write puts on fds 1 and 2 reaches the app's logs, like print does."""

    def noisy() -> int:
        import ctypes
        import os

        print("from print")
        os.write(1, b"from fd 1\n")
        os.write(2, b"from fd 2\n")
        ctypes.CDLL(None).printf(b"from libc printf\n")
        return 7

    assert client.submit(noisy).result(timeout=30) == 7
    needles = ("from print", "from fd 1", "from fd 2", "from libc printf")

    def logged() -> str:
        text = "".join(row["data"] for row in client.query("logs", client.app_id))
        return text if all(n in text for n in needles) else ""

    text = wait_for(logged, what="all four outputs in the app's logs")
    assert all(n in text for n in needles)
