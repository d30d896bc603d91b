"""One frozen Config, built from environment variables and flags and passed explicitly.

Every port, timeout and size default of granny lives here, so nothing else hard-codes one.
"""

from __future__ import annotations

import ipaddress
import math
import os
import secrets
from pathlib import Path
from typing import Any

from .errors import ConfigError

DEFAULT_RPC_PORT = 7400
DEFAULT_HTTP_PORT = 7401
MAX_FRAME_BYTES = 1 << 31  # a frame larger than 2 GiB is refused before any allocation
MAX_HEADER_BYTES = 1 << 20

ENV_ADDRESS = "GRANNY_ADDRESS"
ENV_TOKEN = "GRANNY_TOKEN"
ENV_SECRET = "GRANNY_SECRET"
ENV_SLOTS = "GRANNY_SLOTS"
ENV_DATA_DIR = "GRANNY_DATA_DIR"
ENV_HEARTBEAT_TIMEOUT = "GRANNY_HEARTBEAT_TIMEOUT"


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{name} must be positive (a finite number of seconds), got {raw!r}")
    return value


def env_slots(default: int | None = None) -> int:
    raw = os.environ.get(ENV_SLOTS)
    if raw is None or raw == "":
        return default if default is not None else (os.cpu_count() or 1)
    return parse_slots(raw, ENV_SLOTS)


def parse_slots(raw: str | int, what: str = "--slots") -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{what}={raw!r} is not a whole number") from None
    if value < 1:
        raise ConfigError(f"{what} must be at least 1, got {value}")
    return value


def parse_address(raw: str, what: str = "address") -> tuple[str, int]:
    """Parse ``host:port`` (the scheme ``tcp://`` is accepted and dropped)."""
    text = raw.strip()
    if text.startswith("tcp://"):
        text = text[len("tcp://") :]
    host, sep, port = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]  # [IPv6]:PORT
    elif ":" in host and _is_ip(text):
        raise ConfigError(f"{what} {raw!r} has no port: write [{text}]:PORT")
    if not sep or not host:
        raise ConfigError(f"{what} {raw!r} must look like HOST:PORT")
    try:
        number = int(port)
    except ValueError:
        raise ConfigError(f"{what} {raw!r} has a port that is not a number") from None
    if not 0 <= number < 65536:
        raise ConfigError(f"{what} {raw!r} has a port out of range")
    return host, number


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def parse_bytes(raw: str | int | None) -> int:
    """Parse a memory size such as ``512MiB``, ``2G`` or ``1048576``; 0 or None means no limit."""
    if raw is None:
        return 0
    if isinstance(raw, int):
        if raw < 0:
            raise ConfigError(f"memory size {raw} must not be negative")
        return raw
    text = raw.strip().lower().replace(" ", "")
    units = {"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "k": 1000, "m": 10**6, "g": 10**9,
             "kb": 1000, "mb": 10**6, "gb": 10**9, "b": 1}
    for suffix in sorted(units, key=len, reverse=True):
        if text.endswith(suffix):
            number, scale = text[: -len(suffix)], units[suffix]
            break
    else:
        number, scale = text, 1
    try:
        value = float(number) * scale
    except ValueError:
        raise ConfigError(f"memory size {raw!r} is not understood (try 512MiB)") from None
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"memory size {raw!r} must be a finite, non-negative size (try 512MiB)")
    return int(value)


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def write_private(path: Path, text: str) -> None:
    """Write a credential readable by its owner only (mode 0600 from the start, never wider)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(path, 0o600)


def read_or_create_credential(path: Path) -> str:
    if path.exists():
        value = path.read_text().strip()
        if value:
            return value
    value = new_secret()
    write_private(path, value)
    return value


class Config:
    """Settings shared by the planner, workers and clients (immutable; ``with_`` makes a changed copy).

    A plain class rather than a dataclass: ``dataclasses`` (and the ``inspect`` it imports) would add
    ~8 ms to the start of every ``granny`` command."""

    __slots__ = ("data_dir", "heartbeat_interval", "heartbeat_timeout", "max_frame_bytes", "reconnect_timeout",
                 "restart_grace")
    _FIELDS = __slots__

    data_dir: Path
    heartbeat_interval: float
    heartbeat_timeout: float
    # After a planner restart, wait this long for granules to report what they are running (and what
    # they finished while it was away) before dispatching journaled work again, so work is not run
    # twice. It must cover the peers' reconnect back-off (granules 0.5 s, workers 1 s at most).
    restart_grace: float
    reconnect_timeout: float
    max_frame_bytes: int

    def __init__(self, data_dir: Path | None = None, heartbeat_interval: float = 0.5,
                 heartbeat_timeout: float | None = None, restart_grace: float = 3.0,
                 reconnect_timeout: float = 30.0, max_frame_bytes: int = MAX_FRAME_BYTES) -> None:
        values = {
            "data_dir": data_dir if data_dir is not None else Path(os.environ.get(ENV_DATA_DIR, ".granny")),
            "heartbeat_interval": heartbeat_interval,
            "heartbeat_timeout": heartbeat_timeout if heartbeat_timeout is not None
            else _env_float(ENV_HEARTBEAT_TIMEOUT, 5.0),
            "restart_grace": restart_grace, "reconnect_timeout": reconnect_timeout, "max_frame_bytes": max_frame_bytes,
        }
        for name, value in values.items():
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Config is immutable: use config.with_({name}=...)")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Config) and all(getattr(self, f) == getattr(other, f) for f in self._FIELDS)

    def __hash__(self) -> int:
        return hash(tuple(getattr(self, f) for f in self._FIELDS))

    def __repr__(self) -> str:
        return "Config(" + ", ".join(f"{f}={getattr(self, f)!r}" for f in self._FIELDS) + ")"

    def with_(self, **changes: Any) -> Config:
        unknown = set(changes) - set(self._FIELDS)
        if unknown:
            raise TypeError(f"Config has no field(s) {sorted(unknown)}")
        values = {f: getattr(self, f) for f in self._FIELDS} | changes
        return Config(**values)

    @property
    def secret_path(self) -> Path:
        return self.data_dir / "secret"

    @property
    def token_path(self) -> Path:
        return self.data_dir / "token"

    @property
    def journal_path(self) -> Path:
        return self.data_dir / "journal.sqlite"

    @property
    def planner_info_path(self) -> Path:
        return self.data_dir / "planner.json"
