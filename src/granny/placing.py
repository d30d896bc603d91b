"""Where a request may go, as a client states it: tenant, pinned hosts, and whether it may migrate."""

from __future__ import annotations

from typing import Any, NamedTuple

from .errors import ConfigError


class Placing(NamedTuple):
    """Where a request may go: its tenant, a pinned placement (host, count pairs) and whether it may migrate."""

    tenant: str = ""
    hosts: tuple[tuple[str, int], ...] = ()
    migrate: bool = True

    def fields(self, n: int) -> dict[str, Any]:
        """The Submit fields for a request of ``n`` granules (ConfigError if the pins do not add up to n)."""
        if self.hosts and sum(c for _, c in self.hosts) != n:
            pins = ",".join(f"{h}:{c}" for h, c in self.hosts)
            raise ConfigError(f"hosts={pins} places {sum(c for _, c in self.hosts)} granule(s), "
                              f"but the request has {n}")
        return {"tenant": self.tenant, "hosts": list(self.hosts), "migrate": self.migrate}


NOWHERE_IN_PARTICULAR = Placing()
