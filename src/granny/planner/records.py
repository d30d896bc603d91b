"""The planner's actions (what the state machine asks its driver to do) and its records.

Plain data, shared by :mod:`granny.planner.state` (which owns the records) and its drivers (the
server, the simulator, tests). No I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..errors import ErrorKind
from .lifecycle import (
    GRANULE_TRANSITIONS,
    TASK_FINAL,
    AppKind,
    AppState,
    GranuleEvent,
    GranuleState,
    TaskState,
    transition,
)
from .policies.base import GranuleMove


# --- actions --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Dispatch:
    granule_id: str
    req_id: str
    index: int
    prefetched: bool = False  # queued behind the granule's running task (it may yet be Skipped)
    thaw: int = 0  # a frozen world's generation: the granule resumes the rank from its stored state
    fused: bool = False  # a delay-tolerant async call, run beside others on the granule's event loop (fusion.py)


@dataclass(frozen=True)
class Fail:
    """The planner itself ends a task with an error (the granule never reported)."""

    req_id: str
    index: int
    error_kind: ErrorKind
    message: str
    host_id: str = ""


@dataclass(frozen=True)
class Kill:
    host_id: str
    granule_id: str
    reason: str
    signal: str = ""  # "STOP" / "CONT": pause or continue the granule instead (planner/pausing.py); "NORMAL": planner/idle.py


@dataclass(frozen=True)
class Skip:
    """Tell a granule not to start a prefetched task that was cancelled."""

    granule_id: str
    req_id: str
    index: int


@dataclass(frozen=True)
class SpawnGranules:
    host_id: str
    count: int


@dataclass(frozen=True)
class AppChanged:
    app_id: str
    state: AppState


@dataclass(frozen=True)
class Revoke:
    """Ask the owner of a lease (an elastic parallel team) to give back ``count`` of its granules."""

    req_id: str
    count: int


@dataclass(frozen=True)
class ForgetHost:
    """The host's registration ended (declared dead): tell its worker so, and that it must register again."""

    host_id: str
    reason: str


@dataclass(frozen=True)
class StopWorker:
    """The host was evicted (see eviction.py): tell its worker to stop, its granules with it, and not to register again."""

    host_id: str
    reason: str


@dataclass(frozen=True)
class RankAddress:
    """Where one rank of an MPI world listens (what its MpiJoin said)."""

    host_id: str
    pid: int
    ip: str
    port: int


@dataclass(frozen=True)
class WorldReady:
    """Every rank of an MPI world joined: send the table to each rank's granule (see rendezvous.py)."""

    req_id: str
    granule_ids: tuple[str, ...]  # rank -> granule
    ranks: tuple[RankAddress, ...]
    gen: int = 0  # the world's generation (see migration.py)


@dataclass(frozen=True)
class JoinRefused:
    """An MpiJoin that does not come from the granule running that rank: answer it with this error."""

    granule_id: str
    req_id: str
    reason: str
    gen: int = 0


@dataclass(frozen=True)
class HoldFrames:
    """A granule of a host that is not registered (yet): keep its frames until its host registers."""

    granule_id: str


@dataclass(frozen=True)
class ReplayFrames:
    """The granule's host registered and the granule is known now: handle the frames it sent meanwhile."""

    granule_id: str


@dataclass
class Pruned:
    """Finished work the state forgot (see retention.py): drop what the driver keeps of it, and its journal rows."""

    requests: list[tuple[str, int]] = field(default_factory=list)  # req_id, granules (0: journal only)
    apps: list[tuple[str, str, str, str]] = field(default_factory=list)  # app_id, kind, name, final state

    def __bool__(self) -> bool:
        return bool(self.requests or self.apps)


@dataclass(frozen=True)
class GraceEnded:
    """The restart grace is over (see grace.py): reports of requests nobody resubmitted are dropped."""


# --- migration (see migration.py) ---
@dataclass(frozen=True)
class StoreState:
    """Fetch a rank's state from ``ip:port`` (with ``key``) into the planner's durable store, under
    ``slot``: "g<gen>" for a freeze into generation gen, "c<n>" for checkpoint n."""

    req_id: str
    index: int
    slot: str
    ip: str
    port: int
    key: bytes


@dataclass(frozen=True)
class DropState:
    """A world's stored state is no longer needed: delete ``slot`` of it ("": all of it)."""

    req_id: str
    slot: str = ""


@dataclass(frozen=True)
class MigrateAnswer:
    """Answer rank 0's MigrateAsk: ``moves`` into generation ``gen`` (no moves: stay)."""

    granule_id: str
    req_id: str
    gen: int
    moves: tuple[GranuleMove, ...]
    reason: str
    freeze: bool = False  # every rank saves its state and ends; the world waits for room (see migration.py)
    checkpoint: int = 0  # every rank saves its state as this checkpoint, and goes on


@dataclass(frozen=True)
class ResumeRank:
    """Send the reserved granule the Run that pulls a moved rank's state from ``ip:port``."""

    granule_id: str
    req_id: str
    index: int
    gen: int
    ip: str
    port: int
    key: bytes


@dataclass(frozen=True)
class Hint:
    """Tell rank 0's granule that its world would gain from moving (it asks at its next point)."""

    granule_id: str
    req_id: str


@dataclass(frozen=True)
class MigrationEvent:
    """Something to journal and count: ``kind`` is decided, moved, refused or failed."""

    app_id: str
    req_id: str
    kind: str
    text: str
    data: dict[str, Any] = field(default_factory=dict, hash=False)



Action = (Dispatch | Fail | Kill | Skip | SpawnGranules | AppChanged | Revoke | ForgetHost | StopWorker | WorldReady
          | JoinRefused | HoldFrames | ReplayFrames | GraceEnded | Pruned | MigrateAnswer | ResumeRank | Hint
          | MigrationEvent | StoreState | DropState)


# --- records ----------------------------------------------------------------------------------
# Watching (see capacity.py): a host or granule that belongs to a PlannerState has ``_watch``, the set
# of host ids whose placement view is stale. Setting any of its fields adds its host there, so the
# state rebuilds only those hosts' views. ``Granule.tasks`` must be assigned, not changed in place
# (or use :meth:`Granule.drop`); appending a prefetched task is the exception, as it changes no view.
@dataclass
class Granule:
    granule_id: str
    host_id: str
    state: GranuleState = GranuleState.IDLE
    tasks: list[tuple[str, int]] = field(default_factory=list)  # [running, prefetched...]
    connected: bool = True
    waiting: bool = False  # blocked on its own sub-calls: its slot is lent out
    _watch: ClassVar[set[str] | None] = None  # set per instance when its host joins a state

    def __setattr__(self, name: str, value: Any) -> None:
        self.__dict__[name] = value
        watch = self._watch
        if watch is not None:
            watch.add(self.host_id)

    @property
    def task(self) -> tuple[str, int] | None:
        """The task running now (the first assigned one)."""
        return self.tasks[0] if self.tasks else None

    def to(self, event: GranuleEvent) -> None:
        self.state = transition(GRANULE_TRANSITIONS, self.state, event, f"granule {self.granule_id}")

    def drop(self, key: tuple[str, int]) -> None:
        """``tasks.remove(key)``, seen by a watching state."""
        self.tasks.remove(key)
        if self._watch is not None:
            self._watch.add(self.host_id)


class Granules(dict[str, Granule]):
    """A host's granules: one added, removed or cleared marks the host's view stale (see above)."""

    def __init__(self, host: Host, items: dict[str, Granule]) -> None:
        super().__init__(items)
        self.host = host

    def __setitem__(self, key: str, granule: Granule) -> None:
        super().__setitem__(key, granule)
        object.__setattr__(granule, "_watch", self.host._watch)
        self.host.touch()

    def __delitem__(self, key: str) -> None:
        super().__delitem__(key)
        self.host.touch()

    def pop(self, key: str, *default: Any) -> Any:
        self.host.touch()
        return super().pop(key, *default)

    def clear(self) -> None:
        super().clear()
        self.host.touch()


@dataclass
class Host:
    host_id: str
    slots: int
    last_seen: float
    alive: bool = True
    granules: dict[str, Granule] = field(default_factory=dict)
    incarnation: int = 1  # how many times this host registered from scratch (after being declared dead)
    boot: str = ""  # the identity of its worker process ("" from a worker that does not say)

    spawning: int = 0  # spare granules asked of the worker and not connected yet
    _watch: ClassVar[set[str] | None] = None  # see Granule

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "granules" and not isinstance(value, Granules):
            value = Granules(self, value)
        object.__setattr__(self, name, value)
        if name != "last_seen" and self._watch is not None:  # heartbeats change no view
            self._watch.add(self.host_id)

    def watch(self, dirty: set[str] | None) -> None:
        """Report changes to ``dirty`` (None: stop), this host's granules' included."""
        object.__setattr__(self, "_watch", dirty)
        for g in self.granules.values():
            object.__setattr__(g, "_watch", dirty)
        self.touch()

    def touch(self) -> None:
        if self._watch is not None:
            self._watch.add(self.host_id)

    def busy(self) -> int:
        """Slots in use: busy granules, except those waiting on their own sub-calls."""
        return sum(1 for g in self.granules.values() if g.state is GranuleState.BUSY and not g.waiting)

    def idle(self) -> list[Granule]:
        return [g for g in self.granules.values() if g.state is GranuleState.IDLE and g.connected]


@dataclass
class Task:
    state: TaskState = TaskState.QUEUED
    granule_id: str = ""
    host_id: str = ""


@dataclass
class Request:
    req_id: str
    app_id: str
    n: int
    tasks: list[Task]
    prefetch: bool = False  # a short call that may wait behind another on a busy granule
    gang: bool = False  # an MPI world: one failed task ends the others, as mpirun does
    lease: bool = False  # an elastic team's members: they may be asked to give their slots back
    tenant: str = ""  # who the request runs for (the compact policy keeps tenants apart)
    hosts: tuple[tuple[str, int], ...] = ()  # a pinned placement of all n granules, host -> count
    migrate: bool = True  # may a migration decision move it once it runs
    frozen: int = 0  # an MPI world frozen at this generation (its ranks' state is stored): it thaws when placed
    thaw_from: str = ""  # the store slot it thaws from when not its freeze's own ("c<n>": a checkpoint)
    checkpoint: int = 0  # its latest complete checkpoint (0: none): a dead host restarts it from there
    retries: int = 0  # runs left of an idempotent call whose host dies (Submit.retries)
    reruns: int = 0  # how many times it was run again after its host died
    restartable: bool = False  # a delay-tolerant call that may be stopped for latency-sensitive work (batch.py)

    def final(self) -> bool:
        return all(t.state in TASK_FINAL for t in self.tasks)


@dataclass
class App:
    app_id: str
    kind: AppKind
    name: str = ""
    state: AppState = AppState.RUNNING
    requests: list[str] = field(default_factory=list)
    pruned: dict[str, int] = field(default_factory=dict)  # task state -> count, of requests forgotten
    tenant: str = ""  # the tenant of its first request
    migrate: bool = True  # False once any of its requests said so
