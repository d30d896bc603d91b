"""The one out-of-band pickle framing (granny.serde): what tasks, MPI and team members put on the wire."""

from __future__ import annotations

import socket
import struct

import numpy as np
import pytest

from granny import serde
from granny.errors import ProtocolError
from granny.mpi import pickling
from granny.parallel.remote import Channel


def test_parts_round_trip_with_arrays_out_of_band_and_uncopied() -> None:
    arr = np.arange(100_000, dtype=np.float64)
    parts = serde.pickle_parts({"a": arr, "s": "x"})
    assert len(parts) == 2 and memoryview(parts[1]).nbytes == arr.nbytes  # the array is its own part
    data = serde.frame(parts)
    back = serde.loads(serde.unframe(data))
    assert np.array_equal(back["a"], arr) and back["s"] == "x"
    assert np.shares_memory(back["a"], np.frombuffer(data, np.uint8))  # a view of the frame, not a copy


def test_small_buffers_stay_in_band_above_a_threshold() -> None:
    parts = serde.pickle_parts((np.zeros(10), np.zeros(1000)), oob_min=4096)
    assert len(parts) == 2  # only the 8000-byte array went out of band


def test_mpi_messages_small_in_band_large_framed() -> None:
    small = pickling.dumps(np.zeros(4))
    assert not serde.is_frame(small) and np.array_equal(pickling.loads(small), np.zeros(4))
    big = np.arange(10_000, dtype=np.int64)
    framed = pickling.dumps([big, "tail"])
    assert serde.is_frame(framed)
    owned = bytearray(framed)
    back = pickling.loads(owned, owned=True)
    assert np.array_equal(back[0], big) and back[1] == "tail"
    assert np.shares_memory(back[0], np.frombuffer(owned, np.uint8))


def _frame(count: int, lens: list[int], body: bytes = b"", magic: bytes = serde.MAGIC) -> bytes:
    return struct.pack("<4sI", magic, count) + b"".join(struct.pack("<Q", n) for n in lens) + body


@pytest.mark.parametrize(("data", "why"), [
    (b"GOB", "no room for its 8-byte head"),
    (_frame(1, [3], b"abc", magic=b"XOB1"), "not a pickle frame"),
    (_frame(0, []), "frame of 0 parts"),
    (_frame(1 << 30, []), "parts \\(1 to"),
    (_frame(3, [1]), "shorter than its table of 3 parts"),
    (_frame(2, [5, 1 << 60], b"12345"), "announces .* more than the 5 allowed"),
    (_frame(1, [2], b"abc"), "add up to 2 bytes, but 3 follow"),
])
def test_malformed_frames_are_a_clear_protocol_error(data: bytes, why: str) -> None:
    with pytest.raises(ProtocolError, match=why):
        serde.unframe(data)


def test_a_malformed_mpi_message_is_a_protocol_error_not_an_index_error() -> None:
    with pytest.raises(ProtocolError, match="shorter than its table"):
        pickling.loads(_frame(9, [1]))


def test_a_stream_frame_announcing_too_much_is_refused_before_allocating() -> None:
    data = _frame(2, [10, 1 << 50])
    pos = [0]

    def read_exact(n: int) -> bytearray:
        assert n < 1 << 20, "allocated what a malformed head announced"
        out = bytearray(data[pos[0]:pos[0] + n])
        pos[0] += n
        return out

    with pytest.raises(ProtocolError, match="more than the 4096 allowed"):
        serde.read_frame(read_exact, 4096)


def test_team_channel_round_trip_and_garbage() -> None:
    a, b = socket.socketpair()
    left, right = Channel.__new__(Channel), Channel.__new__(Channel)
    for chan, sock in ((left, a), (right, b)):
        chan.sock, chan.sent, chan.received = sock, 0, 0
    arr = np.arange(50_000, dtype=np.int32)
    left.send(("fork", 3, {"x": arr}))
    kind, gen, payload = right.recv()
    assert (kind, gen) == ("fork", 3) and np.array_equal(payload["x"], arr)
    assert left.sent == right.received > arr.nbytes
    a.sendall(b"\x80\x05garbage-not-a-frame")
    with pytest.raises(ProtocolError, match="not a pickle frame"):
        right.recv()
    a.close()
    b.close()
