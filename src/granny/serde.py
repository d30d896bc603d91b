"""Pickling for payloads: cloudpickle, protocol 5, numpy buffers out-of-band.

A payload is a list of segments: segment 0 is the pickle stream, the rest are the raw buffers that
pickle handed out of band (numpy arrays), so they cross the wire without being copied into the
pickle. Functions are pickled once per function object and named by a content hash, so granules
unpickle each function once.
"""

from __future__ import annotations

import hashlib
import pickle
import sys
import weakref
from collections.abc import Callable, Sequence
from typing import Any

from .wire.framing import Buffer

# numpy and cloudpickle are imported on first use: `granny run` and `granny status` never need them,
# and importing numpy alone costs ~50 ms of a command's start-up.

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


def dumps(obj: Any) -> list[Buffer]:
    buffers: list[pickle.PickleBuffer] = []
    if _plain(obj, [64]):
        head = pickle.dumps(obj, protocol=5, buffer_callback=buffers.append)
    else:
        import cloudpickle

        head = cloudpickle.dumps(obj, protocol=5, buffer_callback=buffers.append)
    return [head, *(b.raw() for b in buffers)]


def loads(segments: Sequence[Buffer]) -> Any:
    if not segments:
        raise ValueError("empty payload")
    return pickle.loads(segments[0], buffers=segments[1:])


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
