"""A remote team member proves the team's key with the one handshake: a wrong key and a replay are refused."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from granny.errors import AuthError
from granny.parallel.remote import Listener, _context, remote_member
from granny.transport import handshake

KEY = b"k" * 16


@pytest.fixture
def listener() -> Iterator[Listener]:
    lst = Listener("/nonexistent-board", "team1", KEY, "127.0.0.1")  # no member gets past the handshake here
    yield lst
    lst.close()


def test_a_member_with_the_wrong_key_is_refused_with_a_clear_error(listener: Listener) -> None:
    with pytest.raises(AuthError, match="team member 1: the master of team team1 refused this link: wrong key"):
        remote_member("team1", 1, listener.address, b"another team's key")
    assert listener.proxies == []


def test_a_replayed_member_handshake_is_refused(listener: Listener) -> None:
    recorder = socket.create_server(("127.0.0.1", 0))
    recorded: list[bytes] = []

    def record() -> None:  # a listener in the middle records a genuine member's answer to its challenge
        conn, _ = recorder.accept()
        acceptor = handshake.Acceptor(KEY, _context("team1"))
        conn.sendall(acceptor.challenge())
        answer = conn.recv(handshake.ANSWER.size, socket.MSG_WAITALL)
        assert acceptor.check(answer) == 1
        recorded.append(answer)
        conn.sendall(acceptor.verdict(handshake.ACCEPTED))
        conn.close()

    t = threading.Thread(target=record)
    t.start()
    with socket.create_connection(recorder.getsockname(), timeout=10) as s:
        handshake.dial(s, KEY, _context("team1"), 1, "recorder")
    t.join(10)
    recorder.close()
    with socket.create_connection(listener.address, timeout=10) as s:
        assert s.recv(handshake.CHALLENGE.size, socket.MSG_WAITALL)[:4] == handshake.MAGIC
        s.sendall(recorded[0])
        verdict, _ = handshake.VERDICT.unpack(s.recv(handshake.VERDICT.size, socket.MSG_WAITALL))
    assert verdict == handshake.WRONG_KEY
    assert listener.proxies == []


def test_garbage_before_the_handshake_is_never_unpickled(listener: Listener) -> None:
    with socket.create_connection(listener.address, timeout=10) as s:
        s.recv(handshake.CHALLENGE.size, socket.MSG_WAITALL)
        s.sendall(b"\x80\x05" + b"x" * (handshake.ANSWER.size - 2))  # a pickle's start, as a hello once was
        verdict, _ = handshake.VERDICT.unpack(s.recv(handshake.VERDICT.size, socket.MSG_WAITALL))
    assert verdict == handshake.WRONG_KEY
