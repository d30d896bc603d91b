"""A granule's "finishing" mark, shared with its zygote, so that a pause that lands after a call's user code
returned does not hold back the call's end (planner/pausing.py pauses, worker/pausing.py signals).

Why: a pause (SIGSTOP) is asynchronous. One that landed after the granule had handed its result to the
client's lane but before it sent its Done left the client with its result and the planner without the
call's end (its Done, journal row, runtime estimate, met count and slot) until the pause ended, which may
be the call's latest resume time, minutes later. Stopping a call whose work is done frees no core anyway.

How: the zygote maps one shared page per granule before it forks it (anonymous, MAP_SHARED: only the two
of them hold it; a granule unmaps the pages of its siblings that it inherited). The granule writes 1 there
once its call's user code returned, before it hands the result over, and 0 once its Done is sent: two
stores a call, no syscall. The zygote, the granule's parent, is told by the kernel when a child has
stopped (SIGCHLD; ``waitpid(WUNTRACED)``); it reads the page and, if the mark is set, continues the
granule at once (SIGCONT). A stop that lands before or while the user code runs holds, as before.

What the planner sees: nothing new, and it needs nothing new. The pause it ordered does not hold; the
granule sends its Done right away, and that Done ends the call as any Done does (``batch.ended``
continues a paused call's granule: a CONT that finds it running). The latency-sensitive call placed in
the lent slot shares a core for the moment the granule needs to send its Done. A stop that lands
between the user code's return and the mark holds: then neither the client nor the planner has the
result, and the call is simply paused, under the deadline guard, like any other.

The zygote only ever continues a granule this way, never stops one: so a mistake can only make a pause
not hold, never leave a granule stopped that nobody will continue. That mistake needs the zygote to be
descheduled between reading a mark and sending its CONT while the planner resumes the granule, which
ends its call, gets another and is paused in that one's user code: that call then runs on unpaused.
"""

from __future__ import annotations

import mmap
import os
import signal
import time

from ..config import ENV_TEST_HOLD_DONE, env

_page: mmap.mmap | None = None  # this granule's page (None in a process that is not a forked granule)
_hold = ""  # tests only: the file that makes calls hold before their Done (see hold)
_conts = 0  # SIGCONTs seen (counted only when _hold is set)
_conts_at_mark = 0


def new_page() -> mmap.mmap:
    """A page for the next granule (in the zygote, before the fork)."""
    return mmap.mmap(-1, mmap.PAGESIZE)  # anonymous and MAP_SHARED: the child writes what the zygote reads


def adopt(page: mmap.mmap, siblings: list[mmap.mmap]) -> None:
    """In a just-forked granule: keep its own page, unmap its siblings' (they are none of its business)."""
    global _page, _hold
    for other in siblings:
        other.close()
    _page = page
    _hold = env(ENV_TEST_HOLD_DONE)
    if _hold:
        signal.signal(signal.SIGCONT, _continued)


def marked(page: mmap.mmap | None) -> bool:
    """In the zygote: the stopped granule of ``page`` had finished its call's user code."""
    return page is not None and not page.closed and page[0] == 1


def finishing() -> None:
    """The call's user code returned: a pause that lands from here on until ``done`` does not hold."""
    global _conts_at_mark
    if _page is not None:
        _page[0] = 1
    _conts_at_mark = _conts


def done() -> None:
    """The call's Done is sent."""
    if _page is not None:
        _page[0] = 0


def hold() -> None:
    """Tests only (``GRANNY_TEST_HOLD_DONE``): between the hand-over and the Done, wait while the hold file
    exists until this granule was continued (SIGCONT) since the mark: a pause had landed here and did not
    hold. The wait is a poll: the test it serves must see the granule in exactly this window."""
    while _hold and _conts == _conts_at_mark and os.path.exists(_hold):
        time.sleep(0.005)


def _continued(signum: int, frame: object) -> None:
    global _conts
    _conts += 1
