"""Pickling with out-of-band buffers, and the one framing of the parts it makes.

Every pickle granny moves -- a task's arguments and result, an MPI lowercase-method message, a parallel
region's fork and join, a migrating call's state -- is protocol 5 with large buffers (numpy arrays) out
of band: :func:`dumps`/:func:`pickle_parts` return *parts*, the pickle stream then the raw buffers
pickle handed out, so the buffers cross the wire as views of their own memory, never copied into the
pickle; :func:`loads` takes the parts back.

Parts always travel self-describing, as one frame: ``b"GOB1"``, the part count (u32), the part lengths
(u64 each), then the parts. :func:`frame` builds it in one buffer (MPI), :func:`frame_head` gives the
head to write before the parts (a stream), :func:`framed` the buffers of a message body (a task's
arguments and result: the head, then the parts, not copied), and :func:`unframe`/:func:`read_frame`
take it apart, checking every count and length against what is there first: a malformed frame is a
ProtocolError that says what is wrong, never an IndexError or a huge allocation.

Functions are pickled once per function object and named by a content hash, so granules unpickle each
function once.
"""

from __future__ import annotations

import hashlib
import pickle
import struct
import sys
import weakref
from collections.abc import Callable, Sequence
from typing import Any

from .errors import ProtocolError
from .wire.framing import Buffer

# numpy and cloudpickle are imported on first use: `granny run` and `granny status` never need them,
# and importing numpy alone costs ~50 ms of a command's start-up.

MAGIC = b"GOB1"
_HEAD = struct.Struct("<4sI")  # magic, part count
_LEN = struct.Struct("<Q")
_FIRST = struct.Struct("<4sIQ")  # the head and the first part's length
_G = MAGIC[0]
MAX_PARTS = 1 << 20  # a pickle hands out one buffer per array: more parts than this is not a pickle of ours

_fn_cache: weakref.WeakKeyDictionary[Any, tuple[str, bytes]] = weakref.WeakKeyDictionary()
_fn_strong: dict[int, tuple[Any, str, bytes]] = {}


_PLAIN_SCALARS = (type(None), bool, int, float, complex, str, bytes)


def _plain(obj: Any, budget: list[int]) -> bool:
    """True if ``obj`` is built from builtin scalars, containers and numpy arrays of numbers only.

    Such objects pickle identically with the C pickler, which is ~8x faster than cloudpickle's;
    anything else (a class from ``__main__``, a lambda) needs cloudpickle's by-value treatment.
    """
    budget[0] -= 1
    if budget[0] < 0:
        return False
    kind = type(obj)
    if kind in _PLAIN_SCALARS:
        return True
    if kind is tuple or kind is list:
        return all(_plain(x, budget) for x in obj)
    if kind is dict:
        return all(type(k) in _PLAIN_SCALARS and _plain(v, budget) for k, v in obj.items())
    np = sys.modules.get("numpy")  # no numpy loaded: the object cannot be an array
    if np is not None and kind is np.ndarray:
        return bool(obj.dtype.kind in "biufcSUV" and obj.dtype.fields is None)
    return False


# --- pickling -------------------------------------------------------------------------------------
def dumps(obj: Any) -> list[Buffer]:
    """Parts of ``obj``, by value where it needs it (cloudpickle: lambdas, classes of ``__main__``)."""
    buffers: list[pickle.PickleBuffer] = []
    if _plain(obj, [64]):
        head = pickle.dumps(obj, protocol=5, buffer_callback=buffers.append)
    else:
        import cloudpickle

        head = cloudpickle.dumps(obj, protocol=5, buffer_callback=buffers.append)
    return [head, *(b.raw() for b in buffers)]


def pickle_parts(obj: Any, oob_min: int = 0, by_value: bool = False) -> list[Buffer]:
    """Parts of ``obj``: buffers of at least ``oob_min`` bytes out of band, smaller ones in the pickle.

    ``by_value``: cloudpickle (what a migrating call's ``resume`` defined in ``__main__`` needs)."""
    bufs: list[pickle.PickleBuffer] = []
    if oob_min:
        def keep(buf: pickle.PickleBuffer) -> bool:
            if buf.raw().nbytes < oob_min:
                return True  # in-band
            bufs.append(buf)
            return False
        callback: Callable[[pickle.PickleBuffer], Any] = keep
    else:
        callback = bufs.append
    if by_value:
        import cloudpickle

        head = cloudpickle.dumps(obj, protocol=5, buffer_callback=callback)
    else:
        head = pickle.dumps(obj, 5, buffer_callback=callback)
    return [head, *(b.raw() for b in bufs)]


def loads(parts: Sequence[Buffer]) -> Any:
    if not parts:
        raise ProtocolError("a pickle of no parts")
    return pickle.loads(parts[0], buffers=parts[1:])


# --- framing --------------------------------------------------------------------------------------
def frame_head(parts: Sequence[Buffer]) -> bytes:
    """What goes before ``parts`` on the wire: magic, count, lengths."""
    return _HEAD.pack(MAGIC, len(parts)) + b"".join(
        [_LEN.pack(len(p) if type(p) is bytes else memoryview(p).nbytes) for p in parts])


def framed(parts: Sequence[Buffer]) -> list[Buffer]:
    """The buffers of a message body holding ``parts`` as one frame (none for no parts): the head, then
    the parts themselves, not copied."""
    return [frame_head(parts), *parts] if parts else []


def body_size(buffers: Sequence[Buffer]) -> int:
    return sum(len(b) if type(b) is bytes else memoryview(b).nbytes for b in buffers)


def frame(parts: Sequence[Buffer]) -> bytearray:
    """Head and parts in one buffer (one copy of each part)."""
    out = bytearray(frame_head(parts))
    for p in parts:
        out += p
    return out


def is_frame(data: Buffer) -> bool:
    """``data`` is a frame, not a bare pickle (which starts with PROTO, 0x80, never with ``G``).

    One byte is looked at (a hot path: every small MPI message); :func:`unframe` checks the rest."""
    return len(data) > 0 and data[0] == _G


def unframe(data: Buffer) -> list[memoryview]:
    """The parts of a frame, as views of ``data``; ProtocolError if it is not exactly one frame."""
    view = memoryview(data).cast("B") if not isinstance(data, memoryview) or data.format != "B" else data
    size = len(view)
    if size >= _HEAD.size:  # the common case, in one pass (every task's arguments and result pay it)
        magic, count = _HEAD.unpack_from(view)
        off = _HEAD.size + count * _LEN.size
        if magic == MAGIC and 0 < count <= MAX_PARTS and size >= off:
            table = struct.unpack_from(f"<{count}Q", view, _HEAD.size)
            if sum(table) == size - off:
                parts = []
                for n in table:
                    parts.append(view[off:off + n])
                    off += n
                return parts
    count = _check_head(view[:_HEAD.size])  # malformed: say what is wrong
    off = _HEAD.size + count * _LEN.size
    if len(view) < off:
        raise ProtocolError(f"a pickle frame of {len(view)} bytes is shorter than its table of {count} parts")
    lens = _lengths(view[_HEAD.size:off], len(view) - off)
    if sum(lens) != len(view) - off:
        raise ProtocolError(f"a pickle frame's parts add up to {sum(lens)} bytes, but {len(view) - off} follow")
    parts = []
    for n in lens:
        parts.append(view[off:off + n])
        off += n
    return parts


def read_frame(read_exact: Callable[[int], bytearray], max_bytes: int) -> list[bytearray]:
    """Read one frame from a stream (``read_exact(n)`` returns exactly n bytes, or raises); its parts
    may add up to ``max_bytes`` at most, checked before anything that large is allocated."""
    return [read_exact(n) for n in read_head(read_exact, max_bytes)[1]]


def read_head(read_exact: Callable[[int], bytearray], max_bytes: int) -> tuple[bytearray, tuple[int, ...]]:
    """The head of a frame read from a stream, as it came, and the part lengths it announces."""
    # A frame has at least one part: the head and the first length come in one read (one syscall for
    # a request without arrays, where the old layout took two). Inline: a team's every request pays it.
    head = read_exact(_FIRST.size)
    magic, count, first = _FIRST.unpack(head)
    if magic != MAGIC or not 0 < count <= MAX_PARTS:
        _check_head(head)  # raises, saying what is wrong
    if count == 1:
        lens: tuple[int, ...] = (first,)
    else:
        rest = read_exact((count - 1) * _LEN.size)
        head += rest
        lens = (first, *struct.unpack(f"<{count - 1}Q", rest))
    if sum(lens) > max_bytes:
        raise ProtocolError(f"a pickle frame announces {sum(lens)} bytes of parts, more than the {max_bytes} allowed")
    return head, lens


def head_size(parts: int) -> int:
    """Bytes of the head of a frame of ``parts`` parts."""
    return _HEAD.size + parts * _LEN.size


def _check_head(head: Buffer) -> int:
    if len(head) < _HEAD.size:
        raise ProtocolError(f"a pickle frame of {len(head)} bytes has no room for its {_HEAD.size}-byte head")
    magic, count = _HEAD.unpack_from(head)
    if magic != MAGIC:
        raise ProtocolError(f"not a pickle frame: it starts with {bytes(magic)!r}, not {MAGIC!r}")
    if count < 1 or count > MAX_PARTS:
        raise ProtocolError(f"a pickle frame of {count} parts (1 to {MAX_PARTS})")
    return int(count)


def _lengths(table: memoryview, room: int) -> list[int]:
    lens = [int(n) for (n,) in _LEN.iter_unpack(table)]
    if sum(lens) > room:
        raise ProtocolError(f"a pickle frame announces {sum(lens)} bytes of parts, more than the {room} allowed")
    return lens


# --- functions ------------------------------------------------------------------------------------
def dump_function(fn: Callable[..., Any]) -> tuple[str, bytes]:
    """Return ``(key, pickled)`` for a function, cached per function object."""
    try:
        hit = _fn_cache.get(fn)
    except TypeError:  # not weak-referenceable (e.g. a builtin): cache by id with a strong ref
        entry = _fn_strong.get(id(fn))
        hit = (entry[1], entry[2]) if entry is not None and entry[0] is fn else None
    if hit is not None:
        return hit
    import cloudpickle

    data = cloudpickle.dumps(fn, protocol=5)
    key = hashlib.blake2b(data, digest_size=16).hexdigest()
    try:
        _fn_cache[fn] = (key, data)
    except TypeError:
        _fn_strong[id(fn)] = (fn, key, data)
    return key, data
