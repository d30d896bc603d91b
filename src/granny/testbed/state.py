"""The state file: what `up` built, so that `down`, `status`, `set` and the scheduler find it.

Writers (up, set, the scheduler, down) hold an exclusive flock on ``<state dir>/lock`` while they
read-modify-write ``state.json``; the file is replaced atomically, so readers need no lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import ENV_TESTBED_DIR, env
from .procs import Proc
from .topology import Topology

DEFAULT_STATE_DIR = Path(env(ENV_TESTBED_DIR))


@dataclass
class State:
    prefix: str
    net: str
    state_dir: str
    topology: Topology
    granny: bool = True
    address: str = ""
    token: str = ""
    data_dir: str = ""
    started_at: float = 0.0  # wall clock when `up` finished; the schedule counts from here
    schedule_done: int = 0  # how many schedule events have been applied
    procs: list[Proc] = field(default_factory=list)

    def proc(self, name: str) -> Proc | None:
        return next((p for p in self.procs if p.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "prefix": self.prefix, "net": self.net, "state_dir": self.state_dir, "granny": self.granny,
            "address": self.address, "token": self.token, "data_dir": self.data_dir,
            "started_at": self.started_at, "schedule_done": self.schedule_done,
            "topology": self.topology.to_dict(), "procs": [p.to_dict() for p in self.procs],
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> State:
        return cls(
            prefix=raw["prefix"], net=raw["net"], state_dir=raw["state_dir"], granny=raw["granny"],
            address=raw["address"], token=raw["token"], data_dir=raw["data_dir"],
            started_at=raw["started_at"], schedule_done=raw["schedule_done"],
            topology=Topology.from_dict(raw["topology"]),
            procs=[Proc(name=p["name"], pid=p["pid"], log=p["log"], ns=p["ns"]) for p in raw["procs"]],
        )


def state_path(state_dir: str | Path) -> Path:
    return Path(state_dir) / "state.json"


def load(state_dir: str | Path) -> State | None:
    try:
        raw = json.loads(state_path(state_dir).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError):
        return None  # a torn or foreign file: treat as no testbed; `down` cleans by prefix anyway
    try:
        return State.from_dict(raw)
    except (KeyError, TypeError, ValueError):
        return None


def save(state: State) -> None:
    path = state_path(state.state_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(state.to_dict(), indent=1))
    os.chmod(tmp, 0o600)  # it holds the API token
    os.replace(tmp, path)


def remove(state_dir: str | Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        state_path(state_dir).unlink()


@contextlib.contextmanager
def locked(state_dir: str | Path) -> Iterator[None]:
    Path(state_dir).mkdir(parents=True, exist_ok=True)
    fd = os.open(Path(state_dir) / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
