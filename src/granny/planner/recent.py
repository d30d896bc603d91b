"""Recent results of HTTP-invoked calls, kept in memory and bounded in bytes.

Theory of operation: ``GET /v1/calls/{id}`` right after a call finishes must not wait for the
journal, so the planner keeps the newest results here. The cache holds at most ``max_bytes`` of
results (payload plus error text) and ``max_entries`` entries, evicting the oldest first. A result
larger than ``max_bytes`` is never cached: it is read back from the journal, where every HTTP call's
result is written. Eviction is by insertion order, which is finishing order: results are polled
soon after they finish, or not at all.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator

from ..wire import Result

ENTRY_OVERHEAD = 256  # the Result struct, the key and the dict slot, roughly

Key = tuple[str, int]


class RecentResults:
    """Not thread-safe: used from the planner's event loop only."""

    def __init__(self, max_bytes: int, max_entries: int = 10_000) -> None:
        self.max_bytes = max_bytes
        self.max_entries = max_entries
        self.nbytes = 0
        self._items: OrderedDict[Key, tuple[Result, bytes, int]] = OrderedDict()

    @staticmethod
    def cost(res: Result, payload: bytes | memoryview) -> int:
        return len(payload) + len(res.message) + len(res.traceback) + ENTRY_OVERHEAD

    def put(self, key: Key, res: Result, payload: bytes | memoryview) -> bool:
        """Keep a copy of ``payload`` unless it alone exceeds the bound; True if it was kept."""
        self.pop(key)
        size = self.cost(res, payload)
        if size > self.max_bytes:
            return False
        self._items[key] = (res, bytes(payload), size)
        self.nbytes += size
        while self.nbytes > self.max_bytes or len(self._items) > self.max_entries:
            _, (_, _, dropped) = self._items.popitem(last=False)
            self.nbytes -= dropped
        return True

    def get(self, key: Key) -> tuple[Result, bytes] | None:
        hit = self._items.get(key)
        return None if hit is None else (hit[0], hit[1])

    def pop(self, key: Key, default: tuple[Result, bytes] | None = None) -> tuple[Result, bytes] | None:
        """Forget ``key`` (as ``dict.pop`` with a default: pruning finished requests may call it)."""
        hit = self._items.pop(key, None)
        if hit is None:
            return default
        self.nbytes -= hit[2]
        return hit[0], hit[1]

    def for_request(self, req_id: str) -> Iterator[tuple[Result, bytes]]:
        for (rid, _), (res, payload, _) in list(self._items.items()):
            if rid == req_id:
                yield res, payload

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items
