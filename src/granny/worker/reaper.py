"""Remove the shared-memory files this worker's granules left behind when they died.

Every granny segment in /dev/shm ends in ``-p{pid}`` of the process that created it (MPI inboxes,
team boards, shared arrays); one made under a worker (by a granule, or a process a granule started)
ends in ``-w{tag}-p{pid}``, where ``tag`` is the worker's (``config.shm_owner_suffix``). The worker
sweeps on each heartbeat and removes only segments with its own tag whose creator is gone, so a
granule killed with ``kill -9`` leaks nothing for longer than a heartbeat interval, while the
segments of another worker on the same machine (the namespace testbed, two ``granny up``), of a
client, or of an unrelated program whose file merely looks like ours are never touched.
"""

from __future__ import annotations

import os
import re

from ..config import ENV_SHM_OWNER, env

SHM_DIR = "/dev/shm"
_OWNED = re.compile(r"^granny-.+-w(?P<tag>[0-9A-Za-z]+)-p(?P<pid>\d+)$")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep(tag: str | None = None, shm_dir: str = SHM_DIR) -> list[str]:
    """Unlink the segments tagged ``tag`` (default: this process's worker tag) whose creator is dead.

    Returns what was removed. Without a tag (a process that is not a worker) it removes nothing."""
    tag = env(ENV_SHM_OWNER) if tag is None else tag
    if not tag:
        return []
    removed = []
    for name in os.listdir(shm_dir):
        m = _OWNED.match(name)
        if m is None or m["tag"] != tag or _alive(int(m["pid"])):
            continue
        try:
            os.unlink(os.path.join(shm_dir, name))
            removed.append(name)
        except FileNotFoundError:
            pass
    return removed
