"""The discrete-event simulator: a virtual clock driving the real planner (``granny experiment --mode sim``)."""

from .contention import Contention
from .engine import MigrationHook, SimResult, Simulator, simulate
from .events import Cluster, JobEvent
from .running import RunningJob
from .runtime import KindModel, RuntimeModel, optimal_counts
from .schedulers import SCHEDULERS, SPOT, Scheduler, scheduler_named
from .spot import ORIGINAL as ORIGINAL_EVICTIONS
from .spot import EvictionSchedule
from .trace import Job, parse_trace, poisson_trace, to_csv

__all__ = ["ORIGINAL_EVICTIONS", "SCHEDULERS", "SPOT", "Cluster", "Contention", "EvictionSchedule", "Job", "JobEvent", "KindModel", "MigrationHook", "RunningJob", "RuntimeModel",
           "Scheduler", "SimResult", "Simulator", "optimal_counts", "parse_trace", "poisson_trace", "scheduler_named",
           "simulate", "to_csv"]
