"""Spot VMs in the simulator: an eviction schedule driving the planner's eviction notices.

Theory of operation
- :class:`EvictionSchedule` is the original's fault injector (GRANNY artifact,
  ``tasks/makespan/scheduler.py``): every ``every`` seconds a random ``fraction`` of the hosts (at
  least one) gets a notice that ends ``grace`` seconds later; at the end the host is taken back, and
  it comes back ``down`` seconds after that as a new spot VM of the same name. The original used
  60 s, a quarter of the VMs, 60 s, and restarted the VM at once (``down`` 0).
- With ``Scheduler.notice`` the planner hears each notice when it is given
  (:meth:`PlannerState.evict` with the grace); its own deadline (one of ``next_deadline``) takes the
  host back. Without it (the native baselines, which the original did not warn) the host is taken
  back unannounced at the end of the grace: ``evict`` with no grace, at that moment.
- Either way the state fails what still runs there, kills the host's granules and emits
  ``StopWorker``; the simulator then treats the host as gone until it comes back, when it registers
  again (a new worker process: a new ``boot``) with fresh warm granules.
- A job that lost ranks this way is submitted again, from the start, under a new request id (what
  the original's harness did with a failed job); its submit time stays that of its first attempt.
Pure: no clocks or I/O; the random choice of hosts is seeded, so a run is deterministic.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from ..errors import ConfigError

if TYPE_CHECKING:
    from ..planner.records import Action
    from ..planner.state import PlannerState
    from .events import Cluster
    from .schedulers import Scheduler


class EvictingSim(Protocol):
    """What the evictor uses of the simulator (:class:`.engine.Simulator` is one); a Protocol, so that the
    engine imports this module and not the other way round."""

    state: PlannerState
    scheduler: Scheduler
    cluster: Cluster
    host_ids: list[str]
    now: float

    def apply(self, actions: Iterable[Action]) -> None: ...

    def open_jobs(self) -> int: ...

    def new_granule(self, host_id: str) -> None: ...

    def push_evict(self, t: float) -> None: ...

    def push_take(self, t: float, host_id: str) -> None: ...

    def push_return(self, t: float, host_id: str) -> None: ...


@dataclass(frozen=True)
class EvictionSchedule:
    every: float = 60.0  # seconds between two rounds of notices
    fraction: float = 0.25  # of the hosts, per round (at least one host)
    grace: float = 60.0  # notice to take-back
    down: float = 0.0  # take-back to the host's return
    seed: int = 0
    start: float = 0.0  # the first round
    hosts: tuple[str, ...] = ()  # evict these hosts each round instead of a random fraction (tests)

    def __post_init__(self) -> None:
        if not (self.every > 0 and 0 < self.fraction <= 1 and self.grace >= 0 and self.down >= 0
                and math.isfinite(self.every + self.grace + self.down)):
            raise ConfigError(f"an eviction schedule needs every > 0, 0 < fraction <= 1, grace and down >= 0: {self}")

    def count(self, hosts: int) -> int:
        return max(1, int(hosts * self.fraction))


ORIGINAL = EvictionSchedule()  # the original's mpi-spot runs


class Evictor:
    def __init__(self, sim: EvictingSim, schedule: EvictionSchedule) -> None:
        self.sim = sim
        self.schedule = schedule
        self.rng = random.Random(schedule.seed)
        self.gone: set[str] = set()  # hosts taken back, not back yet
        self.noticed: set[str] = set()  # hosts under a notice (given to the planner or not)
        self.boots: dict[str, int] = {}  # host -> its worker's incarnation
        self.rounds = 0
        self.taken = 0  # hosts taken back so far

    def start(self) -> None:
        self.sim.push_evict(self.schedule.start)

    def round(self) -> None:
        """Give this round's notices (the sim calls it at each multiple of ``every``)."""
        sim, s = self.sim, self.schedule
        if not sim.open_jobs():
            return  # the trace is done: nothing more to evict
        self.rounds += 1
        pool = [h for h in sim.host_ids if h not in self.gone and h not in self.noticed]
        chosen = [h for h in s.hosts if h in pool] if s.hosts else self.rng.sample(pool, min(len(pool), s.count(len(sim.host_ids))))
        for host_id in sorted(chosen):
            self.noticed.add(host_id)
            if sim.scheduler.notice:
                sim.apply(sim.state.evict(host_id, sim.now, s.grace))
            else:
                sim.push_take(sim.now + s.grace, host_id)
        sim.push_evict(sim.now + s.every)

    def take(self, host_id: str) -> None:
        """An unannounced take-back (baselines): the notice and its deadline are one instant."""
        self.sim.apply(self.sim.state.evict(host_id, self.sim.now, 0.0))

    def stopped(self, host_id: str) -> None:
        """The state took the host back (StopWorker): it is gone until it returns."""
        self.noticed.discard(host_id)
        self.gone.add(host_id)
        self.taken += 1
        self.sim.push_return(self.sim.now + self.schedule.down, host_id)

    def back(self, host_id: str) -> None:
        """A new spot VM of the same name: a new worker process with fresh granules."""
        sim = self.sim
        self.gone.discard(host_id)
        boot = self.boots[host_id] = self.boots.get(host_id, 0) + 1
        sim.apply(sim.state.restore_host(host_id))  # forget the eviction
        sim.apply(sim.state.register_host(host_id, sim.cluster.slots, sim.now, boot=f"sim.{boot}"))
        for _ in range(sim.cluster.slots):
            sim.new_granule(host_id)
