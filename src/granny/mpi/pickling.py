"""How the lowercase (object) methods pickle: protocol 5, large buffers out of band.

A message whose object holds large buffers (numpy arrays of 4 KiB or more) is a pickle frame
(:mod:`granny.serde`: magic, part count, part lengths, then the pickle stream and the raw buffers);
unpickling hands those buffers back to numpy without copying them again. Everything smaller is pickled
in-band, exactly as mpi4py does, which is fastest for small messages.
"""

from __future__ import annotations

import pickle
import sys
from typing import Any

from .. import serde
from ..tunables import OOB_MIN, OOB_RETRY

_FRAMED = serde.MAGIC[0]  # a bare pickle starts with PROTO (0x80); checked inline: every small message pays it


def dumps(obj: Any) -> bytes | bytearray:
    np = sys.modules.get("numpy")
    if np is not None and type(obj) is np.ndarray:
        if obj.nbytes < OOB_MIN:
            return pickle.dumps(obj, 5)  # the 8-byte ping-pong: no callback, no framing
    else:
        head = pickle.dumps(obj, 5)
        if len(head) < OOB_RETRY:
            return head  # small (or array-free) objects: in-band, as mpi4py
    parts = serde.pickle_parts(obj, OOB_MIN)
    if len(parts) == 1:
        return parts[0]  # type: ignore[return-value]  # pickle.dumps made it: bytes
    return serde.frame(parts)


def loads(payload: Any, owned: bool = False) -> Any:
    """Unpickle a message. ``owned``: ``payload`` is a writable buffer the caller gives away (large
    arrays then live in it); otherwise it is copied first, since it may be a view of a ring."""
    if not len(payload) or payload[0] != _FRAMED:
        return pickle.loads(payload)
    view = memoryview(payload)
    if not owned or view.readonly:
        view = memoryview(bytearray(view))
    return serde.loads(serde.unframe(view))
