"""What happened to each job of a run, in time order: the record metrics are computed from.

A simulated run writes it (:mod:`.engine`); a live run will write the same records from the
planner's journal and events, so that :mod:`granny.experiment.metrics` reads both alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

Counts = tuple[tuple[str, int], ...]  # (host_id, granules) pairs, sorted by host id

KINDS = ("submit", "start", "end", "fail", "move", "freeze", "thaw", "evicted", "resize")


@dataclass(frozen=True)
class JobEvent:
    t: float  # seconds from the start of the run
    what: str  # one of KINDS
    job_id: int
    size: int
    counts: Counts = ()  # start / move / resize: the job's granules per host from then on
    kind: str = ""  # the job's kind (the trace's App column)
    detail: str = ""  # fail, evicted: why

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"t": self.t, "what": self.what, "job": self.job_id, "size": self.size}
        if self.counts:
            out["counts"] = [list(c) for c in self.counts]
        if self.kind:
            out["kind"] = self.kind
        if self.detail:
            out["detail"] = self.detail
        return out

    @staticmethod
    def from_json(d: dict[str, Any]) -> JobEvent:
        return JobEvent(float(d["t"]), str(d["what"]), int(d["job"]), int(d["size"]),
                        tuple((str(h), int(c)) for h, c in d.get("counts", [])), str(d.get("kind", "")),
                        str(d.get("detail", "")))


@dataclass(frozen=True)
class Cluster:
    """The cluster a run used: ``hosts`` hosts of ``slots`` slots."""

    hosts: int
    slots: int

    @property
    def capacity(self) -> int:
        return self.hosts * self.slots
