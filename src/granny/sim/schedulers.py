"""The schedulers of the cluster evaluation, each a policy of the one pure planner.

- ``batch``: whole-host allocation (Kubernetes with an MPI operator): the whole-hosts policy;
- ``slurm``: per-core first fit, no migration: the first-fit policy;
- ``granny``: bin-pack, the planner's default.
- ``granny-migrate``: bin-pack, and at each job's migration points (every ``migrate_every`` of its
  work, 10%) the planner's migration protocol (:mod:`.migrate`).
- ``granny-elastic``: bin-pack; an OpenMP-style job's team is an elastic lease that grows into the
  idle slots of its host at each fork (every 5% of its work) and gives slots back when the planner
  asks (:mod:`.elastic`); other jobs run as under ``granny``.
- ``dfaas``: bin-pack, and function calls are submitted with their delay tolerance: the planner's
  batch queue (EDF, admission, deadline guard) runs the delay-tolerant ones in the slots the
  latency-sensitive ones leave free (:mod:`.dfaas`); the other schedulers submit every call at once.
- ``granny-spot``: the spot policy under an eviction schedule (:mod:`.spot`): the planner hears each
  notice, and jobs move off or freeze at their migration points (every 5% of their work);
- ``granny-spot-late``: the same with the ``spot-late`` policy (a job on a host under notice stays until
  its last point before the deadline, even when it could move now);
- ``batch-ft`` / ``slurm-ft``: whole-host / first-fit under the same schedule, without notices (as the
  original's native baselines): a job on a host taken back fails and is submitted again from the start.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError
from ..planner.policies import POLICIES, Policy


@dataclass(frozen=True)
class Scheduler:
    name: str
    policy: Policy
    migrate_every: float | None = None  # fraction of a job's work between two migration points
    evictions: bool = False  # runs under the eviction schedule (spot VMs)
    notice: bool = True  # the planner hears each eviction notice ahead (False: the host is taken back unannounced)
    move_cost: float = 0.0  # virtual seconds a move or a thaw adds to the job (state transfer, rendezvous)
    fork_every: float | None = None  # elastic OpenMP-style teams: a fork every this fraction of a job's work
    delay_tolerant: bool = False  # function calls go with their delay tolerance (the planner's batch queue)


SCHEDULERS: dict[str, tuple[str, str]] = {  # name -> (policy, what it stands for)
    "batch": ("whole-hosts", "whole-host allocation, one job per host set (Kubernetes + MPI operator)"),
    "slurm": ("first-fit", "per-core allocation, first fit, no migration (Slurm)"),
    "granny": ("bin-pack", "granny's bin-pack, no migration"),
    "granny-migrate": ("bin-pack", "granny's bin-pack, and the planner's migration at each job's migration points"),
    "granny-elastic": ("bin-pack", "granny's bin-pack; OpenMP-style teams grow into their host's idle slots at forks"),
    "dfaas": ("bin-pack", "granny's bin-pack; delay-tolerant calls wait in the planner's EDF batch queue"),
    "granny-spot": ("spot", "the spot policy under evictions: jobs move off or freeze at their migration points"),
    "granny-spot-late": ("spot-late", "granny-spot, but a job stays on a host under notice until its last point"),
    "batch-ft": ("whole-hosts", "batch under evictions, no notice: a job on an evicted host starts again"),
    "slurm-ft": ("first-fit", "slurm under evictions, no notice: a job on an evicted host starts again"),
}
SPOT = ("granny-spot", "granny-spot-late", "batch-ft", "slurm-ft")  # the schedulers that run under an eviction schedule
MIGRATE_EVERY = {"granny-migrate": 0.1, "granny-spot": 0.05, "granny-spot-late": 0.05}  # a migration point every 10% (5%) of a job's work
# A move or thaw of a LAMMPS rank ships little state (the original's migration micro-benchmark: a few
# seconds per GB); 1 s covers the rendezvous of the new generation too. Not calibrated.
MOVE_COST = {"granny-spot": 1.0, "granny-spot-late": 1.0}
FORK_EVERY = {"granny-elastic": 0.05}  # the omp kernel's 20 parallel regions


def scheduler_named(name: str) -> Scheduler:
    entry = SCHEDULERS.get(name)
    if entry is None:
        raise ConfigError(f"unknown scheduler {name!r}: choose one of {', '.join(SCHEDULERS)}")
    return Scheduler(name, POLICIES[entry[0]], MIGRATE_EVERY.get(name), evictions=name in SPOT,
                     notice=name.startswith("granny-spot"), move_cost=MOVE_COST.get(name, 0.0),
                     fork_every=FORK_EVERY.get(name), delay_tolerant=name == "dfaas")
