"""The zygote: a single-threaded process that has imported numpy and granny and forks granules.

Commands come in over stdin (:mod:`.zygote_pipe`: ``{"spawn": GID, "unix": PATH}`` with the granule's
credential, ``{"kill": GID}``); events go out as JSON lines: ``{"ready": PID}``,
``{"spawned": GID, "pid": PID}``, ``{"exit": GID, "status": STATUS}``. The zygote never holds the
cluster secret; it passes each credential to its granule and zeroes its own copy (see zygote_pipe).
With ``--uid/--gid`` each granule becomes that user before it runs anything (:mod:`.granule_user`).
Forking from here is what makes a granule start in about 2 ms instead of 100 ms, and it is safe
because the zygote never starts a thread. Children are reaped on SIGCHLD through a wakeup pipe; a child
that stopped (a pause) is continued at once if its call's user code had returned (:mod:`.finishing`).
"""

from __future__ import annotations

import argparse
import json
import mmap
import os
import select
import signal
import sys

from ..config import ENV_GRANULE_ID
from . import finishing
from .granule_user import GranuleUser, from_ids
from .zygote_pipe import read_command


def main() -> None:
    from .procutil import die_with_parent

    die_with_parent()
    opts = argparse.ArgumentParser(prog="granny-zygote")
    opts.add_argument("--uid", type=int, default=None)
    opts.add_argument("--gid", type=int, default=None)
    args = opts.parse_args()
    user = from_ids(args.uid, args.gid if args.gid is not None else args.uid) if args.uid is not None else None
    # Warm imports: everything a granule needs before it runs user code.
    import cloudpickle  # noqa: F401
    import numpy  # noqa: F401

    from . import granule  # noqa: F401

    cmd_fd = sys.stdin.fileno()
    credential = bytearray(64)
    out_fd = sys.stdout.fileno()
    rfd, wfd = os.pipe()
    os.set_blocking(wfd, False)
    signal.set_wakeup_fd(wfd)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    children: dict[int, str] = {}
    pages: dict[int, mmap.mmap] = {}  # each granule's finishing mark (finishing.py)

    def emit(obj: dict[str, object]) -> None:
        os.write(out_fd, (json.dumps(obj) + "\n").encode())

    emit({"ready": os.getpid()})
    warmed = False
    while True:
        # Once idle (the first granules forked), import the MPI and parallel layers, so later granules
        # start with them loaded; doing it before the first fork would delay the cluster's start.
        readable, _, _ = select.select([cmd_fd, rfd], [], [], None if warmed else 0.05)
        if not readable and not warmed:
            from .warm import warm_imports

            warm_imports()
            warmed = True
            continue
        if rfd in readable:
            os.read(rfd, 4096)
            _reap(children, pages, emit)
        if cmd_fd in readable:
            got = read_command(cmd_fd, credential)
            if got is None:  # the worker is gone: take the granules with us
                for pid in children:
                    _kill(pid)
                for pid in children:
                    remove_inboxes_of(pid)
                os._exit(0)
            cmd, cred_len = got
            if "spawn" in cmd:
                page = finishing.new_page()
                try:
                    pid = _fork_granule(cmd["spawn"], cmd.get("unix", ""), credential, cred_len, user,
                                        [cmd_fd, out_fd, rfd, wfd], page, list(pages.values()))
                finally:
                    credential[:] = bytes(len(credential))  # the child has its own copy now
                children[pid], pages[pid] = cmd["spawn"], page
                emit({"spawned": cmd["spawn"], "pid": pid})
            elif "kill" in cmd:
                for pid, gid in children.items():
                    if gid == cmd["kill"]:
                        _kill(pid)
            elif "signal" in cmd:  # pause or continue a granule (planner/pausing.py)
                sig = signal.SIGSTOP if cmd.get("sig") == "STOP" else signal.SIGCONT
                for pid, gid in children.items():
                    if gid == cmd["signal"]:
                        _kill(pid, sig)


def _kill(pid: int, sig: int = signal.SIGKILL) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _reap(children: dict[int, str], pages: dict[int, mmap.mmap], emit: object) -> None:
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG | os.WUNTRACED)
        except ChildProcessError:
            return
        if pid == 0:
            return
        if os.WIFSTOPPED(status):  # paused (planner/pausing.py): not if its call's user code had returned
            if finishing.marked(pages.get(pid)):
                _kill(pid, signal.SIGCONT)
            continue
        gid = children.pop(pid, None)
        page = pages.pop(pid, None)
        if page is not None:
            page.close()
        remove_inboxes_of(pid)  # MPI shared memory of a rank that died before its world's first barrier
        if gid is not None:
            emit({"exit": gid, "pid": pid, "status": status})  # type: ignore[operator]


def remove_inboxes_of(pid: int) -> None:
    from ..mpi.shm import remove_inboxes_of as remove

    remove(pid)


def _fork_granule(granule_id: str, unix_path: str, credential: bytearray, cred_len: int, user: GranuleUser | None,
                  close_fds: list[int], page: mmap.mmap, siblings: list[mmap.mmap]) -> int:
    pid = os.fork()
    if pid:
        return pid
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for fd in close_fds:
            os.close(fd)
        finishing.adopt(page, siblings)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(2, 1)  # C-level prints go to the worker's log, never into the zygote protocol
        key = bytes(credential[:cred_len])
        credential[:] = bytes(len(credential))
        from .niceness import allow_return

        allow_return()  # while still privileged: a granule may go back to nice 0 after a delay-tolerant call
        if user is not None:
            from .granule_user import drop_to

            drop_to(user)  # before anything else: the parent-death signal below does not survive it
        from .granule import granule_main
        from .procutil import die_with_parent

        die_with_parent()
        os.environ[ENV_GRANULE_ID] = granule_id
        granule_main(granule_id, key, unix_path)
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        os._exit(1)
    return 0  # not reached


if __name__ == "__main__":
    main()
