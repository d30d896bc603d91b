"""Shared memory for parallel regions: shared arrays, dirty-page scans, diffs and merge operations.

Everything here is pure (numpy and the standard library) apart from ``segments``, which maps files in
/dev/shm. The runtime that forks and joins teams of granules builds on these pieces.
"""

from __future__ import annotations

from .diff import DEFAULT_ENCODING, Diff, Encoding, apply, decode_blocks, empty_diff, encode
from .merge import MergeOp, combine, identity, identity_array, merge_diff
from .pages import PAGE_SIZE, dirty_pages, page_count, snapshot
from .segments import (
    SharedArray,
    attach,
    create,
    list_segments,
    remove_segments_of,
    remove_segments_of_app,
)

__all__ = [
    "DEFAULT_ENCODING",
    "PAGE_SIZE",
    "Diff",
    "Encoding",
    "MergeOp",
    "SharedArray",
    "apply",
    "attach",
    "combine",
    "create",
    "decode_blocks",
    "dirty_pages",
    "empty_diff",
    "encode",
    "identity",
    "identity_array",
    "list_segments",
    "merge_diff",
    "page_count",
    "remove_segments_of",
    "remove_segments_of_app",
    "snapshot",
]
