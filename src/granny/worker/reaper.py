"""Remove shared-memory files whose owner process is gone.

Every granny segment in /dev/shm ends in ``-p{pid}`` of the process that created it (MPI inboxes,
team boards, shared arrays). The worker sweeps them on each heartbeat, so a client or granule killed
with ``kill -9`` leaks nothing for longer than a heartbeat interval.
"""

from __future__ import annotations

import glob
import os
import re

SHM_DIR = "/dev/shm"
_OWNER = re.compile(r"-p(\d+)$")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep(shm_dir: str = SHM_DIR) -> list[str]:
    """Unlink granny segments of dead owners; returns what was removed."""
    removed = []
    for path in glob.glob(f"{shm_dir}/granny-*"):
        m = _OWNER.search(path)
        if m is None or _alive(int(m.group(1))):
            continue
        try:
            os.unlink(path)
            removed.append(path)
        except FileNotFoundError:
            pass
    return removed
