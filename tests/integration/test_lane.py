"""Result lanes: granules on the client's machine hand results straight to it (granny.transport.lane)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import numpy as np
import pytest

import granny
from granny import serde
from granny.client import Client
from granny.cluster import LocalCluster
from granny.config import ENV_RESULT_LANE
from granny.transport import lane as lane_mod
from granny.transport.auth import make_mac
from granny.wire import Challenge, FrameReader, Hello, Result, Role, Status, encode_frame

from ..polling import wait_for
from .test_functions import block_until


def fail(msg: str) -> None:
    raise ValueError(msg)


def big(n: int) -> np.ndarray:
    return np.arange(n, dtype=np.float64)


def test_results_come_over_the_lane_on_one_machine(client: granny.Client) -> None:
    def settled() -> bool:
        # The lane hands a result over before the planner hears the Done; a call submitted before
        # it does could be prefetched behind the busy granule, and prefetched calls use the planner.
        return all(g["state"] != "running" for g in client.query("app", client.app_id)["granules"])

    values = []
    for i in range(10):
        values.append(client.submit(pow, 2, i).result(timeout=30))
        wait_for(settled, what="the planner to see the call done")
    assert values == [2**i for i in range(10)]
    assert client.results_via_lane == 10  # one call at a time: every result skipped the planner


def test_a_stream_of_calls_mixes_lane_and_planner_results_correctly(client: granny.Client) -> None:
    # Tasks queued behind others report through the planner (batching); the rest over the lane.
    futures = [client.submit(pow, 3, i) for i in range(300)]
    assert [f.result(timeout=60) for f in futures] == [3**i for i in range(300)]


def test_errors_and_large_results_over_the_lane(client: granny.Client) -> None:
    with pytest.raises(ValueError, match="boom") as info:
        client.submit(fail, "boom").result(timeout=30)
    assert any("Remote traceback" in note for note in info.value.__notes__)
    arr = client.submit(big, 1 << 20).result(timeout=30)  # 8 MiB: the planner only journals the record
    assert arr.shape == (1 << 20,) and arr[-1] == (1 << 20) - 1
    assert client.results_via_lane == 2
    # The planner still did the bookkeeping: both slots are free again.
    wait_for(lambda: all(h.used == 0 for h in client.hosts()) or None, timeout=10, what="slots freed")
    assert client.submit(pow, 3, 3).result(timeout=30) == 27


def test_lane_turned_off_uses_the_planner(cluster: LocalCluster, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_RESULT_LANE, "0")
    with granny.connect(cluster.address, cluster.token) as c:
        assert c.submit(pow, 2, 8).result(timeout=30) == 256
        assert c.results_via_lane == 0


def test_unreachable_lane_falls_back_to_the_planner(cluster: LocalCluster, monkeypatch: pytest.MonkeyPatch) -> None:
    class Unreachable(lane_mod.LaneServer):
        def __init__(self, *args: object) -> None:
            super().__init__(*args)  # type: ignore[arg-type]
            self.path = "@granny-lane-nobody-listens-here"

    monkeypatch.setattr("granny.client.LaneServer", Unreachable)
    with granny.connect(cluster.address, cluster.token) as c:
        assert [c.submit(pow, 2, i).result(timeout=30) for i in range(3)] == [1, 2, 4]
        assert c.results_via_lane == 0


def _dial_lane(c: Client) -> socket.socket:
    assert c._lane is not None
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect("\0" + c._lane.path[1:])
    return s


def _read_frame(s: socket.socket) -> object | None:
    reader = FrameReader()
    while True:
        buf = reader.get_buffer()
        n = s.recv_into(buf)
        if n == 0:
            return None
        frames = reader.buffer_updated(n)
        if frames:
            return frames[0][0]


def test_lane_refuses_wrong_keys_and_never_unpickles_before_the_handshake(client: granny.Client,
                                                                           tmp_path: Path) -> None:
    marker = tmp_path / "unpickled"
    # A pickle that would create `marker` if anyone loaded it.
    evil = b"cos\nsystem\n(S'touch " + str(marker).encode() + b"'\ntR."
    evil = bytes(serde.frame([evil]))  # a well-formed body: only the handshake stands in its way
    bad_result = Result(req_id="x-1", index=0, status=Status.OK, size=len(evil))

    # 1. a Result before any handshake
    with _dial_lane(client) as s:
        assert isinstance(_read_frame(s), Challenge)
        s.sendall(b"".join(bytes(p) for p in encode_frame(bad_result, [evil])))
        assert _read_frame(s) is None  # closed
    # 2. a Hello with the wrong key, then the Result anyway
    with _dial_lane(client) as s:
        challenge = _read_frame(s)
        assert isinstance(challenge, Challenge)
        hello = Hello(role=Role.GRANULE, mac=make_mac("not-the-key", challenge.nonce, b"granule"), nonce=os.urandom(16))
        s.sendall(encode_frame(hello)[0])
        try:
            s.sendall(b"".join(bytes(p) for p in encode_frame(bad_result, [evil])))
        except OSError:
            pass  # already closed
        frame = _read_frame(s)
        assert frame is None or type(frame).__name__ == "Reject"
    # 3. garbage
    with _dial_lane(client) as s:
        _read_frame(s)
        s.sendall(b"\xff" * 64)
        assert _read_frame(s) is None
    assert not marker.exists()
    assert client.results_via_lane == 0
    assert client.submit(pow, 2, 3).result(timeout=30) == 8  # the lane still works for real granules
    assert client.results_via_lane == 1


# --- bursts of submissions (BlockingConn.send_soon) ----------------------------------------------
def touch(path: str) -> str:
    with open(path, "w") as fh:
        fh.write("ran")
    return path


def test_a_burst_completes_without_anyone_calling_result(client: granny.Client) -> None:
    import concurrent.futures as cf

    futures = [client.submit(pow, 2, i) for i in range(200)]  # the last ones are held for a burst
    done, not_done = cf.wait(futures, timeout=60)  # only the flusher can send them: wait() never flushes
    assert not not_done
    assert sorted(f.result() for f in done) == sorted(2**i for i in range(200))


def test_cancel_right_after_a_burst_never_overtakes_its_submission(client: granny.Client, tmp_path: Path) -> None:
    release = tmp_path / "release"
    blockers = [client.submit(block_until, str(release)) for _ in range(2)]  # both slots busy
    marker = tmp_path / "ran"
    futures = [client.submit(pow, 2, i) for i in range(20)]
    last = client.submit(touch, str(marker))  # held back with the burst
    assert last.cancel()  # the Cancel goes out after the held Submit, never before it
    release.touch()
    assert [f.result(timeout=60) for f in futures] == [2**i for i in range(20)]
    assert [b.result(timeout=60) for b in blockers] == ["local", "local"]
    with pytest.raises(cf_cancelled()):
        last.result(timeout=10)
    # The planner got the cancel for a request it knew: the call never ran.
    wait_for(lambda: all(h.used == 0 for h in client.hosts()) or None, timeout=10, what="slots freed")
    assert not marker.exists()


def cf_cancelled() -> type[BaseException]:
    import concurrent.futures as cf

    return cf.CancelledError



# --- a caller blocked on a result reads the lane itself (LaneServer.wait) --------------------------
def test_waiting_with_a_timeout_times_out_and_the_call_still_finishes(client: granny.Client, tmp_path: Path) -> None:
    import concurrent.futures as cf

    release = tmp_path / "release"
    fut = client.submit(block_until, str(release))
    with pytest.raises(cf.TimeoutError):
        fut.result(timeout=0.2)
    release.touch()
    assert fut.result(timeout=30) == "local"


def test_several_threads_waiting_at_once_all_get_their_results(client: granny.Client) -> None:
    import threading

    out: dict[int, int] = {}

    def caller(i: int) -> None:
        for j in range(20):
            out[i * 100 + j] = client.submit(pow, i, j).result(timeout=30)

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(2, 6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert out == {i * 100 + j: i**j for i in range(2, 6) for j in range(20)}


def test_closing_the_client_wakes_a_caller_blocked_on_a_result(cluster: LocalCluster, tmp_path: Path) -> None:
    import threading

    c = granny.connect(cluster.address, cluster.token)
    fut = c.submit(block_until, str(tmp_path / "never"))
    errors: list[BaseException] = []

    def wait() -> None:
        try:
            fut.result()  # no timeout: only close() can end this
        except BaseException as exc:  # the test inspects it
            errors.append(exc)

    waiter = threading.Thread(target=wait)
    waiter.start()
    wait_for(lambda: c.hosts()[0].used == 1 or None, timeout=10, what="the call running")
    c.close()
    waiter.join(timeout=10)
    assert not waiter.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], granny.GrannyError)
