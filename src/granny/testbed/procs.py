"""Start the testbed's daemons detached, wait for their READY line, find and stop them again.

Every process we start gets the environment variable GRANNY_TESTBED=<state dir>, its own session
(so it outlives ``granny testbed up`` and a Ctrl-C there), and its stdout/stderr in a log file,
which is where we look for the ``READY `` line.  ``down`` finds processes three ways: the pids in
the state file, every process inside our namespaces (``ip netns pids``), and any root-namespace
process whose environment carries the marker (after a crashed ``up`` there is no state file).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from ..config import ENV_TESTBED
from ..errors import TestbedError

MARK = ENV_TESTBED


@dataclass
class Proc:
    name: str
    pid: int
    log: str
    ns: str | None = None

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "pid": self.pid, "log": self.log, "ns": self.ns}


def spawn(name: str, argv: list[str], log: Path, mark: str, ns: str | None = None) -> Proc:
    """Start argv (inside network namespace ns if given), detached, logging to log.

    Known by its pid alone (:func:`alive` reaps it), so no Popen object: one collected while its process
    runs, as a detached one does, is reported as a leak."""
    log.parent.mkdir(parents=True, exist_ok=True)
    full = ["ip", "netns", "exec", ns, *argv] if ns else argv
    env = {**os.environ, MARK: mark, "PYTHONUNBUFFERED": "1"}
    with open(log, "ab") as out:
        pid = os.posix_spawnp(full[0], full, env, setsid=True, file_actions=[
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_DUP2, out.fileno(), 1),
            (os.POSIX_SPAWN_DUP2, out.fileno(), 2)])
    return Proc(name=name, pid=pid, log=str(log), ns=ns)


def tail(path: str | Path, lines: int = 15) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def wait_ready(procs: list[Proc], timeout: float) -> dict[str, str]:
    """Wait until every proc has printed a line starting with READY; returns name -> that line."""
    deadline = time.monotonic() + timeout
    ready: dict[str, str] = {}
    while True:
        for p in procs:
            if p.name in ready:
                continue
            line = _ready_line(p.log)
            if line is not None:
                ready[p.name] = line
            elif not alive(p.pid):
                raise TestbedError(f"{p.name} exited before it was ready; its log {p.log} ends:\n{tail(p.log)}")
        if len(ready) == len(procs):
            return ready
        if time.monotonic() > deadline:
            late = [p for p in procs if p.name not in ready]
            raise TestbedError(f"not ready after {timeout:.0f}s: {', '.join(p.name for p in late)}; "
                               f"{late[0].log} ends:\n{tail(late[0].log)}")
        time.sleep(0.01)


def _ready_line(log: str) -> str | None:
    try:
        with open(log, "rb") as f:
            for raw in f:
                if raw.startswith(b"READY "):
                    return raw.decode(errors="replace").strip()
    except OSError:
        pass
    return None


def alive(pid: int) -> bool:
    """True if pid runs (a zombie child of ours counts as gone, and is reaped)."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    except ChildProcessError:
        pass
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in (b"Z", b"X")


def marked(mark: str) -> list[int]:
    """Root-namespace processes started for the testbed at state dir `mark` (not ourselves)."""
    needle = f"\0{MARK}={mark}\0".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                if needle in b"\0" + f.read() + b"\0":
                    found.append(int(entry))
        except OSError:
            continue
    return found


def stop(pids: list[int], grace: float = 0.8) -> None:
    """SIGTERM all, wait up to `grace` seconds, then SIGKILL the survivors and wait for them."""
    pids = [p for p in dict.fromkeys(pids) if p != os.getpid()]
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 2.0)):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while True:
            pids = [p for p in pids if alive(p)]
            if not pids or time.monotonic() > deadline:
                break
            time.sleep(0.01)
        if not pids:
            return


def signal_pid(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        raise TestbedError(f"process {pid} is gone; run `granny testbed down` and `up` again") from None
