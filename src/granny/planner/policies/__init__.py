"""Placement policies: pure functions from (hosts, request) to a decision."""

from .base import HostView, NeverFits, Placement, PlacementRequest, Policy, Wait
from .binpack import binpack

POLICIES: dict[str, Policy] = {"bin-pack": binpack}

__all__ = ["POLICIES", "HostView", "NeverFits", "Placement", "PlacementRequest", "Policy", "Wait", "binpack"]
