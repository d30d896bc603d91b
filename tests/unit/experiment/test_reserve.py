"""The reserve (bin-pack-reserve) in the simulator and the harness, and the links-over-batch column."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from granny.errors import ConfigError
from granny.experiment import run
from granny.experiment.paper import HARNESS_RESERVE
from granny.experiment.sweep import Row, table
from granny.sim import Job, KindModel, RuntimeModel

FLAT = RuntimeModel({"short": KindModel(10, 0, 0), "long": KindModel(100, 0, 0)})
# 2 hosts x 4. Job 0 (3, long) and job 1 (3, short) get a host each; job 2 (2 ranks) then fits only as 1 + 1.
TRACE = [Job(0, "long", 3, 0), Job(1, "short", 3, 1), Job(2, "long", 2, 2)]


def split_of(outcome: object, req: str) -> list[int]:
    hosts = dict(outcome.result.decisions)[req]  # type: ignore[attr-defined]
    return sorted(hosts.count(h) for h in set(hosts))


def test_the_reserve_holds_a_job_that_would_be_split_until_it_fits_on_one_host(tmp_path: Path) -> None:
    plain = run(TRACE, 2, 4, "granny", model=FLAT)
    assert split_of(plain, "job2") == [1, 1]
    kept = run(TRACE, 2, 4, "granny", model=FLAT, reserve=0.25, out=tmp_path / "r")  # keeps 2 of 8 slots free
    assert split_of(kept, "job2") == [2]
    starts = {e.job_id: e.t for e in kept.result.events if e.what == "start"}
    assert starts == {0: 0, 1: 1, 2: 11}  # job 2 waited for job 1's host; job 1 (one host) was never held
    assert kept.metrics.links_vs_optimum is None and plain.metrics.links_vs_optimum == float("inf")
    assert json.loads((tmp_path / "r" / "run.json").read_text())["policy"] == "bin-pack-reserve"


def test_the_reserve_is_for_schedulers_that_bin_pack() -> None:
    with pytest.raises(ConfigError, match="reserve"):
        run(TRACE, 2, 4, "slurm", model=FLAT, reserve=0.05)
    with pytest.raises(ConfigError, match="reserve"):
        run(TRACE, 2, 4, "granny", model=FLAT, reserve=1.0)
    assert HARNESS_RESERVE == {("granny-migrate", "mpi-locality"): 0.05}


def test_the_table_normalises_links_to_the_batch_run_as_the_original_did() -> None:
    jobs = [Job(i, "mpi-locality", 2 + (3 * i) % 11, 2.0 * i) for i in range(12)]
    rows = [Row("mpi-locality", 3, 12, name, run(jobs, 3, 8, name), None) for name in ("batch", "slurm")]
    batch, slurm = (r.ours.metrics for r in rows)
    assert batch.link_seconds > 0 and slurm.link_seconds > 0
    text = table(rows)
    assert "| links / batch |" in text.splitlines()[0]
    assert text.splitlines()[2].endswith("| 1.00 |")
    assert text.splitlines()[3].endswith(f"| {slurm.link_seconds / batch.link_seconds:.2f} |")
    assert table(rows[1:]).splitlines()[2].endswith("| - |")  # no batch run: no ratio
