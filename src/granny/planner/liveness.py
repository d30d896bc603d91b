"""The planner's rules of host liveness that are not placement: fences and the planner's own stalls.

Theory of operation (the node life cycle of Ray and Kubernetes, in small)
- A host is declared dead when its heartbeats stop for longer than the cluster's timeout; its
  running tasks fail with ``host_died``. A dead host that speaks again (a heartbeat, a granule
  connecting) is told so, and its worker registers again: the host comes back as a new
  *incarnation*, with no granules and with its full capacity.
- The granules of the dead incarnation are *fenced*, by id: their work was already failed, so
  they are killed (when the host dies, and again when it registers, in case its worker missed the
  first order), and one that connects is killed instead of being given work. A fence ends when the
  worker reports the granule's exit. Granule ids are never reused by one worker process, so a
  fence never hits a granule of the new incarnation. A worker process that restarted (it registers
  with another ``boot``) starts its ids again, and its old granules died with the old worker: its
  host's fences are dropped, and if the host was still alive, its old incarnation ends right there.
- The planner may stall too (a long synchronous operation, a swapped-out process). Heartbeats that
  arrived during the stall are still unread when the next tick runs, so a tick that comes much
  later than the I/O shell scheduled it (``timeout / 2``; it ticks every ``timeout / 4`` at most)
  declares nobody dead: every live host gets a fresh grace period instead.
Pure: no sockets, threads or clocks; time comes in as ``now``.
"""

from __future__ import annotations

from collections.abc import Iterable


class Liveness:
    def __init__(self, heartbeat_timeout: float) -> None:
        self.heartbeat_timeout = heartbeat_timeout
        self._last_tick: float | None = None
        self._fenced: dict[str, tuple[str, str]] = {}  # granule id -> (host id, why it must not run)
        self.stalls = 0  # the planner's own stalls seen so far
        self.last_stall = 0.0  # the gap between ticks of the last one, in seconds

    # --- the planner's own stalls -----------------------------------------------------------
    def stalled(self, now: float) -> bool:
        """Record a tick at ``now``; True when it came so late that the planner itself had stalled."""
        last, self._last_tick = self._last_tick, now
        if last is None or now - last <= self.heartbeat_timeout / 2:
            return False
        self.stalls += 1
        self.last_stall = now - last
        return True

    def next_tick(self) -> float | None:
        """The latest time of the next tick that still does not read as a stall of the planner.

        A quarter of the timeout after the last one: half the stall threshold, so a tick that comes
        a little late is still no stall."""
        return None if self._last_tick is None else self._last_tick + self.heartbeat_timeout / 4

    # --- fences ---------------------------------------------------------------------------
    def fence(self, host_id: str, incarnation: int, granule_ids: Iterable[str]) -> str:
        """Fence the granules of a host's dead incarnation; returns the reason given to their kills."""
        why = (f"it belongs to incarnation {incarnation} of host {host_id}, which was declared dead "
               "(its work was failed)")
        for gid in granule_ids:
            self._fenced[gid] = (host_id, why)
        return why

    def fence_reason(self, granule_id: str) -> str:
        """Why this granule must be killed rather than used; "" if it is not fenced."""
        entry = self._fenced.get(granule_id)
        return entry[1] if entry is not None else ""

    def fenced_on(self, host_id: str) -> list[tuple[str, str]]:
        """The fenced granules of a host, with the reason of their kill."""
        return [(gid, why) for gid, (host, why) in self._fenced.items() if host == host_id]

    def unfence(self, granule_id: str) -> None:
        """The granule exited: its id is free again."""
        self._fenced.pop(granule_id, None)

    def unfence_host(self, host_id: str) -> None:
        """The host's worker restarted: its old granules died with the old worker, and ids start again."""
        for gid in [gid for gid, (host, _) in self._fenced.items() if host == host_id]:
            del self._fenced[gid]

    def forgotten(self, host_id: str, known: bool) -> str:
        """What a worker whose host is not registered is told."""
        if known:
            return (f"host {host_id} was declared dead (no heartbeat for more than {self.heartbeat_timeout:g}s) "
                    "and its running tasks failed; register again")
        return f"host {host_id} is not registered with this planner; register again"
