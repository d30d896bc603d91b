"""FrameReader's limits: tiny frames before authentication, then full-size ones; large bodies uncopied."""

from __future__ import annotations

import mmap
import socket
import threading

import pytest

from granny.config import Config
from granny.errors import ConfigError, ProtocolError
from granny.transport.blocking import BlockingConn
from granny.wire import FrameReader, Query, frame_bytes, framing
from granny.wire.framing import PREFIX


def feed(reader: FrameReader, data: bytes) -> list[tuple[object, memoryview]]:
    out: list[tuple[object, memoryview]] = []
    pos = 0
    while pos < len(data):
        buf = reader.get_buffer()
        n = min(len(buf), len(data) - pos)
        buf[:n] = data[pos : pos + n]
        pos += n
        out += reader.buffer_updated(n)
    return out


def test_preauth_limit_refuses_at_the_prefix() -> None:
    reader = FrameReader(4096, 8192, "before authentication")
    with pytest.raises(ProtocolError, match="exceeds the 4096-byte limit before authentication"):
        reader.buffer_updated(_put(reader, PREFIX.pack(10, 2 << 30)))
    assert len(reader.get_buffer()) <= 8192  # nothing was allocated for the announced body


def _put(reader: FrameReader, data: bytes) -> int:
    buf = reader.get_buffer()
    buf[: len(data)] = data
    return len(data)


def test_raise_limit_keeps_bytes_already_read() -> None:
    reader = FrameReader(4096, 8192, "before authentication")
    small = frame_bytes(Query(what="a", qid=1))
    big = frame_bytes(Query(what="b", qid=2), [bytes(100_000)])
    frames = feed(reader, small + big[:8])  # part of the next frame's prefix arrives with a small frame
    assert [m for m, _ in frames] == [Query(what="a", qid=1)]
    reader.raise_limit(1 << 31)
    assert reader.limit_why == ""
    frames = feed(reader, big[8:])
    assert frames[0][0] == Query(what="b", qid=2) and frames[0][1].nbytes == 100_000


def test_a_body_above_lazy_body_lands_in_a_mapping_and_is_handed_on_uncopied(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(framing, "LAZY_BODY", 1 << 20)
    a, b = socket.socketpair()
    tx, rx = BlockingConn(a), BlockingConn(b)
    payload = bytes(range(256)) * (12 << 12)  # 3 MiB
    t = threading.Thread(target=tx.send, args=(Query(what="big"), [payload]))
    t.start()
    msg, body = rx.recv()
    t.join()
    assert msg == Query(what="big")
    assert isinstance(body.obj, mmap.mmap)
    assert body == payload
    tx.close()
    rx.close()


def test_config_refuses_half_a_tls_setup_and_bad_limits() -> None:
    with pytest.raises(ConfigError, match="--tls-key"):
        Config(tls_cert="cert.pem")
    with pytest.raises(ConfigError, match="handshake timeout"):
        Config(handshake_timeout=0)
    with pytest.raises(ConfigError, match="max_unauthenticated"):
        Config(max_unauthenticated=0)
    assert Config().with_(handshake_timeout=2.5).handshake_timeout == 2.5
