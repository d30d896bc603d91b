"""Where a request may go, as a client states it: tenant, pinned hosts, and whether it may migrate."""

from __future__ import annotations

from typing import Any, NamedTuple

from .errors import ConfigError


class Placing(NamedTuple):
    """Where a request may go: its tenant, a pinned placement (host, count pairs) and whether it may migrate."""

    tenant: str = ""
    hosts: tuple[tuple[str, int], ...] = ()
    migrate: bool = True
    checkpoint: str = ""  # an MPI world's checkpoints: "N" every N migration points, "Ts" every T seconds
    retries: int = 0  # an idempotent call runs again elsewhere, at most this many times, if its host dies
    delay_tolerance: float = 0.0  # 0: now; t > 0: the result is due within t seconds; < 0 (-1): whenever
    restartable: bool = False  # a delay-tolerant call latency-sensitive work may stop, to run it again later

    def fields(self, n: int) -> dict[str, Any]:
        """The Submit fields for a request of ``n`` granules (ConfigError if the pins do not add up to n)."""
        if self.hosts and sum(c for _, c in self.hosts) != n:
            pins = ",".join(f"{h}:{c}" for h, c in self.hosts)
            raise ConfigError(f"hosts={pins} places {sum(c for _, c in self.hosts)} granule(s), "
                              f"but the request has {n}")
        return {"tenant": self.tenant, "hosts": list(self.hosts), "migrate": self.migrate, "checkpoint": self.checkpoint,
                "retries": self.retries, "delay_tolerance": self.delay_tolerance, "restartable": self.restartable}


def parse_tolerance(raw: object) -> float:
    """A delay tolerance: 0/None (run now), seconds > 0 (a deadline), or any negative number (whenever: -1)."""
    if raw is None:
        return 0.0
    if isinstance(raw, bool) or not isinstance(raw, int | float) or raw != raw or raw in (float("inf"), float("-inf")):
        raise ConfigError(f"delay_tolerance must be 0 (now), seconds > 0 (a deadline) or -1 (whenever), got {raw!r}")
    return -1.0 if raw < 0 else float(raw)


def parse_checkpoint(raw: object, what: str = "checkpoint") -> str:
    """``3`` or ``"3"``: every 3 migration points; ``"10s"``: every 10 seconds; ``None``/``""``/``0``: off.
    Returns the normalised form ("3", "10s" or ""); ConfigError for anything else."""
    if raw is None or raw == "" or raw == 0:
        return ""
    if isinstance(raw, bool) or not isinstance(raw, int | str):
        raise ConfigError(f"{what} must be a number of migration points or seconds like '10s', got {raw!r}")
    text = str(raw).strip()
    try:
        if text.endswith("s"):
            seconds = float(text[:-1])
            if seconds > 0:
                return f"{seconds:g}s"
        elif int(text) > 0:
            return str(int(text))
    except ValueError:
        pass
    raise ConfigError(f"{what} must be a positive number of migration points (3) or seconds ('10s'), got {raw!r}")


NOWHERE_IN_PARTICULAR = Placing()
