"""Replay a trace with a named scheduler and write what happened: ``granny experiment run``.

A run directory holds ``run.json`` (what was run, and how long the simulation took),
``events.jsonl`` (one :class:`granny.sim.JobEvent` a line) and ``metrics.json``.
``--mode testbed`` replays the trace scaled down with real jobs on the namespace testbed
(:mod:`.replay`, :mod:`.live`); its run.json also says how it was scaled and what the simulator
predicted for the same scaled trace.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..planner.policies import BinPack
from ..sim import (
    ORIGINAL_EVICTIONS,
    Cluster,
    EvictionSchedule,
    Job,
    JobEvent,
    RuntimeModel,
    SimResult,
    parse_trace,
    scheduler_named,
)
from ..sim.dfaas import is_call, with_functions
from ..sim.elastic import simulator_class
from .calibration import load_model
from .metrics import Metrics, compute

MODES = ("sim", "testbed")
# How jobs arrive: "trace" at the trace's times; "original" as the original's harness submitted them
# for its figures (one blocking submitter, the next job 1 s after the previous one started).
ARRIVALS = {"trace": None, "original": 1.0}


@dataclass
class RunOutcome:
    scheduler: str
    cluster: Cluster
    metrics: Metrics
    result: SimResult
    wall_seconds: float
    out: Path | None = None


def load_trace(path: Path) -> list[Job]:
    try:
        with open(path, newline="") as f:
            return parse_trace(f)
    except OSError as exc:
        raise ConfigError(f"cannot read trace {path}: {exc}") from None


def run(trace: Path | Sequence[Job], hosts: int, slots: int, scheduler: str, mode: str = "sim",
        out: Path | None = None, model: RuntimeModel | None = None, arrivals: str = "trace",
        migrate_every: float | None = None, evictions: EvictionSchedule | None = ORIGINAL_EVICTIONS,
        testbed: dict[str, Any] | None = None, reserve: float | None = None) -> RunOutcome:
    """Replay ``trace`` (a CSV path or jobs) on ``hosts`` x ``slots`` with ``scheduler``; ``arrivals``
    is "trace" or "original" (see ARRIVALS); ``migrate_every`` overrides the scheduler's distance
    between migration points (a fraction of each job's work); ``evictions`` is the schedule the
    schedulers that run under evictions (granny-spot, batch-ft, slurm-ft) get (None: no evictions).
    ``testbed``: options of :func:`run_testbed` for ``mode="testbed"`` (prefix, subnet, scale...).
    ``reserve``: a bin-pack scheduler runs ``bin-pack-reserve`` keeping that share of the slots free (None or 0: not)."""
    if mode == "testbed":
        if arrivals != "trace" or migrate_every is not None or reserve:
            raise ConfigError("--mode testbed replays the trace's arrival times (--arrivals trace) with the "
                              "schedulers' own migration points (no --migrate-every)")
        return run_testbed(trace, hosts, slots, [scheduler], out, **(testbed or {}))[0][0]
    if mode != "sim":
        raise ConfigError(f"unknown mode {mode!r}: choose sim or testbed")
    if arrivals not in ARRIVALS:
        raise ConfigError(f"unknown arrivals {arrivals!r}: choose {' or '.join(ARRIVALS)}")
    jobs = load_trace(trace) if isinstance(trace, Path) else list(trace)
    sched = scheduler_named(scheduler)
    if migrate_every is not None:
        if not sched.migrate_every or not 0 < migrate_every < 1:
            raise ConfigError(f"--migrate-every takes a fraction in (0, 1), for a scheduler that migrates "
                              f"(got {migrate_every} for {scheduler})")
        sched = replace(sched, migrate_every=migrate_every)
    if reserve:
        if not isinstance(sched.policy, BinPack) or sched.policy.reserve:
            raise ConfigError(f"--reserve is for the schedulers that bin-pack (got {scheduler}: {sched.policy.name})")
        sched = replace(sched, policy=BinPack(reserve))
    model = model or load_model()
    if any(is_call(j) for j in jobs):
        model = with_functions(model)
    started = time.perf_counter()
    result = simulator_class(sched)(sched, hosts, slots, model, submit_gap=ARRIVALS[arrivals], evictions=evictions).run(jobs)
    wall = time.perf_counter() - started
    metrics = compute(result.events, result.cluster)
    outcome = RunOutcome(scheduler, result.cluster, metrics, result, wall, out)
    if out is not None:
        write(outcome, trace if isinstance(trace, Path) else None, mode, arrivals)
    return outcome


def run_testbed(trace: Path | Sequence[Job], hosts: int, slots: int, schedulers: Sequence[str], out: Path | None,
                scale: float | None = None, **options: Any) -> list[tuple[RunOutcome, RunOutcome]]:
    """Replay ``trace`` scaled down on the namespace testbed with each scheduler (one testbed for all);
    ``out/<scheduler>`` (or ``out`` for one scheduler) gets each run. ``scale``: the arrivals' time
    scale (default: our jobs' runtime over the original's); ``options`` go to :func:`.replay.replay`.
    Returns (live, simulated) per scheduler; the simulated run is the same scaled trace with the
    testbed-calibrated model (written to ``<run>/sim``)."""
    from .live import policy_of
    from .replay import replay, run_meta, scaled

    for name in schedulers:
        policy_of(name)  # refused here, before a testbed comes up
    jobs = load_trace(trace) if isinstance(trace, Path) else list(trace)
    scaling, small = scaled(jobs, slots, scale=scale)
    outcomes: list[tuple[RunOutcome, RunOutcome]] = []

    def keep(live: Any) -> None:
        where = None if out is None else (out if len(schedulers) == 1 else out / live.scheduler)
        outcome = RunOutcome(live.scheduler, live.live.cluster, live.metrics, live.live, live.wall_seconds, where)
        sim = RunOutcome(live.scheduler, live.sim.cluster, live.sim_metrics, live.sim, 0.0,
                         None if where is None else where / "sim")
        outcomes.append((outcome, sim))
        if where is not None:
            write(outcome, trace if isinstance(trace, Path) else None, "testbed", "trace",
                  extra=run_meta(live, scaling, options.get("workload") or _workload()))
            write(sim, trace if isinstance(trace, Path) else None, "sim", "trace",
                  extra={"scaling": scaling.to_json(), "of": "the live run's scaled trace, testbed-calibrated model"})

    replay(small, hosts, slots, schedulers, done=keep, call_scale=scaling.time_scale, **options)
    return outcomes


def _workload() -> Any:
    from .live import Workload

    return Workload()


def write(outcome: RunOutcome, trace: Path | None, mode: str, arrivals: str,
          extra: dict[str, Any] | None = None) -> None:
    out = outcome.out
    assert out is not None
    out.mkdir(parents=True, exist_ok=True)
    meta = {"trace": str(trace) if trace else None, "hosts": outcome.cluster.hosts, "slots": outcome.cluster.slots,
            "scheduler": outcome.scheduler, "mode": mode, "arrivals": arrivals,
            "migrate_every": outcome.result.migrate_every, "evictions": outcome.result.evictions,
            "policy": outcome.result.policy,
            "wall_seconds": round(outcome.wall_seconds, 4), **(extra or {})}
    (out / "run.json").write_text(json.dumps(meta, indent=2) + "\n")
    with open(out / "events.jsonl", "w") as f:
        for e in outcome.result.events:
            f.write(json.dumps(e.to_json()) + "\n")
    (out / "metrics.json").write_text(json.dumps(outcome.metrics.to_json(), indent=2) + "\n")


@dataclass
class StoredRun:
    path: Path
    meta: dict[str, Any]
    events: list[JobEvent]
    metrics: dict[str, Any]

    @property
    def cluster(self) -> Cluster:
        return Cluster(int(self.meta["hosts"]), int(self.meta["slots"]))

    @property
    def workload(self) -> str:
        """The trace's workload and job count, e.g. ("mpi-locality", 100), from its file name."""
        name = Path(self.meta.get("trace") or "").stem
        return name


def read_runs(root: Path) -> list[StoredRun]:
    """Every run directory under ``root`` (``root`` itself included)."""
    runs = []
    for meta_path in sorted(root.rglob("run.json")):
        d = meta_path.parent
        events = [JobEvent.from_json(json.loads(line)) for line in (d / "events.jsonl").read_text().splitlines() if line]
        runs.append(StoredRun(d, json.loads(meta_path.read_text()), events, json.loads((d / "metrics.json").read_text())))
    if not runs:
        raise ConfigError(f"no runs (run.json) under {root}")
    return runs


def parse_evictions(spec: str) -> EvictionSchedule | None:
    """``none``, or ``every=60,fraction=0.25,grace=60,down=0,seed=0`` (any subset; the rest as the original's)."""
    if spec.strip().lower() in ("none", "off", "no"):
        return None
    fields: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        key, _, value = part.partition("=")
        if key not in ("every", "fraction", "grace", "down", "seed", "start"):
            raise ConfigError(f"--evictions: unknown field {key!r} (every, fraction, grace, down, seed, start)")
        try:
            fields[key] = float(value)
        except ValueError:
            raise ConfigError(f"--evictions: {key} needs a number, got {value!r}") from None
    base = ORIGINAL_EVICTIONS
    return EvictionSchedule(every=fields.get("every", base.every), fraction=fields.get("fraction", base.fraction),
                            grace=fields.get("grace", base.grace), down=fields.get("down", base.down),
                            seed=int(fields.get("seed", base.seed)), start=fields.get("start", base.start))
