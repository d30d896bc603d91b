"""Length-prefixed frames: ``<u32 header_len><u64 body_len><msgpack header><body segments>``.

Theory of operation: :class:`FrameReader` follows asyncio's BufferedProtocol contract
(``get_buffer`` / ``buffer_updated``), and the blocking socket users drive it the same way with
``recv_into``. Small frames are parsed out of one reusable buffer, many per read. A large body is
received straight into its own bytearray, so an 8 MiB argument is copied by the kernel once and then
handed on as a memoryview with no further copy. Sizes are checked before anything is allocated, so a
garbage prefix fails with ProtocolError instead of a huge allocation.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from ..config import MAX_FRAME_BYTES, MAX_HEADER_BYTES
from ..errors import ProtocolError
from .messages import Message, decode_header, encode_header

PREFIX = struct.Struct("<IQ")
_SMALL = 1 << 16  # frames whose body exceeds this get their own buffer
Buffer = bytes | bytearray | memoryview


def encode_frame(msg: Message, segments: Sequence[Buffer] = ()) -> list[Buffer]:
    """Return the frame as a list of buffers for ``writelines``/``sendmsg`` (segments are not copied)."""
    header = encode_header(msg)
    body_len = 0
    for s in segments:
        body_len += len(s) if isinstance(s, bytes) else memoryview(s).nbytes
    return [PREFIX.pack(len(header), body_len) + header, *segments]


def frame_bytes(msg: Message, segments: Sequence[Buffer] = ()) -> bytes:
    return b"".join(bytes(p) if not isinstance(p, bytes) else p for p in encode_frame(msg, segments))


def split_segments(body: memoryview, sizes: Sequence[int]) -> list[memoryview]:
    if sum(sizes) != body.nbytes or any(s < 0 for s in sizes):
        raise ProtocolError(f"segment sizes {list(sizes)} do not add up to the body's {body.nbytes} bytes")
    out, pos = [], 0
    for size in sizes:
        out.append(body[pos : pos + size])
        pos += size
    return out


class FrameReader:
    """Incremental frame parser; see the module docstring. Not thread-safe: one reader per stream."""

    def __init__(self, max_frame: int = MAX_FRAME_BYTES) -> None:
        self.max_frame = max_frame
        self._buf = bytearray(_SMALL * 4)
        self._start = 0
        self._end = 0
        self._big: bytearray | None = None
        self._big_pos = 0
        self._big_header: Message | None = None

    def get_buffer(self, sizehint: int = -1) -> memoryview:
        if self._big is not None:
            return memoryview(self._big)[self._big_pos :]
        if self._end == len(self._buf):
            pending = self._end - self._start
            if self._start > 0:
                self._buf[:pending] = self._buf[self._start : self._end]
                self._start, self._end = 0, pending
            else:  # a header larger than the buffer (bounded by MAX_HEADER_BYTES): a new, larger one,
                # not an in-place resize, which fails while a caller still holds a view of the old
                bigger = bytearray(len(self._buf) * 2)
                bigger[: self._end] = self._buf[: self._end]
                self._buf = bigger
        return memoryview(self._buf)[self._end :]

    def buffer_updated(self, nbytes: int) -> list[tuple[Message, memoryview]]:
        frames: list[tuple[Message, memoryview]] = []
        if self._big is not None:
            self._big_pos += nbytes
            if self._big_pos == len(self._big):
                assert self._big_header is not None
                frames.append((self._big_header, memoryview(self._big)))
                self._big, self._big_header = None, None
            return frames
        self._end += nbytes
        buf = self._buf
        while self._end - self._start >= PREFIX.size:
            hlen, blen = PREFIX.unpack_from(buf, self._start)
            if hlen > MAX_HEADER_BYTES or hlen == 0:
                raise ProtocolError(f"frame header of {hlen} bytes is out of bounds")
            if hlen + blen > self.max_frame:
                raise ProtocolError(f"frame of {hlen + blen} bytes exceeds the {self.max_frame}-byte limit")
            hstart = self._start + PREFIX.size
            avail = self._end - hstart
            if avail < hlen:
                break
            if avail >= hlen + blen:
                header = decode_header(memoryview(buf)[hstart : hstart + hlen])
                bstart = hstart + hlen
                frames.append((header, memoryview(bytes(buf[bstart : bstart + blen]))))
                self._start = bstart + blen
                continue
            if blen > _SMALL:
                # Switch to a dedicated buffer for the rest of this body.
                header = decode_header(memoryview(buf)[hstart : hstart + hlen])
                got = avail - hlen
                big = bytearray(blen)
                big[:got] = buf[hstart + hlen : self._end]
                self._big, self._big_pos, self._big_header = big, got, header
                self._start = self._end = 0
                return frames
            break
        if self._start == self._end:
            self._start = self._end = 0
        return frames
