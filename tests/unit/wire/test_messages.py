"""Wire schemas and framing: round trips in any chunking, and garbage only ever raises ProtocolError."""

from __future__ import annotations

import enum
import socket
import struct
import threading
import typing
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from granny import serde
from granny.config import MAX_HEADER_BYTES
from granny.errors import ProtocolError
from granny.transport import BlockingConn
from granny.wire import (
    FrameReader,
    Heartbeat,
    Hello,
    Message,
    Role,
    Spawn,
    Submit,
    decode_header,
    encode_frame,
    encode_header,
    frame_bytes,
)
from granny.wire.framing import PREFIX

MESSAGE_TYPES: tuple[type, ...] = typing.get_args(Message)
I64 = st.integers(-(2**63), 2**63 - 1)


def strategy_for(tp: Any) -> st.SearchStrategy[Any]:
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return st.sampled_from(list(tp))
    if tp is str:
        return st.text(max_size=40)
    if tp is bytes:
        return st.binary(max_size=40)
    if tp is bool:
        return st.booleans()
    if tp is int:
        return I64
    if tp is float:
        return st.floats(allow_nan=False)
    if isinstance(tp, type) and issubclass(tp, msgspec.Struct):  # a nested struct, e.g. MpiRank
        return message_strategy(tp)
    origin = typing.get_origin(tp)
    if origin is list:
        (item,) = typing.get_args(tp)
        return st.lists(strategy_for(item), max_size=5)
    if origin is tuple:  # fixed-size tuples only, e.g. (host, count) pairs
        return st.tuples(*(strategy_for(item) for item in typing.get_args(tp)))
    raise AssertionError(f"no strategy for field type {tp!r}: extend strategy_for")


def message_strategy(cls: type) -> st.SearchStrategy[Any]:
    fields = {f.name: strategy_for(f.type) for f in msgspec.structs.fields(cls)}
    return st.builds(cls, **fields)


messages = st.one_of([message_strategy(cls) for cls in MESSAGE_TYPES])


@st.composite
def segment_lists(draw: st.DrawFn) -> list[bytes]:
    segs = draw(st.lists(st.binary(max_size=300), max_size=4))
    if draw(st.integers(0, 9)) == 0:  # sometimes one large body, to take the dedicated-buffer path
        size = draw(st.integers(64 * 1024 + 1, 300 * 1024))
        fill = draw(st.integers(0, 255))
        segs.append(bytes([fill]) * (size - 7) + b"\x00\x01\x02\x03\x04\x05\x06")
    return segs


def feed(reader: FrameReader, data: bytes, chunks: list[int]) -> list[tuple[Any, memoryview]]:
    """Deliver ``data`` the way asyncio's BufferedProtocol does, ``chunks`` bytes at a time: get a
    buffer, fill part of it, release it, report the count."""
    out: list[tuple[Any, memoryview]] = []
    pos, i = 0, 0
    floor = len(data) // 2000  # keeps a big stream to a bounded number of reads
    while pos < len(data):
        buf = reader.get_buffer(-1)
        assert len(buf) > 0, "get_buffer must always offer room"
        n = min(len(buf), max(floor, chunks[i % len(chunks)]), len(data) - pos)
        buf[:n] = data[pos : pos + n]
        buf.release()
        out.extend(reader.buffer_updated(n))
        pos += n
        i += 1
    return out


def test_strategies_cover_every_message_type() -> None:
    assert len(MESSAGE_TYPES) >= 16
    tags = {cls.__struct_config__.tag for cls in MESSAGE_TYPES}
    assert len(tags) == len(MESSAGE_TYPES), "every message type needs its own tag"


@pytest.mark.parametrize("cls", MESSAGE_TYPES, ids=lambda c: c.__name__)
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_header_round_trip_of_every_type(cls: type, data: st.DataObject) -> None:
    msg = data.draw(message_strategy(cls))
    decoded = decode_header(encode_header(msg))
    assert type(decoded) is cls
    assert decoded == msg


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(frames=st.lists(st.tuples(messages, segment_lists()), min_size=1, max_size=5),
       chunks=st.lists(st.integers(1, 70_000), min_size=1, max_size=8))
def test_frames_round_trip_in_any_chunking(frames: list[tuple[Any, list[bytes]]], chunks: list[int]) -> None:
    stream = b"".join(frame_bytes(msg, serde.framed(segs)) for msg, segs in frames)
    got = feed(FrameReader(), stream, chunks)
    assert len(got) == len(frames)
    # Checked only after everything was read: earlier bodies must not alias a reused buffer.
    for (msg, segs), (header, body) in zip(frames, got, strict=True):
        assert header == msg
        parts = serde.unframe(body) if segs else []  # a task's body is one pickle frame of its parts
        assert [bytes(p) for p in parts] == segs


@given(msg=messages, segs=st.lists(st.binary(max_size=50), max_size=4))
def test_encode_frame_does_not_copy_segments_and_matches_frame_bytes(msg: Any, segs: list[bytes]) -> None:
    parts = encode_frame(msg, [memoryview(s) for s in segs])
    assert len(parts) == 1 + len(segs)
    hlen, blen = PREFIX.unpack_from(parts[0])
    assert hlen == len(encode_header(msg)) and blen == sum(map(len, segs))
    assert b"".join(bytes(p) for p in parts) == frame_bytes(msg, segs)


def test_many_small_frames_in_one_read() -> None:
    stream = b"".join(frame_bytes(Spawn(count=i), [bytes([i % 256]) * i]) for i in range(500))
    got = feed(FrameReader(), stream, [len(stream)])
    assert [h.count for h, _ in got] == list(range(500))
    assert all(bytes(b) == bytes([i % 256]) * i for i, (_, b) in enumerate(got))


def test_header_larger_than_the_initial_buffer() -> None:
    big = Hello(role=Role.CLIENT, mac=b"m", nonce=b"n", name="x" * 600_000)
    assert len(encode_header(big)) <= MAX_HEADER_BYTES
    stream = frame_bytes(big, [b"tail"]) + frame_bytes(Heartbeat(load=1.5))
    got = feed(FrameReader(), stream, [4096])
    assert [h for h, _ in got] == [big, Heartbeat(load=1.5)]
    assert bytes(got[0][1]) == b"tail"


def test_large_body_arrives_whole() -> None:
    body = bytes(range(256)) * 4096  # 1 MiB
    stream = frame_bytes(Spawn(count=1), [body[:1000], body[1000:]]) + frame_bytes(Spawn(count=2))
    got = feed(FrameReader(), stream, [65536, 1, 300_000])
    assert [h.count for h, _ in got] == [1, 2]
    assert bytes(got[0][1]) == body and bytes(got[1][1]) == b""


def test_blocking_conn_receives_a_header_larger_than_its_initial_buffer() -> None:
    # A Result whose message/traceback quote a long exception text has such a header.
    big = Hello(role=Role.CLIENT, mac=b"m", nonce=b"n", name="x" * 600_000)
    a, b = socket.socketpair()
    conn = BlockingConn(a)
    def send() -> None:
        try:
            b.sendall(frame_bytes(big, [b"tail"]))
        except OSError:
            pass  # the receiving end was closed after a failure

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    try:
        msg, body = conn.recv()
        assert msg == big and bytes(body) == b"tail"
    finally:
        conn.close()
        b.close()
        sender.join(timeout=10)


# --- malformed input --------------------------------------------------------------------------------
def read_all(data: bytes, chunks: list[int] | None = None, max_frame: int | None = None) -> list[Any]:
    reader = FrameReader() if max_frame is None else FrameReader(max_frame)
    return feed(reader, data, chunks or [len(data) or 1])


@settings(max_examples=300, deadline=None)
@given(data=st.binary(min_size=1, max_size=2000), chunks=st.lists(st.integers(1, 64), min_size=1, max_size=4))
def test_garbage_raises_protocol_error_or_nothing(data: bytes, chunks: list[int]) -> None:
    try:
        read_all(data, chunks)
    except ProtocolError:
        pass


@settings(max_examples=300, deadline=None)
@given(header=st.binary(min_size=1, max_size=300), body=st.binary(max_size=50))
def test_garbage_header_behind_a_valid_prefix(header: bytes, body: bytes) -> None:
    frame = PREFIX.pack(len(header), len(body)) + header + body
    try:
        got = read_all(frame)
    except ProtocolError as exc:
        assert "header" in str(exc)
    else:
        assert len(got) == 1 and type(got[0][0]) in MESSAGE_TYPES


json_like = st.recursive(
    st.none() | st.booleans() | I64 | st.floats() | st.text(max_size=10) | st.binary(max_size=10),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=10,
)


@settings(max_examples=150, deadline=None)
@given(tag=st.sampled_from([c.__struct_config__.tag for c in MESSAGE_TYPES] + ["nope", ""]),
       fields=st.dictionaries(st.sampled_from(["req_id", "index", "n", "segs", "role", "mac", "nonce", "kind",
                                               "status", "count", "qid", "data", "what", "zz"]), json_like))
def test_schema_violations_become_protocol_errors(tag: str, fields: dict[str, Any]) -> None:
    raw = msgspec.msgpack.encode({"t": tag, **fields})
    try:
        msg = decode_header(raw)
    except ProtocolError as exc:
        assert str(exc).startswith("malformed frame header")
    else:
        assert type(msg) in MESSAGE_TYPES and type(msg).__struct_config__.tag == tag


@pytest.mark.parametrize("raw", [
    msgspec.msgpack.encode({"t": "spawn"}),  # missing a required field
    msgspec.msgpack.encode({"t": "spawn", "count": "three"}),  # wrong type
    msgspec.msgpack.encode({"t": "hello", "role": "admin", "mac": b"", "nonce": b""}),  # not a Role
    msgspec.msgpack.encode({"t": "no-such-message"}),
    msgspec.msgpack.encode({"count": 1}),  # untagged
    msgspec.msgpack.encode([1, 2, 3]),
    msgspec.msgpack.encode({"t": "spawn", "count": 1}) + b"\x00",  # trailing bytes
    b"\xc1",  # never-used msgpack byte
    b"\x82",  # truncated map
])
def test_invalid_headers(raw: bytes) -> None:
    with pytest.raises(ProtocolError, match="malformed frame header"):
        decode_header(raw)
    with pytest.raises(ProtocolError):
        read_all(PREFIX.pack(len(raw), 0) + raw)


def test_zero_length_header_is_refused() -> None:
    with pytest.raises(ProtocolError, match="out of bounds"):
        read_all(PREFIX.pack(0, 0) + b"\x00" * 16)


def test_oversized_header_is_refused_before_it_arrives() -> None:
    with pytest.raises(ProtocolError, match="out of bounds"):
        read_all(PREFIX.pack(MAX_HEADER_BYTES + 1, 0))


@pytest.mark.parametrize("body_len", [2**31, 2**40, 2**64 - 1])
def test_oversized_frame_is_refused_before_any_allocation(body_len: int) -> None:
    with pytest.raises(ProtocolError, match="exceeds"):
        read_all(PREFIX.pack(10, body_len))  # only the 12-byte prefix: refused without waiting for more


def test_frame_limit_is_configurable() -> None:
    frame = frame_bytes(Spawn(count=1), [b"x" * 200])
    assert len(read_all(frame, max_frame=1000)) == 1
    with pytest.raises(ProtocolError, match="exceeds the 100-byte limit"):
        read_all(frame, max_frame=100)


def test_garbage_after_a_good_frame_still_delivers_nothing_wrong() -> None:
    good = frame_bytes(Spawn(count=7))
    reader = FrameReader()
    assert [h for h, _ in feed(reader, good, [len(good)])] == [Spawn(count=7)]
    with pytest.raises(ProtocolError):
        feed(reader, struct.pack("<IQ", 0, 5), [12])


def test_unknown_fields_are_ignored_for_forward_compatibility() -> None:
    raw = msgspec.msgpack.encode({"t": "spawn", "count": 2, "added_later": [1, {"x": b"y"}]})
    assert decode_header(raw) == Spawn(count=2)


def test_deeply_nested_header_is_a_protocol_error() -> None:
    nested = b"\x91" * 100_000 + b"\xc0"  # [[[[...nil...]]]], 100 000 levels, inside an ignored field
    raw = b"\x82" + msgspec.msgpack.encode("t") + msgspec.msgpack.encode("heartbeat") + msgspec.msgpack.encode("x") + nested
    assert len(raw) < MAX_HEADER_BYTES
    with pytest.raises(ProtocolError):
        decode_header(raw)


def test_submit_defaults_survive_the_wire() -> None:
    sub = Submit(req_id="r", app_id="a", kind="pickled", fn_key="k")  # type: ignore[arg-type]
    decoded = decode_header(encode_header(sub))
    assert isinstance(decoded, Submit) and decoded.n == 1 and decoded.argv == [] and decoded.fn_key == "k"
