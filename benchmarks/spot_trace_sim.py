"""``spot_trace.py``'s live experiment replayed in the simulator (the same planner core), over many eviction orders.

    .venv/bin/python benchmarks/spot_trace_sim.py [--policy spot-late] [--scale 0.1] [--down 1.45] [--seeds 15]

The live benchmark runs the original's trace_mpi-spot_10_8.csv on 4 testbed hosts × 8 slots: each job sleeps
for as long as it ran in the original (scaled), with a migration point every ``--step-s``; every round
(60 s × scale) the next host in round-robin order gets a notice of one round, is taken back at its end and
registers again ``--down`` seconds later (live: ``--down`` plus up to 0.2 s for the evictor's poll, now that
the testbed boots the worker while the host is away; before, plus the worker's start: 0.3-3 s measured,
depending on the machine's load). This replays exactly that through :class:`granny.sim.Simulator`, so
the spot policy's decisions are the planner's own; a move or a thaw costs ``--move-cost`` seconds.

One live run is one eviction order, and the ratio swings with it (a 15-rank job that lands on the next
host to be noticed freezes for a long time), so this runs the 4 round-robin starts and ``--seeds`` random
orders (as the original's injector chose) and reports the spread. ``--oracle-backfill`` adds EASY
backfilling with the jobs' true runtimes (which no planner knows): an upper bound on what backfilling
behind a waiting or frozen head could give.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from granny.planner.lifecycle import TaskState
from granny.planner.policies import POLICIES, ClusterView, Placement
from granny.planner.records import Action
from granny.planner.views_policy import request_for
from granny.sim import EvictionSchedule, Job, KindModel, RuntimeModel, Simulator, scheduler_named
from granny.sim.migrate import PlannerMigration
from granny.sim.running import RunningJob
from granny.sim.spot import Evictor

sys.path.insert(0, str(Path(__file__).resolve().parent))
import spot_trace

HOSTS = ["h1", "h2", "h3", "h4"]


class RoundRobin(Evictor):
    """The testbed's evictor: each round the next host in order (``rounds`` offsets the first)."""

    def round(self) -> None:
        sim, s = self.sim, self.schedule
        if not sim.open_jobs():
            return
        self.rounds += 1
        host = sim.host_ids[(self.rounds - 1) % len(sim.host_ids)]
        if host not in self.gone and host not in self.noticed:
            self.noticed.add(host)
            sim.apply(sim.state.evict(host, sim.now, s.grace))
        sim.push_evict(sim.now + s.every)


class FixedStep(Simulator):
    """Migration points every ``step`` seconds of a job's work (the live jobs' pace), not a fraction of it."""

    step = 0.25

    def _next_point(self, run: RunningJob) -> None:
        self.scheduler = dataclasses.replace(self.scheduler, migrate_every=self.step / self.model.runtime(run.job.kind, [1]))
        super()._next_point(run)


class FixedStepPoints(PlannerMigration):
    def at_point(self, sim: Any, run: RunningJob) -> None:
        sim.scheduler = dataclasses.replace(sim.scheduler, migrate_every=sim.step / sim.model.runtime(run.job.kind, [1]))
        super().at_point(sim, run)


def oracle_backfill(sim: Simulator) -> None:
    """EASY backfilling with the true runtimes: a job behind a head that does not fit starts now if it fits
    and ends before the head could start (the running jobs' true ends), or uses only the slots the head
    will not need then. Patched onto this simulation's state: an experiment, not a planner feature."""
    st = sim.state
    plain = st.schedule

    def schedule() -> list[Action]:
        actions = plain()
        while len(st.queue) > 1:
            head = st.requests[st.queue[0]]
            need = sum(1 for t in head.tasks if t.state is TaskState.QUEUED)
            view = ClusterView(st.views.views(st.requests, st.evicting))
            free = sum(h.free for h in view.hosts if not h.evicting)
            avail, shadow = free, None
            for end, n in sorted((r.end, len(r.granules)) for r in sim.running.values()):
                if avail >= need:
                    break
                avail, shadow = avail + n, end
            placed = False
            for rid in list(st.queue)[1:]:
                req = st.requests[rid]
                pending = [i for i, t in enumerate(req.tasks) if t.state is TaskState.QUEUED]
                if not pending or req.frozen or len(pending) > free:
                    continue
                runtime = sim.model.runtime(sim._jobs[rid].kind, [1])
                if shadow is not None and sim.now + runtime > shadow and len(pending) > avail - need:
                    continue
                decision = st.policy.place(view, request_for(req, len(pending)))
                if isinstance(decision, Placement):
                    st.queue.remove(rid)
                    actions += st.assign(req, pending, decision.hosts)
                    placed = True
                    break
            if not placed:
                break
        return actions

    st.schedule = schedule  # type: ignore[method-assign]


def replay(args: argparse.Namespace, evict: bool, seed: int | None = None, first: int = 0,
           patch: Callable[[Simulator], None] | None = None) -> float:
    """The makespan of one run: round-robin evictions starting at host ``first``, or random ones (``seed``)."""
    trace = spot_trace.load_trace(Path(args.trace), Path(args.runtimes), args.scale, args.step_s)
    jobs = [Job(i, f"j{i}", size, at) for i, (at, size, _) in enumerate(trace)]
    model = RuntimeModel({f"j{i}": KindModel(steps * args.step_s, 0.0, 0.0) for i, (_, _, steps) in enumerate(trace)})
    scheduler = dataclasses.replace(scheduler_named("granny-spot"), policy=POLICIES[args.policy],
                                    move_cost=args.move_cost, migrate_every=0.01, evictions=evict)
    period = spot_trace.ORIGINAL_ROUND_S * args.scale
    schedule = EvictionSchedule(every=period, fraction=0.25, grace=period, down=args.down, start=period / 2,
                                seed=seed or 0)
    FixedStep.step = args.step_s
    sim = FixedStep(scheduler, 4, 8, model, migration=FixedStepPoints(), host_ids=HOSTS,
                    evictions=schedule if evict else None)
    if sim.evictor is not None and seed is None:
        sim.evictor = RoundRobin(sim, schedule)
        sim.evictor.rounds = first
    if patch is not None:
        patch(sim)
    return sim.run(jobs).end


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trace", default=str(spot_trace.TRACE))
    ap.add_argument("--runtimes", default=str(spot_trace.RUNTIMES))
    ap.add_argument("--policy", default="spot", help="spot or spot-late")
    ap.add_argument("--scale", type=float, default=0.1)
    ap.add_argument("--step-s", type=float, default=0.25)
    ap.add_argument("--down", type=float, default=1.45,
                    help="seconds from take-back to the host's return (live: --down + up to 0.2 s)")
    ap.add_argument("--move-cost", type=float, default=0.2, help="seconds a move or a thaw adds (live: 0.02-0.7 s)")
    ap.add_argument("--seeds", type=int, default=15, help="random eviction orders, besides the 4 round-robin ones")
    ap.add_argument("--oracle-backfill", action="store_true")
    args = ap.parse_args()
    patch = oracle_backfill if args.oracle_backfill else None
    calm = replay(args, False, patch=patch)
    ratios = [replay(args, True, first=k, patch=patch) / calm for k in range(4)]
    ratios += [replay(args, True, seed=s, patch=patch) / calm for s in range(1, args.seeds + 1)]
    print(f"{args.policy}{' + oracle EASY backfill' if patch else ''}, scale {args.scale:g}, down {args.down:g} s: "
          f"calm {calm:.1f} s; with evictions ÷ without: round-robin {', '.join(f'{r:.2f}' for r in ratios[:4])}; "
          f"all {len(ratios)} orders: mean {statistics.mean(ratios):.3f}, median {statistics.median(ratios):.3f}, "
          f"min {min(ratios):.2f}, max {max(ratios):.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
