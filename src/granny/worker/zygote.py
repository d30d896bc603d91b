"""The zygote: a single-threaded process that has imported numpy and granny and forks granules.

It speaks line-delimited JSON with its worker over stdin/stdout: ``{"spawn": GID}``, ``{"kill": GID}``
in; ``{"ready": PID}``, ``{"spawned": GID, "pid": PID}``, ``{"exit": GID, "status": STATUS}`` out.
Forking from here is what makes a granule start in about 2 ms instead of 100 ms, and it is safe
because the zygote never starts a thread. Children are reaped on SIGCHLD through a wakeup pipe.
"""

from __future__ import annotations

import json
import os
import select
import signal
import sys


def main() -> None:
    from .procutil import die_with_parent

    die_with_parent()
    # Warm imports: everything a granule needs before it runs user code.
    import cloudpickle  # noqa: F401
    import numpy  # noqa: F401

    from . import granule  # noqa: F401

    cmd_in = sys.stdin.buffer
    out_fd = sys.stdout.fileno()
    rfd, wfd = os.pipe()
    os.set_blocking(wfd, False)
    signal.set_wakeup_fd(wfd)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    children: dict[int, str] = {}

    def emit(obj: dict[str, object]) -> None:
        os.write(out_fd, (json.dumps(obj) + "\n").encode())

    emit({"ready": os.getpid()})
    buf = b""
    warmed = False
    while True:
        # Once idle (the first granules forked), import the MPI and parallel layers, so later granules
        # start with them loaded; doing it before the first fork would delay the cluster's start.
        readable, _, _ = select.select([cmd_in.fileno(), rfd], [], [], None if warmed else 0.05)
        if not readable and not warmed:
            from .warm import warm_imports

            warm_imports()
            warmed = True
            continue
        if rfd in readable:
            os.read(rfd, 4096)
            _reap(children, emit)
        if cmd_in.fileno() in readable:
            chunk = os.read(cmd_in.fileno(), 65536)
            if not chunk:  # the worker is gone: take the granules with us
                for pid in children:
                    _kill(pid)
                for pid in children:
                    remove_inboxes_of(pid)
                os._exit(0)
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                cmd = json.loads(line)
                if "spawn" in cmd:
                    pid = _fork_granule(cmd["spawn"], cmd.get("unix", ""), [cmd_in.fileno(), out_fd, rfd, wfd])
                    children[pid] = cmd["spawn"]
                    emit({"spawned": cmd["spawn"], "pid": pid})
                elif "kill" in cmd:
                    for pid, gid in children.items():
                        if gid == cmd["kill"]:
                            _kill(pid)


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _reap(children: dict[int, str], emit: object) -> None:
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        gid = children.pop(pid, None)
        remove_inboxes_of(pid)  # MPI shared memory of a rank that died before its world's first barrier
        if gid is not None:
            emit({"exit": gid, "pid": pid, "status": status})  # type: ignore[operator]


def remove_inboxes_of(pid: int) -> None:
    from ..mpi.shm import remove_inboxes_of as remove

    remove(pid)


def _fork_granule(granule_id: str, unix_path: str, close_fds: list[int]) -> int:
    pid = os.fork()
    if pid:
        return pid
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for fd in close_fds:
            os.close(fd)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(2, 1)  # C-level prints go to the worker's log, never into the zygote protocol
        from .granule import granule_main
        from .procutil import die_with_parent

        die_with_parent()
        os.environ["GRANNY_PLANNER_UNIX"] = unix_path
        os.environ["GRANNY_GRANULE_ID"] = granule_id
        granule_main(granule_id)
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        os._exit(1)
    return 0  # not reached


if __name__ == "__main__":
    main()
