"""The schedulers of the cluster evaluation, each a policy of the one pure planner.

- ``batch``: whole-host allocation (Kubernetes with an MPI operator): the whole-hosts policy;
- ``slurm``: per-core first fit, no migration: the first-fit policy;
- ``granny``: bin-pack, the planner's default.
``granny-migrate`` (bin-pack with migration points every K iterations) comes with the planner's
migration support: :class:`Scheduler` already carries ``migrate_every`` for it, and the engine
calls its :class:`MigrationHook` at each job's migration points.
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
}


def scheduler_named(name: str) -> Scheduler:
    entry = SCHEDULERS.get(name)
    if entry is None:
        later = {"granny-migrate", "granny-elastic", "granny-spot", "dfaas"}
        hint = " (not built yet)" if name in later else ""
        raise ConfigError(f"unknown scheduler {name!r}{hint}: choose one of {', '.join(SCHEDULERS)}")
    return Scheduler(name, POLICIES[entry[0]])
