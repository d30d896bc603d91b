"""The runtime model's fitted parameters, loaded into a :class:`granny.sim.RuntimeModel`:
src/granny/sim/calibration/runtime.json (the original's jobs, made by benchmarks/calibrate_runtime.py)
and testbed.json (the live replay's kernels on our testbed, made by benchmarks/calibrate_testbed.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..sim import KindModel, RuntimeModel
from ..sim.contention import Contention

DEFAULT = Path(__file__).resolve().parents[1] / "sim" / "calibration" / "runtime.json"
# The live replay's kernels on the namespace testbed (benchmarks/calibrate_testbed.py).
TESTBED = DEFAULT.with_name("testbed.json")


def load_model(path: Path | None = None) -> RuntimeModel:
    source = path or DEFAULT
    try:
        data: dict[str, Any] = json.loads(source.read_text())
        kinds = {name: KindModel(float(p["a"]), float(p["b"]), float(p["beta"]), str(p.get("source", "")))
                 for name, p in data["kinds"].items()}
        return RuntimeModel(kinds, {str(k): str(v) for k, v in data.get("aliases", {}).items()},
                            contention(data.get("contention"), source))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"cannot read the runtime calibration {source}: {exc}") from None


def contention(entry: dict[str, Any] | None, source: Path) -> Contention | None:
    """The ``contention`` entry of a calibration file (testbed.json, once ``calibrate_testbed.py --contention``
    measured it), or None: on a real cluster each host has its own cores."""
    if entry is None:
        return None
    try:
        free, move = entry.get("free"), entry.get("move")
        return Contention(int(entry["cores"]), {str(k): float(v) for k, v in entry.get("share", {}).items()},
                          release=float(entry.get("release", 0.0)), per_slot=float(entry.get("per_slot", 1.0)),
                          free=None if free is None else float(free), source=str(entry.get("source", "")),
                          move=None if move is None else (float(move[0]), float(move[1])))
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"bad contention entry in {source}: {exc}") from None


def measured(key: str, path: Path | None = None) -> float | None:
    """A cost the testbed calibration measured (testbed.json), if it did: ``move_cost`` (seconds a move
    adds to a job) or ``team_delay`` (seconds from an OpenMP-style job's thread 0 to its team's request)."""
    try:
        value = json.loads((path or TESTBED).read_text()).get(key)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read the runtime calibration {path or TESTBED}: {exc}") from None
    return None if value is None else float(value)
