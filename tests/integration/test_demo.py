"""The demo (examples/sweep.py, run by scripts/demo) claims only what it measured: its speed-up divides a
timed serial run of the very same simulations by the granny run, never a serial time extrapolated from a
few calls (issue 16)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from granny.cluster import LocalCluster

SWEEP = Path(__file__).resolve().parents[2] / "examples" / "sweep.py"


def run_sweep(cluster: LocalCluster, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRANNY_")}
    env |= {"GRANNY_ADDRESS": cluster.address, "GRANNY_TOKEN": cluster.token, "COLUMNS": "200"}
    proc = subprocess.run([sys.executable, str(SWEEP), *args], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return " ".join(proc.stdout.split())  # rich may wrap a long line


def test_the_speed_up_divides_two_measured_runs_of_the_same_work(cluster: LocalCluster) -> None:
    out = run_sweep(cluster, "--grid", "3", "--reps", "3")  # 27 simulations: more than the 20 once timed
    ran = re.search(r"granny: (\d+) simulations in ([\d.]+)s", out)
    serial = re.search(r"serial: the same (\d+) simulations one after another in this process took ([\d.]+)s "
                       r"\(measured\), so granny was ([\d.]+)x as fast", out)
    assert ran and serial, out
    assert int(ran[1]) == int(serial[1]) == 27
    granny_s, serial_s, speed_up = float(ran[2]), float(serial[2]), float(serial[3])
    # The quotient of the two lines' figures, up to their rounding to 0.01 s (and its own to 0.01).
    rounding = speed_up * (0.005 / granny_s + 0.005 / serial_s) / (1 - 0.005 / granny_s) + 0.005
    assert abs(speed_up - serial_s / granny_s) <= rounding, out
    assert "~" not in out and "serially ~" not in out


def test_no_serial_makes_no_claim(cluster: LocalCluster) -> None:
    out = run_sweep(cluster, "--grid", "2", "--reps", "1", "--no-serial")
    assert "granny: 4 simulations" in out
    assert "serial" not in out and "as fast" not in out and "speed-up" not in out
