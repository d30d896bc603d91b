"""The identity a granule process holds: who it is, and the credential that proves it.

Set once when a granule starts, and read by ``granny.connect()`` inside a function (chaining). The
credential lives only here, never in ``os.environ``: a function that returns its environment, or a
subprocess it starts, does not carry it. Code running in the granule's own process can still read
it (it is that granule's key); what bounds the damage is what the planner lets it do, which is to
act as this granule, for the app of the task it runs (docs/security.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class GranuleIdentity:
    planner: str  # HOST:PORT of the planner this granule belongs to
    host_id: str
    granule_id: str
    unix: str = ""  # the planner's local socket, when it is reachable from here
    credential: bytes = field(default=b"", repr=False)


_current: list[GranuleIdentity] = []


def set_current(identity: GranuleIdentity) -> None:
    _current[:] = [identity]


def current() -> GranuleIdentity | None:
    """This process's granule identity, or None outside a granule."""
    return _current[0] if _current else None
