"""One row of ``Client.hosts()``: a host as the planner sees it."""

from __future__ import annotations

from typing import NamedTuple


class HostInfo(NamedTuple):
    host_id: str
    slots: int
    used: int
    alive: bool
    idle_granules: int = 0
    last_heartbeat_age: float = 0.0
    incarnation: int = 0  # 1 at first registration, one more each time the host came back from the dead
    evicting_in: float | None = None  # seconds left of its eviction notice (None: it has none)
    evicted: bool = False  # taken back at the end of a notice, and no worker registered for it since
