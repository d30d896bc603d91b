"""The schedulers of the cluster evaluation, each a policy of the one pure planner.

- ``batch``: whole-host allocation (Kubernetes with an MPI operator): the whole-hosts policy;
- ``slurm``: per-core first fit, no migration: the first-fit policy;
- ``granny``: bin-pack, the planner's default.
- ``granny-migrate``: bin-pack, and at each job's migration points (every ``migrate_every`` of its
  work, 10%) the planner's migration protocol (:mod:`.migrate`).
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


SCHEDULERS: dict[str, tuple[str, str]] = {  # name -> (policy, what it stands for)
    "batch": ("whole-hosts", "whole-host allocation, one job per host set (Kubernetes + MPI operator)"),
    "slurm": ("first-fit", "per-core allocation, first fit, no migration (Slurm)"),
    "granny": ("bin-pack", "granny's bin-pack, no migration"),
    "granny-migrate": ("bin-pack", "granny's bin-pack, and the planner's migration at each job's migration points"),
}
MIGRATE_EVERY = {"granny-migrate": 0.1}  # a migration point every 10% of a job's work


def scheduler_named(name: str) -> Scheduler:
    entry = SCHEDULERS.get(name)
    if entry is None:
        later = {"granny-elastic", "granny-spot", "dfaas"}
        hint = " (not built yet)" if name in later else ""
        raise ConfigError(f"unknown scheduler {name!r}{hint}: choose one of {', '.join(SCHEDULERS)}")
    return Scheduler(name, POLICIES[entry[0]], MIGRATE_EVERY.get(name))
