"""The cluster evaluation: replay job traces with a named scheduler, compute metrics, draw figures.

    from granny.experiment import run
    outcome = run(Path("trace_mpi-locality_100_8.csv"), hosts=32, slots=8, scheduler="granny", out=Path("r"))
    outcome.metrics.makespan
"""

from .calibration import load_model
from .metrics import Metrics, compute, series
from .run import RunOutcome, load_trace, read_runs, run
from .sweep import sweep, table

__all__ = ["Metrics", "RunOutcome", "compute", "load_model", "load_trace", "read_runs", "run", "series", "sweep", "table"]
