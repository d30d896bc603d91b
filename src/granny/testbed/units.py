"""Parse and print the units of link settings: durations ("5ms"), rates ("100mbit") and loss ("0.1%")."""

from __future__ import annotations

import re

from ..errors import ConfigError

_NUM = r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*"

_DURATION = {"": 1.0, "s": 1.0, "sec": 1.0, "ms": 1e-3, "msec": 1e-3, "us": 1e-6, "usec": 1e-6, "ns": 1e-9,
             "m": 60.0, "min": 60.0}
# tc's convention: "bit" units are bits per second, "bps" units are BYTES per second.
_RATE = {"bit": 1, "kbit": 10**3, "mbit": 10**6, "gbit": 10**9, "tbit": 10**12,
         "bps": 8, "kbps": 8 * 10**3, "mbps": 8 * 10**6, "gbps": 8 * 10**9}


def parse_duration(raw: str | float | int, what: str = "duration") -> float:
    """Seconds from "5ms", "1.5s", "250us", or a bare number of seconds."""
    if isinstance(raw, bool):
        raise ConfigError(f"{what}: expected a duration like 5ms, got {raw!r}")
    if isinstance(raw, int | float):
        value = float(raw)
    else:
        m = re.fullmatch(_NUM + r"([a-zA-Z]*)\s*", raw)
        if not m or m.group(2).lower() not in _DURATION:
            raise ConfigError(f"{what}: expected a duration like 5ms or 1.5s, got {raw!r}")
        value = float(m.group(1)) * _DURATION[m.group(2).lower()]
    if value < 0:
        raise ConfigError(f"{what} must not be negative, got {raw!r}")
    return value


def parse_rate(raw: str | float | int, what: str = "bandwidth") -> int:
    """Bits per second from "100mbit", "1gbit", "10mbps" (bytes, as in tc), or a bare number of bit/s.
    "unlimited" (or 0) gives 0, which means no limit (overriding a limit set elsewhere)."""
    if raw in (0, "0", "unlimited", "none"):
        return 0
    if isinstance(raw, bool):
        raise ConfigError(f"{what}: expected a rate like 100mbit, got {raw!r}")
    if isinstance(raw, int | float):
        value = float(raw)
    else:
        m = re.fullmatch(_NUM + r"([a-zA-Z/]*)\s*", raw)
        unit = m.group(2).lower().replace("/s", "") if m else ""
        unit = {"": "bit", "k": "kbit", "m": "mbit", "g": "gbit"}.get(unit, unit)
        if not m or unit not in _RATE:
            raise ConfigError(f"{what}: expected a rate like 100mbit or 1gbit, got {raw!r}")
        value = float(m.group(1)) * _RATE[unit]
    if value < 8000:
        raise ConfigError(f"{what} must be at least 8kbit, got {raw!r}")
    return int(value)


def parse_loss(raw: str | float | int, what: str = "loss") -> float:
    """A probability in [0, 1] from "0.1%" or a bare fraction (0.001)."""
    if isinstance(raw, bool):
        raise ConfigError(f"{what}: expected a loss like 0.1%, got {raw!r}")
    if isinstance(raw, int | float):
        value = float(raw)
    else:
        m = re.fullmatch(_NUM + r"(%?)\s*", raw)
        if not m:
            raise ConfigError(f"{what}: expected a loss like 0.1% or 0.001, got {raw!r}")
        value = float(m.group(1)) / (100.0 if m.group(2) else 1.0)
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"{what} must be between 0% and 100%, got {raw!r}")
    return value


def fmt_duration(seconds: float) -> str:
    if seconds == 0:
        return "0"
    if seconds >= 1:
        return f"{seconds:g}s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.4g}ms"
    return f"{seconds * 1e6:.4g}us"


def fmt_rate(bps: float | None) -> str:
    if bps is None:
        return "-"
    for unit, scale in (("gbit", 1e9), ("mbit", 1e6), ("kbit", 1e3)):
        if bps >= scale:
            return f"{bps / scale:.4g}{unit}"
    return f"{bps:.0f}bit"


def fmt_loss(p: float) -> str:
    return "0" if p == 0 else f"{p * 100:.4g}%"
