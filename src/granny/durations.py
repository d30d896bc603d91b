"""Durations as people write them (``90s``, ``15m``, ``1h``): parsing and printing. Pure: no I/O.

Split from :mod:`.config` (which reads the environment) so that pure modules such as the planner's
retention rules can print a duration without importing ``os`` (see the purity contract in
pyproject.toml).
"""

from __future__ import annotations

import math

from .errors import ConfigError

_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(raw: str | float, what: str = "duration") -> float:
    """Parse ``90``, ``90s``, ``15m``, ``1h``, ``2d`` or ``500ms`` into seconds (positive, finite)."""
    if isinstance(raw, int | float):
        value = float(raw)
    else:
        text = raw.strip().lower()
        scale = 1.0
        for suffix in sorted(_DURATION_UNITS, key=len, reverse=True):
            if text.endswith(suffix):
                text, scale = text[: -len(suffix)], _DURATION_UNITS[suffix]
                break
        try:
            value = float(text) * scale
        except ValueError:
            raise ConfigError(f"{what} {raw!r} is not a duration (try 1h, 30m, 90s)") from None
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{what} must be a positive duration, got {raw!r}")
    return value


def format_duration(seconds: float) -> str:
    """The shortest exact spelling ``parse_duration`` reads back: 3600 -> ``1h``, 90 -> ``90s``."""
    for suffix in ("d", "h", "m"):
        unit = _DURATION_UNITS[suffix]
        if seconds >= unit and (seconds / unit).is_integer():
            return f"{int(seconds / unit)}{suffix}"
    return f"{seconds:g}s"
