"""What one thread of a parallel region runs: the descriptor, work sharing, and reduction identities.

Pure functions and plain data, shared by the master (thread 0) and the members: which indices a
thread owns under each schedule, and what a reduction variable starts from.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

SCHEDULES = ("static", "dynamic")
REDUCE_OPS = ("sum", "product", "subtract", "max", "min", "xor", "band", "bor", "land", "lor")


@dataclass
class Region:
    """Everything a member needs to run its share of one region (pickled into the board)."""

    kind: str  # "for": body(i | range, **shared); "run": body(team, **shared)
    fn_key: str
    fn: bytes  # cloudpickled body; members cache it by fn_key
    nthreads: int
    start: int = 0
    stop: int = 0
    step: int = 1
    chunk: int = 0
    schedule: str = "static"
    chunked: bool = False
    shared: dict[str, tuple[str, tuple[int, ...], str, int]] = field(default_factory=dict)
    # shared: name -> (segment name, shape, dtype str, offset): members attach once and keep it
    reduce: dict[str, tuple[str, list[str], tuple[int, ...], str]] = field(default_factory=dict)
    # reduce: name -> (op, private segment name per thread (index 0 unused), shape, dtype str)


def identity(op: str, dtype: np.dtype[Any]) -> Any:
    """The value each thread's private copy of a reduction variable starts from (OpenMP's rule)."""
    if op in ("sum", "subtract", "xor", "bor", "lor"):
        return 0
    if op in ("product", "land"):
        return 1
    if op == "band":
        return -1 if dtype.kind == "i" else np.iinfo(dtype).max if dtype.kind == "u" else True
    if op in ("max", "min"):
        if dtype.kind == "f":
            return -np.inf if op == "max" else np.inf
        if dtype.kind in "iu":
            info = np.iinfo(dtype)
            return info.min if op == "max" else info.max
        if dtype.kind == "b":
            return op == "min"
    raise ValueError(f"no identity for reduction {op!r} on {dtype}")


def combine(op: str, into: np.ndarray, part: np.ndarray) -> None:
    """into = into op part, elementwise (a thread's partial result joins the caller's variable)."""
    if op in ("sum", "subtract"):
        np.add(into, part, out=into)
    elif op == "product":
        np.multiply(into, part, out=into)
    elif op == "max":
        np.maximum(into, part, out=into)
    elif op == "min":
        np.minimum(into, part, out=into)
    elif op in ("xor", "bor", "band"):
        {"xor": np.bitwise_xor, "bor": np.bitwise_or, "band": np.bitwise_and}[op](into, part, out=into)
    elif op == "land":
        np.logical_and(into, part, out=into, casting="unsafe")
    elif op == "lor":
        np.logical_or(into, part, out=into, casting="unsafe")
    else:
        raise ValueError(f"unknown reduction {op!r}; use one of {', '.join(REDUCE_OPS)}")


def default_chunk(region: Region) -> int:
    n = len(range(region.start, region.stop, region.step))
    if region.chunk:
        return region.chunk
    if region.schedule == "static":
        return -(-n // max(region.nthreads, 1))  # one contiguous block per thread, as OpenMP's static
    return max(1, n // (region.nthreads * 8))  # dynamic: enough chunks to balance, few lock trips


def static_chunks(region: Region, thread: int) -> Iterator[range]:
    """Round-robin chunks of the iteration space for ``thread`` (contiguous blocks by default)."""
    space = range(region.start, region.stop, region.step)
    size = default_chunk(region)
    nchunks = -(-len(space) // size) if size else 0
    for c in range(thread, nchunks, region.nthreads):
        yield space[c * size:(c + 1) * size]


def dynamic_chunks(region: Region, claim: Callable[[], int]) -> Iterator[range]:
    space = range(region.start, region.stop, region.step)
    size = default_chunk(region)
    while True:
        c = claim()
        if c * size >= len(space):
            return
        yield space[c * size:(c + 1) * size]


def run_share(region: Region, fn: Callable[..., Any], thread: int, views: dict[str, Any], team: Any,
              claim: Callable[[], int]) -> None:
    """Run this thread's share of the region."""
    if region.kind == "run":
        fn(team, **views)
        return
    chunks = static_chunks(region, thread) if region.schedule == "static" else dynamic_chunks(region, claim)
    if region.chunked:
        for r in chunks:
            if len(r):
                fn(r, **views)
    else:
        for r in chunks:
            for i in r:
                fn(i, **views)
