"""The zygote continues a granule that stopped after its call's user code returned (worker/finishing.py), and
leaves one that stopped in its user code stopped: real forked processes, stopped by a real SIGSTOP."""

from __future__ import annotations

import mmap
import os
import signal

from granny.worker import finishing
from granny.worker.zygote import _reap

from ...polling import wait_for


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as fh:
        return fh.read().rsplit(")", 1)[1].split()[0]


def _child(page: mmap.mmap, mark: bool) -> int:
    pid = os.fork()
    if pid == 0:  # the granule: its call's user code returned (or not), then the pause lands
        try:
            finishing.adopt(page, [])
            if mark:
                finishing.finishing()
            os.kill(os.getpid(), signal.SIGSTOP)
            finishing.done()
        finally:
            os._exit(7)
    return pid


def test_a_stop_after_the_user_code_returned_is_undone_and_one_inside_it_holds() -> None:
    pages: dict[int, mmap.mmap] = {}
    children: dict[int, str] = {}
    events: list[dict[str, object]] = []
    try:
        for gid, mark in (("finishing", True), ("running", False)):
            page = finishing.new_page()
            pid = _child(page, mark)
            children[pid], pages[pid] = gid, page
        by_gid = {gid: pid for pid, gid in children.items()}
        for pid in children:
            wait_for(lambda pid=pid: _state(pid) == "T", timeout=30, what="the child stopped")
        _reap(children, pages, events.append)
        wait_for(lambda: (_reap(children, pages, events.append), events)[1], timeout=30, what="the continued child's exit")
        assert [e["exit"] for e in events] == ["finishing"]
        assert os.WEXITSTATUS(int(str(events[0]["status"]))) == 7  # it went on from where it stopped
        assert by_gid["finishing"] not in pages  # its page was let go with it
        assert _state(by_gid["running"]) == "T"  # stopped inside its user code: the pause holds
    finally:
        for pid in list(children):
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
