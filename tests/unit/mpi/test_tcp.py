"""TcpLinks between real forked processes on 127.0.0.1: exchange, no deadlock, hello checks, peer death, sink."""

from __future__ import annotations

import multiprocessing as mp
import os
import select
import signal
import socket
import struct
import threading
import time
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

import numpy as np
import pytest

from granny.errors import AuthError, ConnectionLostError
from granny.mpi.tcp import LARGE, TcpLinks, link_context
from granny.transport import handshake

CTX = mp.get_context("fork")
KEY = b"test-key-0123456789"
HDR = struct.Struct("<III")  # src, seq, size
MiB = 1 << 20
Scenario = Callable[[int, int, TcpLinks, Connection], Any]


def _payload(src: int, dst: int, seq: int, size: int) -> bytes:
    return np.random.default_rng([src, dst, seq]).bytes(size)


def _until(links: TcpLinks, handler: Callable[[int, memoryview, memoryview], None], done: Callable[[], bool],
           timeout: float = 10.0) -> None:
    """Poll until done(), sleeping in select on the incoming streams (not in time.sleep)."""
    deadline = time.monotonic() + timeout
    while not done():
        if links.poll(handler) == 0 and not done():
            select.select(links.fileno_list(), [], [], 0.2)
        if time.monotonic() > deadline:
            raise TimeoutError("scenario did not finish")


def _child(rank: int, conn: Connection, scenario: Scenario, n: int) -> None:
    links = None
    try:
        links = TcpLinks(rank, KEY, "127.0.0.1")
        conn.send(links.address)
        links.connect(conn.recv(), timeout=10)
        conn.send(("ok", scenario(rank, n, links, conn)))
    except BaseException as e:  # everything goes back to the test process
        conn.send(("err", f"{type(e).__name__}: {e}\n{traceback.format_exc()}"))
    finally:
        if links is not None:
            links.close()
        os._exit(0)  # skip pytest's atexit machinery inherited through fork


def run_ranks(n: int, scenario: Scenario, middle: Callable[..., None] | None = None,
              timeout: float = 20.0) -> list[Any]:
    """Fork n ranks, hand each the others' addresses, and return each scenario's result."""
    pipes, procs = [], []
    for r in range(n):
        mine, theirs = CTX.Pipe()
        p = CTX.Process(target=_child, args=(r, theirs, scenario, n), daemon=True)
        p.start()
        pipes.append(mine)
        procs.append(p)
    try:
        addrs = [pipe.recv() for pipe in pipes]
        if middle is not None:
            middle("before_connect", addrs, procs, pipes)
        for r, pipe in enumerate(pipes):
            pipe.send({d: addrs[d] for d in range(n) if d != r})
        if middle is not None:
            middle("after_connect", addrs, procs, pipes)
        results: list[Any] = []
        for r, pipe in enumerate(pipes):
            if not procs[r].is_alive() and not pipe.poll():
                results.append(None)  # killed on purpose by `middle`
                continue
            assert pipe.poll(timeout), f"rank {r} did not finish in {timeout}s"
            status, value = pipe.recv()
            assert status == "ok", f"rank {r}: {value}"
            results.append(value)
        return results
    finally:
        for p in procs:
            p.join(5)
            if p.is_alive():
                p.kill()


# ---- scenarios (run in the forked ranks) ---------------------------------------------------------------


def _sizes(src: int, dst: int, count: int = 16) -> list[int]:
    rng = np.random.default_rng([src, dst, 99])
    sizes = [0, 8 * MiB, LARGE - 1, LARGE, 1]
    while len(sizes) < count:
        top = int(rng.choice([64, 64 << 10, 1 * MiB, 8 * MiB], p=[0.4, 0.3, 0.2, 0.1]))
        sizes.append(int(rng.integers(0, top + 1)))
    return sizes


def all_to_all(rank: int, n: int, links: TcpLinks, conn: Connection) -> int:
    peers = [d for d in range(n) if d != rank]
    expect = {s: _sizes(s, rank) for s in peers}
    seen = dict.fromkeys(peers, 0)

    def handler(src: int, header: memoryview, payload: memoryview) -> None:
        s, seq, size = HDR.unpack(header)
        assert s == src and seq == seen[src], f"from {src}: got seq {seq}, expected {seen[src]} (FIFO)"
        assert size == expect[src][seq] == len(payload)
        assert bytes(payload) == _payload(src, rank, seq, size), f"payload {seq} from {src} corrupted"
        seen[src] += 1

    outgoing = {d: _sizes(rank, d) for d in peers}
    for seq in range(len(outgoing[peers[0]])):  # interleave destinations and polls
        for d in peers:
            size = outgoing[d][seq]
            links.send(d, HDR.pack(rank, seq, size), _payload(rank, d, seq, size))
        links.poll(handler)
    _until(links, handler, lambda: all(seen[s] == len(expect[s]) for s in peers))
    return sum(seen.values())


def bidirectional(rank: int, n: int, links: TcpLinks, conn: Connection) -> int:
    other = 1 - rank
    got: list[bytes] = []
    links.send(other, b"big", _payload(rank, other, 0, 32 * MiB))  # both at once: no one polls before
    _until(links, lambda s, h, p: got.append(bytes(p)), lambda: bool(got))
    assert got[0] == _payload(other, rank, 0, 32 * MiB)
    return len(got[0])


def reentrant(rank: int, n: int, links: TcpLinks, conn: Connection) -> int:
    """A handler's blocking send reads the very stream whose buffer the handler is viewing."""
    other, small, answers = 1 - rank, 3000, []
    for i in range(small):
        links.send(other, HDR.pack(rank, i, 1000), bytes([i % 251]) * 1000)
    counted = [0]

    def handler(src: int, header: memoryview, payload: memoryview) -> None:
        if bytes(header) == b"big":
            answers.append(len(payload))
            return
        kept = (bytes(header), bytes(payload))
        if HDR.unpack(header)[1] == 0:
            links.send(other, b"big", bytes(24 * MiB))  # blocks: the peer does the same, and reads
        assert (bytes(header), bytes(payload)) == kept, "views changed under the handler"
        assert bytes(payload) == bytes([HDR.unpack(header)[1] % 251]) * 1000
        counted[0] += 1

    _until(links, handler, lambda: counted[0] == small and bool(answers))
    return counted[0]


def exchange_once(rank: int, n: int, links: TcpLinks, conn: Connection) -> int:
    got: list[bytes] = []
    for d in range(n):
        if d != rank:
            links.send(d, b"hi", bytes([rank]) * 100_000)
    _until(links, lambda s, h, p: got.append(bytes(p)), lambda: len(got) == n - 1)
    return links.rejected


def victim_or_survivor(rank: int, n: int, links: TcpLinks, conn: Connection) -> str:
    if rank == 1:  # the victim: blocks in a send far larger than the socket buffers, until killed
        links.send(0, b"doomed", bytes(64 * MiB))
        return "sent"
    started: list[int] = []

    def note(src: int, header: memoryview, size: int) -> None:
        started.append(size)  # and decline: the payload goes to a fresh buffer

    links.set_sink(note)
    _until(links, lambda s, h, p: None, lambda: bool(started))  # rank 1 is now mid-record
    conn.send("mid-record")
    assert conn.recv() == "killed"
    with pytest.raises(ConnectionLostError, match="rank 1") as poll_err:
        _until(links, lambda s, h, p: None, lambda: False)
    with pytest.raises(ConnectionLostError, match="rank 1") as send_err:
        for _ in range(100):  # the first writes may still fit in the kernel buffer
            links.send(1, b"x", bytes(MiB))
    return f"{poll_err.value} | {send_err.value}"


def sink(rank: int, n: int, links: TcpLinks, conn: Connection) -> bool:
    sizes = [100_000, 5 * MiB, 1000, LARGE, 8 * MiB + 8]
    if rank == 1:
        for i, size in enumerate(sizes):
            links.send(0, HDR.pack(1, i, size), _payload(1, 0, i, size))
        conn.recv()  # stay up until rank 0 has everything
        return True
    given: dict[int, memoryview] = {}
    target = np.zeros((8 * MiB + 8) // 8, np.float64)  # typed array: the sink casts its view to bytes

    def give(src: int, header: memoryview, size: int) -> memoryview | None:
        seq = HDR.unpack(header)[1]
        if seq == 2:
            raise AssertionError("the sink must not see small payloads")
        if seq == 1:
            return None  # declined: a fresh buffer instead
        given[seq] = target.data if seq == 4 else memoryview(bytearray(size))
        return given[seq]

    links.set_sink(give)
    done: list[bool] = []

    def handler(src: int, header: memoryview, payload: memoryview) -> None:
        seq, size = HDR.unpack(header)[1:]
        assert (payload is given[seq]) if seq in given else (seq in (1, 2))
        assert payload.tobytes() == _payload(1, 0, seq, size)
        done.append(True)

    _until(links, handler, lambda: len(done) == len(sizes))
    assert target.tobytes() == _payload(1, 0, 4, sizes[4])
    return True


# ---- tests ---------------------------------------------------------------------------------------------


def test_all_to_all_three_ranks_random_sizes_fifo() -> None:
    counts = run_ranks(3, all_to_all)
    assert counts == [32, 32, 32]


def test_simultaneous_large_bidirectional_sends_do_not_deadlock() -> None:
    assert run_ranks(2, bidirectional) == [32 * MiB, 32 * MiB]


def test_handler_may_send_while_its_views_stay_valid() -> None:
    assert run_ranks(2, reentrant) == [3000, 3000]


def test_wrong_key_is_refused_and_good_peers_still_link() -> None:
    a, b = TcpLinks(0, KEY, "127.0.0.1"), TcpLinks(1, KEY, "127.0.0.1")
    t = threading.Thread(target=a.connect, args=({1: b.address},), kwargs={"timeout": 10})
    t.start()  # rank 0 accepts (and dials rank 1, which is not accepting yet)
    try:
        with socket.create_connection(a.address, timeout=10) as s, pytest.raises(
                AuthError, match="rank 0 refused this link: wrong key"):
            handshake.dial(s, b"wrong key", link_context(0), 1, "rank 0")
        b.connect({0: a.address}, timeout=10)
        t.join(10)
        assert a.rejected == 1 and b.rejected == 0
        got: list[bytes] = []
        b.send(0, b"hi", b"still linked")
        _until(a, lambda src, h, p: got.append(bytes(p)), lambda: bool(got))
        assert got == [b"still linked"]
    finally:
        a.close()
        b.close()


def test_a_replayed_handshake_is_refused() -> None:
    """An answer recorded from a good handshake proves nothing to a listener with a fresh nonce."""
    a, b = TcpLinks(0, KEY, "127.0.0.1"), TcpLinks(1, KEY, "127.0.0.1")
    try:
        wire: list[bytes] = []
        listener = socket.create_server(("127.0.0.1", 0))

        def recorder() -> None:  # a man in the middle that records rank 1's answer to a real challenge
            conn, _ = listener.accept()
            acceptor = handshake.Acceptor(KEY, link_context(0))
            conn.sendall(acceptor.challenge())
            answer = conn.recv(handshake.ANSWER.size, socket.MSG_WAITALL)
            wire.append(answer)
            assert acceptor.check(answer) == 1  # genuine for that nonce
            conn.sendall(acceptor.verdict(handshake.ACCEPTED))
            conn.close()

        t = threading.Thread(target=recorder)
        t.start()
        with socket.create_connection(listener.getsockname(), timeout=10) as s:
            handshake.dial(s, KEY, link_context(0), 1, "recorder")
        t.join(10)
        listener.close()
        # Replayed to the real rank 0 (which waits for rank 1 in connect): refused.
        verdicts: list[int] = []

        def replay() -> None:
            with socket.create_connection(a.address, timeout=10) as s:
                s.recv(handshake.CHALLENGE.size, socket.MSG_WAITALL)
                s.sendall(wire[0])
                verdicts.append(handshake.VERDICT.unpack(s.recv(handshake.VERDICT.size, socket.MSG_WAITALL))[0])
            b.connect({0: a.address}, timeout=10)  # then the real rank 1

        t = threading.Thread(target=replay)
        t.start()
        a.connect({1: b.address}, timeout=10)
        t.join(10)
        assert verdicts == [handshake.WRONG_KEY]
        assert a.rejected >= 1
    finally:
        a.close()
        b.close()


def test_ranks_with_different_keys_get_a_clear_error() -> None:
    """Whichever rank is refused first raises AuthError; the other, left waiting, says a handshake failed."""
    a, b = TcpLinks(0, KEY, "127.0.0.1"), TcpLinks(1, b"another world's key", "127.0.0.1")
    errors: dict[int, BaseException] = {}

    def link(links: TcpLinks, peer: TcpLinks) -> None:
        try:
            links.connect({peer.rank: peer.address}, timeout=3)
        except BaseException as exc:  # checked below
            errors[links.rank] = exc

    threads = [threading.Thread(target=link, args=pair) for pair in ((a, b), (b, a))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    a.close()
    b.close()
    assert sorted(errors) == [0, 1]
    auth = [e for e in errors.values() if isinstance(e, AuthError)]
    assert auth and all("refused this link: wrong key" in str(e) for e in auth)
    for e in errors.values():
        assert isinstance(e, AuthError) or (isinstance(e, TimeoutError) and "failed the handshake" in str(e)), e


def test_killed_peer_raises_connection_lost_naming_it() -> None:
    def middle(stage: str, addrs: Any, procs: list[Any], pipes: list[Connection]) -> None:
        if stage == "after_connect":
            assert pipes[0].poll(10) and pipes[0].recv() == "mid-record"
            os.kill(procs[1].pid, signal.SIGKILL)
            procs[1].join(5)
            pipes[0].send("killed")

    result = run_ranks(2, victim_or_survivor, middle)
    assert result[1] is None
    assert "rank 1" in result[0] and "without a goodbye" in result[0]


def test_sink_receives_into_the_given_buffer() -> None:
    def middle(stage: str, addrs: Any, procs: Any, pipes: list[Connection]) -> None:
        if stage == "after_connect":
            assert pipes[0].poll(10)  # rank 0 finished; rank 1 may now close
            pipes[1].send("bye")

    result = run_ranks(2, sink, middle)
    assert result == [True, True]


def test_the_handshake_binds_both_ranks() -> None:
    def answer(acceptor: handshake.Acceptor, dst: int, src: int, claim: int) -> bytes:
        proof = handshake.dialer_proof(KEY, acceptor.nonce, handshake._label(link_context(dst), src))
        return handshake.ANSWER.pack(claim, os.urandom(16), proof)

    assert handshake.Acceptor(KEY, link_context(0)).check(answer(acc := handshake.Acceptor(KEY, link_context(0)), 0, 1, 1)) is None
    assert acc.check(answer(acc, 0, 1, 1)) == 1
    assert acc.check(answer(acc, 1, 1, 1)) is None  # made for another destination
    assert acc.check(answer(acc, 0, 1, 2)) is None  # claims another source than it proved


def _pair() -> tuple[TcpLinks, TcpLinks]:
    """Two linked ranks in this process (the second connects from a thread)."""
    a, b = TcpLinks(0, KEY, "127.0.0.1"), TcpLinks(1, KEY, "127.0.0.1")
    t = threading.Thread(target=b.connect, args=({0: a.address},), kwargs={"timeout": 10})
    t.start()
    a.connect({1: b.address}, timeout=10)
    t.join()
    return a, b


def test_goodbye_is_a_clean_finish_and_typed_buffers_travel_as_bytes() -> None:
    a, b = _pair()
    got: list[tuple[bytes, bytes]] = []
    arr = np.arange(20_000, dtype=np.float64)  # 160 kB: the large path, sent from a typed array
    b.send(0, b"one", arr.data)
    b.send(0, b"two")
    b.close()  # says goodbye: a must not see an error, just the stream going away
    _until(a, lambda s, h, p: got.append((bytes(h), bytes(p))), lambda: not a.fileno_list())
    assert got == [(b"one", arr.tobytes()), (b"two", b"")]
    a.close()


def test_connect_times_out_naming_the_missing_ranks() -> None:
    a, silent = TcpLinks(0, KEY, "127.0.0.1"), TcpLinks(3, KEY, "127.0.0.1")
    with pytest.raises(TimeoutError, match=r"ranks \[3\]"):
        a.connect({3: silent.address}, timeout=0.3)  # the dial succeeds; rank 3 never dials back
    a.close()
    silent.close()


def test_misuse_is_refused() -> None:
    a, b = _pair()
    with pytest.raises(ValueError, match="header"):
        a.send(1, bytes(64 * 1024))
    with pytest.raises(ValueError, match="no link"):
        a.send(5, b"h")
    b.set_sink(lambda src, header, size: memoryview(bytearray(size - 1)))
    a.send(1, b"h", bytes(LARGE))
    with pytest.raises(ValueError, match="sink gave"):
        _until(b, lambda s, h, p: None, lambda: False, timeout=5)
    a.close()
    b.close()
