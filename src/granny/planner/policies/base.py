"""The policy interface. A policy sees plain data and returns a decision; it does no I/O."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class HostView:
    host_id: str
    slots: int
    free: int  # slots that can take a granule right now
    app_granules: int = 0  # granules of the requesting app already on this host


@dataclass(frozen=True)
class PlacementRequest:
    app_id: str
    n: int


@dataclass(frozen=True)
class Placement:
    hosts: tuple[str, ...]  # host of each granule index


@dataclass(frozen=True)
class Wait:
    reason: str


@dataclass(frozen=True)
class NeverFits:
    reason: str


Decision = Placement | Wait | NeverFits
Policy = Callable[[Sequence[HostView], PlacementRequest], Decision]
