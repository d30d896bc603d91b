"""Length-prefixed frames: ``<u32 header_len><u64 body_len><msgpack header><body segments>``.

A body is opaque here. A task's arguments and its result are one pickle frame (granny.serde: the GOB1
head carries the part count and lengths, checked before use), so no header repeats the part lengths.

Theory of operation: :class:`FrameReader` follows asyncio's BufferedProtocol contract
(``get_buffer`` / ``buffer_updated``), and the blocking socket users drive it the same way with
``recv_into``. Small frames are parsed out of one reusable buffer, many per read. A large body is
received straight into its own buffer, so an 8 MiB argument is copied by the kernel once and then
handed on as a memoryview with no further copy.

Invariants that keep a hostile peer cheap:
- Sizes are checked against ``max_frame`` as soon as the 12-byte prefix is in, before anything is
  allocated. A server starts a reader with a tiny limit and a small buffer (an unauthenticated peer
  can make it hold a few KiB, no more) and calls :meth:`FrameReader.raise_limit` once the peer has
  authenticated.
- Nothing is allocated up front in proportion to an announced size beyond ``LAZY_BODY``: a larger
  body lands in an anonymous mapping, whose pages the kernel supplies (zeroed) only as data arrives.
  A smaller one gets a bytearray, which malloc usually serves from memory already mapped, and that
  is faster than fresh pages for the common few-MiB argument.
"""

from __future__ import annotations

import contextlib
import mmap
import struct
from collections.abc import Sequence

from ..config import MAX_FRAME_BYTES, MAX_HEADER_BYTES
from ..errors import ProtocolError
from ..tunables import LAZY_BODY
from ..tunables import SMALL_BODY as _SMALL
from .messages import Message, decode_header, encode_header

PREFIX = struct.Struct("<IQ")
BUFFER_SIZE = _SMALL * 4  # the shared buffer of an authenticated stream
Buffer = bytes | bytearray | memoryview


def body_buffer(size: int) -> bytearray | mmap.mmap:
    """A writable buffer of ``size`` bytes whose cost up front does not grow beyond ``LAZY_BODY``."""
    if size <= LAZY_BODY:
        return bytearray(size)
    try:
        buf = mmap.mmap(-1, size)
    except OSError as exc:
        raise ProtocolError(f"cannot reserve {size} bytes for a frame body: {exc}") from None
    with contextlib.suppress(AttributeError, OSError):  # fewer page faults where the kernel allows
        buf.madvise(mmap.MADV_HUGEPAGE)
    return buf


def encode_frame(msg: Message, segments: Sequence[Buffer] = ()) -> list[Buffer]:
    """Return the frame as a list of buffers for ``writelines``/``sendmsg`` (segments are not copied)."""
    header = encode_header(msg)
    body_len = 0
    for s in segments:
        body_len += len(s) if isinstance(s, bytes) else memoryview(s).nbytes
    return [PREFIX.pack(len(header), body_len) + header, *segments]


def frame_bytes(msg: Message, segments: Sequence[Buffer] = ()) -> bytes:
    return b"".join(bytes(p) if not isinstance(p, bytes) else p for p in encode_frame(msg, segments))


class FrameReader:
    """Incremental frame parser; see the module docstring. Not thread-safe: one reader per stream."""

    def __init__(self, max_frame: int = MAX_FRAME_BYTES, buffer_size: int = BUFFER_SIZE, limit_why: str = "") -> None:
        self.max_frame = max_frame
        # Non-empty while a pre-authentication limit holds; it ends the oversize error's message.
        self.limit_why = limit_why
        self._buf = bytearray(buffer_size)
        self._start = 0
        self._end = 0
        self._big: bytearray | mmap.mmap | None = None
        self._big_pos = 0
        self._big_header: Message | None = None

    def raise_limit(self, max_frame: int, buffer_size: int = BUFFER_SIZE) -> None:
        """Accept frames up to ``max_frame`` from now on, with a full-size buffer (bytes already read are kept).

        Call it between reads (not while a caller holds a view from get_buffer), as a server does
        once the peer has authenticated."""
        self.max_frame = max_frame
        self.limit_why = ""
        if len(self._buf) < buffer_size:
            pending = self._end - self._start
            bigger = bytearray(buffer_size)
            bigger[:pending] = self._buf[self._start : self._end]
            self._buf, self._start, self._end = bigger, 0, pending

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
                why = f" {self.limit_why}" if self.limit_why else ""
                raise ProtocolError(f"frame of {hlen + blen} bytes exceeds the {self.max_frame}-byte limit{why}")
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
                big = body_buffer(blen)
                big[:got] = buf[hstart + hlen : self._end]
                self._big, self._big_pos, self._big_header = big, got, header
                self._start = self._end = 0
                return frames
            break
        if self._start == self._end:
            self._start = self._end = 0
        return frames
