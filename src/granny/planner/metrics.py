"""``GET /metrics``: the planner in Prometheus' text format, read from its state at scrape time.

Nothing here runs per call except :meth:`CallStats.submitted` / :meth:`CallStats.finished` (a few integer
increments and a bisect into the latency buckets), so the metrics cost the call path almost nothing;
the gauges (slots, queue, hosts) are computed when Prometheus scrapes.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING, Protocol

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from .journal import COMMIT_BUCKETS
from .lifecycle import GranuleState

if TYPE_CHECKING:
    from .event_feed import EventFeed
    from .journal import Journal
    from .state import PlannerState

# Seconds from a call's submission to its result at the planner (upper bounds of the histogram's buckets).
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


class CallStats:
    """Counts of calls and their latency histogram, kept by the server as results go out."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()  # submitted, succeeded, failed
        self.buckets = [0] * (len(BUCKETS) + 1)
        self.total = 0.0

    def submitted(self) -> None:
        self.counts["submitted"] += 1

    def finished(self, ok: bool, seconds: float | None) -> None:
        self.counts["succeeded" if ok else "failed"] += 1
        if seconds is not None:
            self.buckets[bisect.bisect_left(BUCKETS, seconds)] += 1
            self.total += seconds


class Scraped(Protocol):
    """What a scrape reads of the server (server_protocol.Server does not list call_stats: this module
    defines its type)."""

    state: PlannerState
    journal: Journal
    feed: EventFeed
    call_stats: CallStats


class PlannerCollector:
    def __init__(self, p: Scraped) -> None:
        self.p = p

    def collect(self) -> Iterator[Metric]:
        st = self.p.state
        slots = GaugeMetricFamily("granny_host_slots", "Slots of a host", labels=["host", "state"])
        alive = GaugeMetricFamily("granny_host_alive", "1 if the host is registered and alive", labels=["host"])
        evicting = GaugeMetricFamily("granny_host_evicting", "1 while the host is under an eviction notice",
                                     labels=["host"])
        for h in st.hosts.values():
            busy = sum(1 for g in h.granules.values() if g.state is GranuleState.BUSY and not g.waiting)
            idle = max(0, h.slots - busy) if h.alive else 0
            slots.add_metric([h.host_id, "total"], h.slots)
            slots.add_metric([h.host_id, "busy"], busy if h.alive else 0)
            slots.add_metric([h.host_id, "idle"], idle)
            alive.add_metric([h.host_id], 1 if h.alive else 0)
            evicting.add_metric([h.host_id], 1 if h.host_id in st.evicting else 0)
        yield from (slots, alive, evicting)
        queue = GaugeMetricFamily("granny_queue_requests", "Requests waiting for slots", labels=["queue"])
        queue.add_metric(["fifo"], sum(1 for r in st.queue if r in st.requests and not st.requests[r].final()))
        queue.add_metric(["delay_tolerant"], len(st.batch.waiting))
        yield queue
        apps = GaugeMetricFamily("granny_apps", "Apps known to the planner, by state", labels=["state"])
        for state, n in Counter(a.state.value for a in st.apps.values()).items():
            apps.add_metric([state], n)
        yield apps
        stats = self.p.call_stats
        calls = CounterMetricFamily("granny_calls", "Calls (tasks) by outcome", labels=["outcome"])
        for outcome in ("submitted", "succeeded", "failed"):
            calls.add_metric([outcome], stats.counts[outcome])
        yield calls
        cumulative, running = [], 0
        for bound, n in zip((*map(str, BUCKETS), "+Inf"), stats.buckets, strict=True):
            running += n
            cumulative.append((bound, running))
        yield HistogramMetricFamily("granny_call_latency_seconds", "From a call's submission to its result",
                                    buckets=cumulative, sum_value=stats.total)
        for name, counts, what in (("granny_migration_events", st.migrations.counts, "Migration points of MPI "
                                    "worlds: decisions, moves, refusals, freezes, thaws, checkpoints, recoveries"),
                                   ("granny_delay_tolerant_calls", st.batch.counts, "Delay-tolerant calls: admitted, "
                                    "refused, delayed, promoted, preempted, freezes, frozen, thawed, paused, met, missed")):
            family = CounterMetricFamily(name, what, labels=["event"])
            for event, n in sorted(counts.items()):
                family.add_metric([event], n)
            yield family
        evicted = GaugeMetricFamily("granny_hosts_evicted", "Hosts whose eviction notice ran out (until restored)")
        evicted.add_metric([], len(st.evictions.evicted))
        yield evicted
        yield from self._moves()
        yield from self._journal()

    def _moves(self) -> Iterator[Metric]:
        """The operator's five counters of work moved around, and every event kind (see events.py)."""
        m, ev = self.p.state.migrations.counts, self.p.feed.counts
        for name, value, what in (("granny_migrations", m["completed"], "Migrations of worlds completed"),
                                  ("granny_freezes", m["frozen"], "Worlds frozen (their state stored)"),
                                  ("granny_call_freezes", self.p.state.batch.counts["frozen"],
                                   "Delay-tolerant calls frozen at a migration point (their state stored)"),
                                  ("granny_evictions", ev["host.evicted"], "Hosts taken back at the end of a notice"),
                                  ("granny_recoveries", m["recoveries"], "Worlds restarted from a checkpoint")):
            family = CounterMetricFamily(name, what)
            family.add_metric([], value)
            yield family
        events = CounterMetricFamily("granny_events", "Planner events by kind (GET /v1/events)", labels=["kind"])
        for kind, n in sorted(ev.items()):
            events.add_metric([kind], n)
        yield events

    def _journal(self) -> Iterator[Metric]:
        stats = self.p.journal.commits
        cumulative, running = [], 0
        for bound, n in zip((*map(str, COMMIT_BUCKETS), "+Inf"), list(stats.buckets), strict=True):
            running += n
            cumulative.append((bound, running))
        yield HistogramMetricFamily("granny_journal_commit_seconds", "One group commit of the journal (its write "
                                    "latency)", buckets=cumulative, sum_value=stats.total)


def render(p: Scraped) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PlannerCollector(p))
    return generate_latest(registry)
