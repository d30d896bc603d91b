"""The emulated network as data: endpoints, link settings, and the schedule of changes.

A testbed has endpoints: the hosts (``h1``..``hN`` by default) and ``planner`` (the root namespace,
where the planner and the user's client run).  Two kinds of link carry settings (:class:`LinkSpec`):

* a **pair link** between two endpoints (the path through the core).  Its settings come from the
  exact ``links`` entry for that pair, else from a wildcard entry (``between: [h1, "*"]``), else from
  ``defaults`` (the CLI flags), field by field;
* an optional **access link** per endpoint (its cable to the switch, the ``access`` section).

A packet from ``a`` to ``b`` sees latency and jitter of access(a) + pair(a, b) + access(b), loss
compounded the same way, and is dropped if any of them is cut.  Bandwidth is enforced per pair
(``pair.bandwidth``) and per access link (the sum of everything to or from that endpoint).
All settings are one-way: ``latency: 5ms`` gives a ping RTT of about 10 ms.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

from ..errors import TestbedError
from .evictions import EvictionPlan
from .units import fmt_duration, fmt_loss, fmt_rate, parse_duration, parse_loss, parse_rate

PLANNER = "planner"
ANY = "*"
_NAME = re.compile(r"[a-z][a-z0-9]{0,7}")


@dataclass(frozen=True)
class LinkSpec:
    """Settings of one link; None means "not set here, inherit"."""

    latency: float | None = None  # seconds, one way
    jitter: float | None = None  # seconds, uniform in [-jitter, +jitter], never reordering a pair
    bandwidth: int | None = None  # bit/s; 0 = unlimited
    loss: float | None = None  # probability, per packet and direction
    cut: bool | None = None

    def over(self, base: LinkSpec) -> LinkSpec:
        """These settings, with the unset ones taken from base."""
        return LinkSpec(**{f.name: _first(getattr(self, f.name), getattr(base, f.name)) for f in fields(self)})

    def is_empty(self) -> bool:
        return all(getattr(self, f.name) is None for f in fields(self))

    @classmethod
    def parse(cls, raw: dict[str, Any], what: str) -> LinkSpec:
        unknown = set(raw) - {f.name for f in fields(cls)}
        if unknown:
            raise TestbedError(f"{what}: unknown setting(s) {sorted(unknown)}")
        cut = raw.get("cut")
        if cut is not None and not isinstance(cut, bool):
            raise TestbedError(f"{what}: cut must be true or false, got {cut!r}")
        return cls(
            latency=None if raw.get("latency") is None else parse_duration(raw["latency"], f"{what} latency"),
            jitter=None if raw.get("jitter") is None else parse_duration(raw["jitter"], f"{what} jitter"),
            bandwidth=None if raw.get("bandwidth") is None else parse_rate(raw["bandwidth"], f"{what} bandwidth"),
            loss=None if raw.get("loss") is None else parse_loss(raw["loss"], f"{what} loss"),
            cut=cut,
        )

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    def describe(self) -> dict[str, str]:
        """Human units, for status tables."""
        return {
            "latency": fmt_duration(self.latency or 0.0),
            "jitter": fmt_duration(self.jitter or 0.0),
            "bandwidth": fmt_rate(self.bandwidth),
            "loss": fmt_loss(self.loss or 0.0),
            "cut": "CUT" if self.cut else "",
        }


def _first(a: Any, b: Any) -> Any:
    return b if a is None else a


ZERO = LinkSpec(latency=0.0, jitter=0.0, bandwidth=None, loss=0.0, cut=False)


@dataclass(frozen=True)
class Route:
    """What one direction of traffic between two endpoints experiences in the delay stage."""

    latency: float
    jitter: float
    loss: float
    cut: bool


@dataclass(frozen=True)
class Event:
    """At ``at`` seconds after ``up``, set ``spec`` on a pair link (two names), an access link (one
    name), or the defaults (no name)."""

    at: float
    target: tuple[str, ...]
    spec: LinkSpec


@dataclass
class Topology:
    hosts: list[str]
    slots: int = 1
    defaults: LinkSpec = field(default_factory=LinkSpec)
    access: dict[str, LinkSpec] = field(default_factory=dict)
    links: dict[tuple[str, str], LinkSpec] = field(default_factory=dict)
    schedule: list[Event] = field(default_factory=list)
    evictions: EvictionPlan | None = None  # scheduled evictions (see evictions.py and evictor.py)

    @property
    def endpoints(self) -> list[str]:
        return [PLANNER, *self.hosts]

    def pair(self, a: str, b: str) -> LinkSpec:
        """The resolved settings of the pair link between a and b (every field set).  Precedence:
        the exact pair, then "a *", then "b *" (a before b alphabetically), then "* *", then defaults."""
        a, b = _key(a, b)
        spec = self.links.get((a, b), LinkSpec())
        for wild in (_key(a, ANY), _key(b, ANY), (ANY, ANY)):
            spec = spec.over(self.links.get(wild, LinkSpec()))
        return _unlimited(spec.over(self.defaults).over(ZERO))

    def access_of(self, name: str) -> LinkSpec:
        return _unlimited(self.access.get(name, LinkSpec()).over(ZERO))

    def path(self, src: str, dst: str) -> Route:
        parts = (self.access_of(src), self.pair(src, dst), self.access_of(dst))
        keep = 1.0
        for p in parts:
            keep *= 1.0 - (p.loss or 0.0)
        return Route(
            latency=sum(p.latency or 0.0 for p in parts),
            jitter=sum(p.jitter or 0.0 for p in parts),
            loss=1.0 - keep,
            cut=any(bool(p.cut) for p in parts),
        )

    def apply(self, event: Event) -> None:
        """Change the live settings (a schedule event, or `granny testbed set`)."""
        if not event.target:
            self.defaults = event.spec.over(self.defaults)
        elif len(event.target) == 1:
            name = event.target[0]
            self.access[name] = event.spec.over(self.access.get(name, LinkSpec()))
        else:
            key = _key(*event.target)
            self.links[key] = event.spec.over(self.links.get(key, LinkSpec()))

    def check_target(self, target: tuple[str, ...], what: str) -> None:
        known = {*self.endpoints, ANY}
        for name in target:
            if name not in known:
                raise TestbedError(f"{what}: unknown endpoint {name!r} (known: {', '.join(self.endpoints)})")

    def to_dict(self) -> dict[str, Any]:
        return {
            "hosts": self.hosts,
            "slots": self.slots,
            "defaults": self.defaults.to_dict(),
            "access": {k: v.to_dict() for k, v in self.access.items()},
            "links": [{"between": list(k), **v.to_dict()} for k, v in self.links.items()],
            "schedule": [{"at": e.at, "target": list(e.target), **e.spec.to_dict()} for e in self.schedule],
            "evictions": self.evictions.to_dict() if self.evictions is not None else None,
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Topology:
        """The inverse of to_dict (the state file), values already in base units."""
        return cls(
            hosts=list(raw["hosts"]),
            slots=int(raw["slots"]),
            defaults=LinkSpec(**raw["defaults"]),
            access={k: LinkSpec(**v) for k, v in raw["access"].items()},
            links={_key(*e.pop("between")): LinkSpec(**e) for e in (dict(x) for x in raw["links"])},
            schedule=[
                Event(at=e.pop("at"), target=tuple(e.pop("target")), spec=LinkSpec(**e))
                for e in (dict(x) for x in raw["schedule"])
            ],
            evictions=EvictionPlan.from_dict(raw["evictions"]) if raw.get("evictions") else None,
        )


def _unlimited(spec: LinkSpec) -> LinkSpec:
    return spec if spec.bandwidth else replace(spec, bandwidth=None)


def _key(a: str, b: str) -> tuple[str, str]:
    return (a, b) if a <= b else (b, a)


def host_names(count: int) -> list[str]:
    if not 1 <= count <= 200:
        raise TestbedError(f"--hosts must be between 1 and 200, got {count}")
    return [f"h{i}" for i in range(1, count + 1)]


def check_names(names: list[str]) -> None:
    for name in names:
        if not _NAME.fullmatch(name) or name == PLANNER:
            raise TestbedError(f"host name {name!r} must be 1-8 lowercase letters/digits and not 'planner'")
    if len(set(names)) != len(names):
        raise TestbedError(f"duplicate host names in {names}")
    if not 1 <= len(names) <= 200:
        raise TestbedError(f"a testbed has 1 to 200 hosts, got {len(names)}")


def load_topology(path: str | Path) -> Topology:
    """Read a YAML topology file (see examples/topology.yaml)."""
    try:
        raw = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise TestbedError(f"cannot read topology {path}: {exc}") from None
    if not isinstance(raw, dict):
        raise TestbedError(f"{path}: expected a mapping at the top level")
    unknown = set(raw) - {"hosts", "slots", "defaults", "access", "links", "schedule", "evictions"}
    if unknown:
        raise TestbedError(f"{path}: unknown section(s) {sorted(unknown)}")
    hosts_raw = raw.get("hosts", 2)
    hosts = host_names(hosts_raw) if isinstance(hosts_raw, int) else [str(h) for h in hosts_raw]
    check_names(hosts)
    topo = Topology(hosts=hosts, slots=int(raw.get("slots", 1)),
                    defaults=LinkSpec.parse(raw.get("defaults") or {}, f"{path} defaults"))
    for name, spec in (raw.get("access") or {}).items():
        topo.check_target((str(name),), f"{path} access")
        topo.access[str(name)] = LinkSpec.parse(spec or {}, f"{path} access {name}")
    for i, entry in enumerate(raw.get("links") or []):
        entry = dict(entry)
        between = tuple(str(x) for x in entry.pop("between", ()))
        if len(between) != 2:
            raise TestbedError(f"{path} links[{i}]: 'between' needs two endpoint names")
        topo.check_target(between, f"{path} links[{i}]")
        topo.links[_key(*between)] = LinkSpec.parse(entry, f"{path} links[{i}]")
    for i, entry in enumerate(raw.get("schedule") or []):
        topo.schedule.append(_parse_event(topo, dict(entry), f"{path} schedule[{i}]"))
    topo.schedule.sort(key=lambda e: e.at)
    if raw.get("evictions") is not None:
        topo.evictions = EvictionPlan.parse(raw["evictions"], f"{path} evictions")
    return topo


def _parse_event(topo: Topology, entry: dict[str, Any], what: str) -> Event:
    if "at" not in entry:
        raise TestbedError(f"{what}: missing 'at' (e.g. at: 30s)")
    at = parse_duration(entry.pop("at"), f"{what} at")
    link, host = entry.pop("link", None), entry.pop("host", None)
    if link is not None and host is not None:
        raise TestbedError(f"{what}: give either 'link: [a, b]' or 'host: a', not both")
    target: tuple[str, ...] = ()
    if link is not None:
        target = tuple(str(x) for x in link)
        if len(target) != 2:
            raise TestbedError(f"{what}: 'link' needs two endpoint names")
    elif host is not None:
        target = (str(host),)
    topo.check_target(target, what)
    spec = LinkSpec.parse(entry, what)
    if spec.is_empty():
        raise TestbedError(f"{what}: nothing to change (set latency, jitter, bandwidth, loss or cut)")
    return Event(at=at, target=target, spec=spec)
