"""How the lowercase (object) methods pickle: protocol 5, large buffers out of band.

A message whose object holds large buffers (numpy arrays of 4 KiB or more) is framed as
``b"GOB1"``, the part count, the part lengths, then the pickle stream and the raw buffers; unpickling
hands those buffers back to numpy without copying them again. Everything smaller is pickled in-band,
exactly as mpi4py does, which is fastest for small messages.
"""

from __future__ import annotations

import pickle
import struct
from typing import Any

MAGIC = b"GOB1"
OOB_MIN = 4096
_COUNT = struct.Struct("<I")
_LEN = struct.Struct("<Q")


def dumps(obj: Any) -> bytes | bytearray:
    bufs: list[pickle.PickleBuffer] = []

    def keep(buf: pickle.PickleBuffer) -> bool:
        if buf.raw().nbytes < OOB_MIN:
            return True  # in-band
        bufs.append(buf)
        return False

    head = pickle.dumps(obj, 5, buffer_callback=keep)
    if not bufs:
        return head
    raws = [b.raw() for b in bufs]
    parts = [memoryview(head), *raws]
    out = bytearray(MAGIC + _COUNT.pack(len(parts)) + b"".join(_LEN.pack(p.nbytes) for p in parts))
    for p in parts:
        out += p
    return out


def loads(payload: Any, owned: bool = False) -> Any:
    """Unpickle a message. ``owned``: ``payload`` is a writable buffer the caller gives away (large
    arrays then live in it); otherwise it is copied first, since it may be a view of a ring."""
    view = memoryview(payload)
    if view[:4] != MAGIC:
        return pickle.loads(view)
    if not owned or view.readonly:
        view = memoryview(bytearray(view))
    (count,) = _COUNT.unpack_from(view, 4)
    off = 4 + _COUNT.size
    lens = [_LEN.unpack_from(view, off + i * _LEN.size)[0] for i in range(count)]
    off += count * _LEN.size
    parts = []
    for n in lens:
        parts.append(view[off:off + n])
        off += n
    return pickle.loads(parts[0], buffers=parts[1:])
