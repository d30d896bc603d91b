"""A job of the trace while it runs in the simulator: the record the engine and its drivers share (a leaf)."""

from __future__ import annotations

from dataclasses import dataclass

from .trace import Job


@dataclass
class RunningJob:
    job: Job
    req_id: str
    granules: list[str]  # rank -> granule id
    hosts: list[str]  # rank -> host id
    started: float
    end: float
    done: float = 0.0  # fraction of the work done at ``since``
    since: float = 0.0
    version: int = 0  # bumped by each move: end events of an older split are stale
    pace: float = 0.0  # seconds the whole job takes at its current rate (its split, and the contention)
