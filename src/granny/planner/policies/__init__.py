"""Placement and migration policies: pure functions from plain data to a decision (see base.py)."""

from .base import (
    ClusterView,
    Decision,
    Freeze,
    GranuleMove,
    HostView,
    MigrationDecision,
    Move,
    NeverFits,
    Placement,
    PlacementRequest,
    Policy,
    RunningApp,
    Stay,
    Wait,
    build_view,
    links,
)
from .binpack import BinPack, binpack
from .compact import Compact
from .spot import Spot

POLICIES: dict[str, Policy] = {p.name: p for p in (binpack, Compact(), Spot())}
DEFAULT_POLICY = binpack.name

__all__ = [
    "DEFAULT_POLICY", "POLICIES", "BinPack", "ClusterView", "Compact", "Decision", "Freeze", "GranuleMove", "HostView",
    "MigrationDecision", "Move", "NeverFits", "Placement", "PlacementRequest", "Policy", "RunningApp", "Spot", "Stay",
    "Wait", "binpack", "build_view", "links",
]
