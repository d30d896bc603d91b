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
from .binpack import RESERVE, BinPack, binpack
from .compact import Compact
from .firstfit import FirstFit
from .spot import Spot
from .wholehosts import WholeHosts

POLICIES: dict[str, Policy] = {p.name: p for p in (binpack, Compact(), Spot(), Spot(late=True), FirstFit(), WholeHosts(),
                                                   BinPack(reserve=RESERVE))}
DEFAULT_POLICY = binpack.name

__all__ = [
    "DEFAULT_POLICY", "POLICIES", "BinPack", "ClusterView", "Compact", "Decision", "FirstFit", "Freeze", "GranuleMove",
    "HostView",
    "MigrationDecision", "Move", "NeverFits", "Placement", "PlacementRequest", "Policy", "RunningApp", "Spot", "Stay",
    "Wait", "WholeHosts", "binpack", "build_view", "links",
]
