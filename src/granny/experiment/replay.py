"""``--mode testbed``: bring the namespace testbed up, replay a scaled trace with each scheduler on it
(:mod:`.live`), and simulate the same scaled trace with the testbed-calibrated runtime model, so that
every live run directory also says what the simulator predicted for it.

The testbed is one planner and ``hosts`` workers of ``slots`` slots in network namespaces, every pair
of hosts linked at :data:`.live.LINKS`. It stays up across the schedulers of a sweep (each run sets its
policy and waits for an idle cluster) and is torn down at the end. Needs root.
"""

from __future__ import annotations

import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..sim import Job, RuntimeModel, SimResult, scheduler_named
from ..sim.dfaas import is_call, with_functions
from ..sim.elastic import ElasticTeamSimulator
from ..sim.teams import TeamSimulator
from .calibration import TESTBED, load_model, measured
from .live import LINKS, LIVE_SCHEDULERS, LiveReplay, Scaling, Workload, time_scale
from .loadprobe import Load, LoadProbe
from .metrics import Metrics, compute

DEFAULT_PREFIX = "gxp"
DEFAULT_SUBNET = "10.91.0.0/24"


@dataclass
class LiveOutcome:
    scheduler: str
    live: SimResult
    metrics: Metrics
    sim: SimResult  # the same scaled trace, simulated with the testbed-calibrated model
    sim_metrics: Metrics
    wall_seconds: float
    load: Load | None = None  # the machine's other work during the live run
    solo_metrics: Metrics | None = None  # simulated without the contention model (jobs as if alone)

    @property
    def ratio(self) -> float:
        """Simulated makespan over live makespan."""
        return self.sim_metrics.makespan / self.metrics.makespan if self.metrics.makespan else float("nan")


def scaled(jobs: Sequence[Job], slots: int, model: RuntimeModel | None = None,
           original: RuntimeModel | None = None, scale: float | None = None) -> tuple[Scaling, list[Job]]:
    """The trace for ``slots``-slot hosts: sizes scaled, arrivals by ``scale`` (default: :func:`time_scale`)."""
    if scale is None:
        scale = time_scale(jobs, slots, original or load_model(), model or load_model(TESTBED))
    scaling = Scaling(slots, scale)
    return scaling, scaling.jobs(jobs)


def simulate(jobs: Sequence[Job], scheduler: str, hosts: int, slots: int, model: RuntimeModel,
             host_ids: Sequence[str] | None = None, move_cost: float | None = None,
             team_delay: float | None = None, call_scale: float = 1.0, background: float | None = None) -> SimResult:
    """The scaled trace in the simulator, its OpenMP-style jobs as granny.parallel runs them live
    (their team asked for ``team_delay`` seconds after thread 0 started), each move of a
    granny-migrate job costing ``move_cost`` seconds (both measured by the testbed calibration); under
    granny-elastic their teams grow at forks as the live ones do (:class:`ElasticTeamSimulator`); function
    calls run their seconds x ``call_scale``, as live. ``background``: the other work's runnable processes
    the live run saw, for the contention model, whose move cost at that background (when it has one)
    replaces ``move_cost``."""
    if background is not None and model.contention is not None:
        model = replace(model, contention=replace(model.contention, background=background))
    if model.contention is not None and model.contention.move is not None:
        move_cost = model.contention.move_cost()  # measured beside other work, not on an idle machine
    sched = scheduler_named(scheduler)
    if any(is_call(j) for j in jobs):
        model = with_functions(model, call_scale)
    if move_cost is not None and sched.migrate_every:
        sched = replace(sched, move_cost=move_cost)
    engine = ElasticTeamSimulator if sched.fork_every else TeamSimulator
    return engine(sched, hosts, slots, model, host_ids=host_ids, evictions=None, team_delay=team_delay or 0.0).run(jobs)


def replay(jobs: Sequence[Job], hosts: int, slots: int, schedulers: Sequence[str], workload: Workload | None = None,
           model: RuntimeModel | None = None, prefix: str = DEFAULT_PREFIX, subnet: str = DEFAULT_SUBNET,
           state_dir: Path | None = None, move_cost: float | None = None, team_delay: float | None = None,
           call_scale: float = 1.0, log: Callable[[str], None] | None = None,
           done: Callable[[LiveOutcome], None] | None = None) -> list[LiveOutcome]:
    """Run the (already scaled) ``jobs`` live with each of ``schedulers`` on one testbed, and simulate each;
    ``call_scale``: the scale of the function calls' seconds (the trace's time scale)."""
    from ..testbed import Testbed

    for name in schedulers:
        if name not in LIVE_SCHEDULERS:
            raise ConfigError(f"--mode testbed runs {', '.join(LIVE_SCHEDULERS)}; not {name!r}")
    workload = workload or Workload()
    if model is None:
        model = load_model(TESTBED)
        move_cost = measured("move_cost") if move_cost is None else move_cost
        team_delay = measured("team_delay") if team_delay is None else team_delay
    say = log or (lambda msg: print(f"[replay {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True))
    with tempfile.TemporaryDirectory(prefix="granny-replay-") as tmp:
        tb = Testbed(hosts, slots=slots, prefix=prefix, subnet=subnet, state_dir=state_dir or Path(tmp) / "testbed",
                     heartbeat_timeout=5.0, ready_timeout=120.0,
                     latency=LINKS["latency"], bandwidth=LINKS["bandwidth"])
        tb.up()
        try:
            journal = Path(tb.state.data_dir) / "journal.sqlite"
            outcomes = []
            for name in schedulers:
                say(f"{name}: {len(jobs)} jobs on {hosts} x {slots}")
                started = time.perf_counter()
                driver = LiveReplay(tb.address, tb.token, journal, name, workload, f"{name}-{uuid.uuid4().hex[:6]}",
                                    log=lambda m, n=name: say(f"{n}: {m}"), call_scale=call_scale)
                with LoadProbe(str(tb.state.state_dir)) as probe:
                    live = driver.run(jobs)
                load = probe.result()
                wall = time.perf_counter() - started
                sim = simulate(jobs, name, hosts, slots, model, driver.host_ids, move_cost, team_delay, call_scale,
                               background=load.background)
                solo = None
                if model.contention is not None:
                    alone = simulate(jobs, name, hosts, slots, replace(model, contention=None), driver.host_ids,
                                     move_cost, team_delay, call_scale)
                    solo = compute(alone.events, alone.cluster)
                outcome = LiveOutcome(name, live, compute(live.events, live.cluster), sim,
                                      compute(sim.events, sim.cluster), wall, load, solo)
                say(f"{name}: live makespan {outcome.metrics.makespan:.1f} s, simulated "
                    f"{outcome.sim_metrics.makespan:.1f} s (sim / live {outcome.ratio:.2f}; background "
                    f"{load.background:.1f} runnable, load {load.loadavg[0]:.1f}-{load.loadavg[1]:.1f})")
                outcomes.append(outcome)
                if done is not None:
                    done(outcome)
            return outcomes
        finally:
            tb.down()


def run_meta(outcome: LiveOutcome, scaling: Scaling, workload: Workload) -> dict[str, Any]:
    """What run.json says of a live run beyond what a simulated one says."""
    meta = {"scaling": {**scaling.to_json(), "note": scaling.describe()}, "workload": workload.to_json(),
            "links": LINKS, "sim_makespan": round(outcome.sim_metrics.makespan, 3),
            "sim_model_applies": workload == Workload(),  # the calibration measured these kernels
            "sim_over_live": round(outcome.ratio, 4)}
    if outcome.load is not None:
        meta["load"] = outcome.load.to_json()
    if outcome.solo_metrics is not None:  # the simulator without the contention model, for comparison
        meta["sim_solo_makespan"] = round(outcome.solo_metrics.makespan, 3)
    return meta
