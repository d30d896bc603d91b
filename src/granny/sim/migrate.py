"""granny-migrate in the simulator: the planner's own migration protocol, at each job's migration points.

The simulated ranks do what :mod:`granny.migration.point` does in a granule, through the same
:class:`PlannerState` calls the server makes for those frames:
- rank 0 asks (``migrate_ask``) at the world's first point, which registers it as a world with
  points, and afterwards only when the planner hinted that it would gain (a ``Hint`` action);
- when the answer moves ranks, each moving rank's old process serves its state
  (``migrate_served``) and hands it over (``moved_away``, which frees its old slot), and every rank
  joins the new generation (``mpi_join``), which completes the move;
- the job's remaining work is then re-timed on its new split (:meth:`.engine.Simulator.move`);
- when the answer is a freeze (the spot policy, with nowhere to go), every rank serves its state
  (``migrate_served``, answered by a ``StoreState``), the store reports it (``state_stored``), and
  each old process hands over (``moved_away``): the state requeues the world first in line and
  thaws it when it fits (the simulator resumes it then: :meth:`.engine.Simulator.freeze`);
- an old process then ends and its worker starts a fresh granule in the slot (``granule_exited``),
  as a real one does: until it has, the state counts its slot as room being freed.
A move or a thaw costs ``Scheduler.move_cost`` virtual seconds (0 for granny-migrate): the cost of
moving state (a few seconds per GB in the original's migration micro-benchmark) is not calibrated.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Protocol

from ..planner.policies.base import counts_of
from ..planner.records import MigrateAnswer, RankAddress, StoreState

if TYPE_CHECKING:
    from ..planner.records import Action
    from ..planner.state import PlannerState
    from .running import RunningJob
    from .runtime import RuntimeModel
    from .schedulers import Scheduler


class MigratingSim(Protocol):
    """What the migration driver uses of the simulator (:class:`.engine.Simulator` is one); a Protocol, so
    that the engine imports this module and not the other way round."""

    state: PlannerState
    scheduler: Scheduler
    model: RuntimeModel
    now: float
    hinted: set[str]  # worlds the planner hinted would gain from moving

    def apply(self, actions: Iterable[Action]) -> None: ...

    def host_of(self, granule_id: str) -> str: ...

    def new_granule(self, host_id: str) -> None: ...

    def move(self, run: RunningJob, hosts: Sequence[str], granules: Sequence[str]) -> None: ...

    def freeze(self, run: RunningJob) -> None: ...


class PlannerMigration:
    def __init__(self) -> None:
        self.asked: set[str] = set()  # worlds that reached their first point

    def at_point(self, sim: MigratingSim, run: RunningJob) -> None:
        req_id = run.req_id
        if req_id in self.asked and req_id not in sim.hinted:
            return  # rank 0 asks only when hinted (or at the first point): a point costs no round trip
        self.asked.add(req_id)
        sim.hinted.discard(req_id)
        state = sim.state
        gen = state.migrations.gen(req_id)
        # rank 0 knows how far apart its points are (a real one measures it): every ``migrate_every`` of the work
        every = sim.scheduler.migrate_every or 0.0
        interval = every * sim.model.runtime(run.job.kind, [c for _, c in counts_of(run.hosts)])
        actions = state.migrate_ask(run.granules[0], req_id, gen, True, "", sim.now, interval=interval)
        answer = next((a for a in actions if isinstance(a, MigrateAnswer)), None)
        sim.apply(actions)
        if answer is not None and answer.freeze:
            self._freeze(sim, run, answer.gen)
            return
        if answer is None or not answer.moves:
            return
        granules = list(run.granules)
        req = state.requests[req_id]
        for mv in answer.moves:
            old = run.granules[mv.index]
            sim.apply(state.migrate_served(old, req_id, mv.index, answer.gen, "sim", 0, b""))
            sim.apply(state.moved_away(old, req_id, mv.index))
            granules[mv.index] = req.tasks[mv.index].granule_id
            _replace(sim, old)
        hosts = [sim.host_of(g) for g in granules]
        for index, gid in enumerate(granules):
            address = RankAddress(hosts[index], 0, "sim", 0)
            sim.apply(state.mpi_join(gid, req_id, index, address, answer.gen, sim.now))
        sim.move(run, hosts, granules)

    def _freeze(self, sim: MigratingSim, run: RunningJob, gen: int) -> None:
        state, req_id = sim.state, run.req_id
        slots = []
        for index, old in enumerate(run.granules):
            stores = [a for a in state.migrate_served(old, req_id, index, gen, "sim", 0, b"") if isinstance(a, StoreState)]
            if not stores:
                raise AssertionError(f"the planner did not store rank {index} of frozen {req_id}")
            slots.append(stores[0].slot)
        sim.freeze(run)  # first: once every rank's state is stored, the state may thaw it at once
        for index, slot in enumerate(slots):
            sim.apply(state.state_stored(req_id, index, slot, "", sim.now))
        for index, old in enumerate(run.granules):
            sim.apply(state.moved_away(old, req_id, index))
            _replace(sim, old)


def _replace(sim: MigratingSim, granule_id: str) -> None:
    """A moved rank's old process exits; its worker starts a fresh warm granule in its slot."""
    host_id = sim.host_of(granule_id)
    sim.apply(sim.state.granule_exited(granule_id, "exit code 0"))
    sim.new_granule(host_id)
