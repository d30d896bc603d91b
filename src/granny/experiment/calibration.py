"""The runtime model's fitted parameters (src/granny/sim/calibration/runtime.json, made by
benchmarks/calibrate_runtime.py), loaded into a :class:`granny.sim.RuntimeModel`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..sim import KindModel, RuntimeModel

DEFAULT = Path(__file__).resolve().parents[1] / "sim" / "calibration" / "runtime.json"


def load_model(path: Path | None = None) -> RuntimeModel:
    source = path or DEFAULT
    try:
        data: dict[str, Any] = json.loads(source.read_text())
        kinds = {name: KindModel(float(p["a"]), float(p["b"]), float(p["beta"]), str(p.get("source", "")))
                 for name, p in data["kinds"].items()}
        return RuntimeModel(kinds, {str(k): str(v) for k, v in data.get("aliases", {}).items()})
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"cannot read the runtime calibration {source}: {exc}") from None
