"""The loop a team member granule runs: wait for a region, run its share, report, repeat."""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from typing import Any

import numpy as np

from ..config import ENV_INDEX, env
from ..memory.segments import SharedArray
from ..transport import local_id
from .board import EXIT, Board
from .context import Context
from .region import Region, identity, run_share
from .remote import remote_member


def member_main(team_id: str, path: str, master_host: str, address: tuple[str, int], key: bytes,
                first: int = 1) -> int:
    """Runs as a granule of the team's lease; returns the number of regions it took part in."""
    thread = int(env(ENV_INDEX)) + first
    # Another host, or a master of another user (a root client's team, granules running as nobody):
    # no shared memory with the master, so the member works on snapshots over the wire (remote.py).
    if local_id() != master_host or not os.access(path, os.R_OK | os.W_OK):
        return remote_member(team_id, thread, address, key)
    board = Board(path, team_id, thread, create=False)
    fns: dict[str, Callable[..., Any]] = {}
    segments: dict[str, SharedArray] = {}
    seen, regions = 0, 0
    board.set_present()
    try:
        while True:
            board.wait_until(board.moved_since(seen))
            if board.retired():
                return regions  # an elastic team gave this slot back
            gen = seen = board.generation
            command, region = board.descriptor()
            if command == EXIT:
                return regions
            assert isinstance(region, Region)
            board.nthreads = region.nthreads
            if thread < region.nthreads:  # a team larger than this region's: sit it out
                regions += 1
                try:
                    fn = fns.get(region.fn_key)
                    if fn is None:
                        fn = fns[region.fn_key] = pickle.loads(region.fn)
                    views = _views(region, thread, segments)
                    run_share(region, fn, thread, views, Context(board, thread, region.nthreads), board.next_chunk)
                except BaseException as exc:  # reported to the master, raised at the join
                    board.set_error(exc)
            board.set_done(gen)
            if board.sleeping(0):
                board.ring(0)
    finally:
        segments.clear()  # mappings go with their last view (never close an mmap numpy still uses)
        board.close()


def _views(region: Region, thread: int, segments: dict[str, SharedArray]) -> dict[str, Any]:
    views: dict[str, Any] = {}
    for name, (seg_name, shape, dtype, offset) in region.shared.items():
        views[name] = _attach(segments, seg_name, shape, dtype, offset).array
    for name, (op, paths, shape, dtype) in region.reduce.items():
        arr = _attach(segments, paths[thread], shape, dtype, 0).array
        arr.fill(identity(op, np.dtype(dtype)))  # OpenMP: each thread's copy starts from the identity
        views[name] = arr
    return views


def _attach(segments: dict[str, SharedArray], name: str, shape: tuple[int, ...], dtype: str,
            offset: int) -> SharedArray:
    seg = segments.get(name)
    if seg is None or seg.shape != tuple(shape) or seg.dtype != np.dtype(dtype) or seg.offset != offset:
        seg = segments[name] = SharedArray.attach(name, shape, dtype, offset)
    return seg
