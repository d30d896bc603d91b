"""granny-migrate in the simulator: the planner's own migration protocol, at each job's migration points.

The simulated ranks do what :mod:`granny.migration.point` does in a granule, through the same
:class:`PlannerState` calls the server makes for those frames:
- rank 0 asks (``migrate_ask``) at the world's first point, which registers it as a world with
  points, and afterwards only when the planner hinted that it would gain (a ``Hint`` action);
- when the answer moves ranks, each moving rank's old process serves its state
  (``migrate_served``) and hands it over (``moved_away``, which frees its old slot), and every rank
  joins the new generation (``mpi_join``), which completes the move;
- the job's remaining work is then re-timed on its new split (:meth:`Simulator.move`).
A move takes no virtual time yet: its cost (a few seconds per GB of state in the original's
migration micro-benchmark) is not calibrated.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..planner.records import MigrateAnswer, RankAddress

if TYPE_CHECKING:
    from .engine import RunningJob, Simulator


class PlannerMigration:
    def __init__(self) -> None:
        self.asked: set[str] = set()  # worlds that reached their first point

    def at_point(self, sim: Simulator, run: RunningJob) -> None:
        req_id = run.req_id
        if req_id in self.asked and req_id not in sim.hinted:
            return  # rank 0 asks only when hinted (or at the first point): a point costs no round trip
        self.asked.add(req_id)
        sim.hinted.discard(req_id)
        state = sim.state
        gen = state.migrations.gen(req_id)
        actions = state.migrate_ask(run.granules[0], req_id, gen, True, "", sim.now)
        answer = next((a for a in actions if isinstance(a, MigrateAnswer)), None)
        sim.apply(actions)
        if answer is None or not answer.moves:
            return
        granules = list(run.granules)
        req = state.requests[req_id]
        for mv in answer.moves:
            old = run.granules[mv.index]
            sim.apply(state.migrate_served(old, req_id, mv.index, answer.gen, "sim", 0, b""))
            sim.apply(state.moved_away(old, req_id, mv.index))
            granules[mv.index] = req.tasks[mv.index].granule_id
        hosts = [sim.host_of(g) for g in granules]
        for index, gid in enumerate(granules):
            address = RankAddress(hosts[index], 0, "sim", 0)
            sim.apply(state.mpi_join(gid, req_id, index, address, answer.gen, sim.now))
        sim.move(run, hosts, granules)
