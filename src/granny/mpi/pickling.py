"""How the lowercase (object) methods pickle: protocol 5, large buffers out of band.

A message whose object holds large buffers (numpy arrays of 4 KiB or more) is framed as
``b"GOB1"``, the part count, the part lengths, then the pickle stream and the raw buffers; unpickling
hands those buffers back to numpy without copying them again. Everything smaller is pickled in-band,
exactly as mpi4py does, which is fastest for small messages.
"""

from __future__ import annotations

import pickle
import struct
import sys
from typing import Any

MAGIC = b"GOB1"
OOB_MIN = 4096  # buffers at least this large go out of band
OOB_RETRY = 64 * 1024  # a non-array object pickled in-band this large is pickled again, out of band
_COUNT = struct.Struct("<I")
_LEN = struct.Struct("<Q")


def dumps(obj: Any) -> bytes | bytearray:
    np = sys.modules.get("numpy")
    if np is not None and type(obj) is np.ndarray:
        if obj.nbytes < OOB_MIN:
            return pickle.dumps(obj, 5)  # the 8-byte ping-pong: no callback, no framing
    else:
        head = pickle.dumps(obj, 5)
        if len(head) < OOB_RETRY:
            return head  # small (or array-free) objects: in-band, as mpi4py
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
    if not len(payload) or payload[0] != MAGIC[0]:  # a plain pickle starts with PROTO (0x80)
        return pickle.loads(payload)
    view = memoryview(payload)
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
