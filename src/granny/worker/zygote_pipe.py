"""The worker-to-zygote command pipe: length-prefixed JSON, a spawn followed by its raw credential.

Why not JSON lines: the zygote must never hold one granule's credential in memory when it forks
another (a child inherits the whole heap, freed strings included). So the zygote reads exactly one
command at a time, and a credential only into a fixed ``bytearray`` that it zeroes right after the
fork; it never becomes an immutable Python object there. A command is small (well under PIPE_BUF)
and written with one ``write``, so it arrives whole.
"""

from __future__ import annotations

import json
import os
import struct
from typing import Any

_HEADER = struct.Struct(">IB")  # JSON length, credential length


def encode_command(obj: dict[str, Any], credential: bytes = b"") -> bytes:
    body = json.dumps(obj).encode()
    return _HEADER.pack(len(body), len(credential)) + body + credential


def _read_exact(fd: int, view: memoryview) -> bool:
    got = 0
    while got < len(view):
        n = os.readv(fd, [view[got:]])
        if n == 0:
            return False
        got += n
    return True


def read_command(fd: int, credential: bytearray) -> tuple[dict[str, Any], int] | None:
    """One command, and how many credential bytes were read into ``credential``; None at EOF."""
    header = bytearray(_HEADER.size)
    if not _read_exact(fd, memoryview(header)):
        return None
    size, cred_len = _HEADER.unpack(header)
    body = bytearray(size)
    if not _read_exact(fd, memoryview(body)):
        return None
    if cred_len > len(credential) or not _read_exact(fd, memoryview(credential)[:cred_len]):
        return None
    return json.loads(body), cred_len
