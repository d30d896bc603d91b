"""Delay-tolerant calls run at the lowest CPU priority, so that they never slow latency-sensitive work.

Theory of operation (DFaaS, issue 14: latency-sensitive calls must not wait longer with batch work
around): a slot is the planner's unit, but the cores are the kernel's. A delay-tolerant call spinning
on a core delays every process on the latency-sensitive path that wakes up there - the client, the
planner, the worker, the latency-sensitive call's own granule - by a scheduler time slice. With
``granny planner --batch-nice N``, while a granule runs a delay-tolerant call (``Run.nice``), its main
thread (which runs the call, and whose priority the threads the call starts inherit) runs at nice N:
at 19 the kernel gives it about 1.5 % of a core against any normal process, and all of an otherwise
idle one. With ``--batch-nice idle`` (``Run.nice == NICE_IDLE``) it runs in the kernel's idle class,
SCHED_IDLE: any normal process that wakes up preempts it at once (nice 19 only shortens its share),
and it still gets every cycle nothing else wants. Its risk is starvation under other work on the
host, which the planner bounds (planner/idle.py: only calls with time to spare run idle, and the worker
moves one still running at its raise time back to the normal class, :func:`to_normal`). The idle class
is the default, nice values are a choice (measured in benchmarks/results/dfaas.md and docs/functions.md).

Going back needs the right to raise a priority: from nice N to 0, and from SCHED_IDLE to SCHED_OTHER
(which Linux treats as raising from nice 20). Root has it (CAP_SYS_NICE); another user has it within
its RLIMIT_NICE, which the zygote sets to allow nice 0 (and no higher) before a granule drops its
privileges (:func:`allow_return`; that needs CAP_SYS_RESOURCE where the hard limit is lower, as in some
containers). A granule that could not go back from the idle class does not enter it (:func:`_may_return`):
the default must not cost a fork per call on such hosts. A granule that cannot go back all the same (EPERM)
retires after the call, so the next call starts on a fresh fork at normal priority.
"""

from __future__ import annotations

import contextlib
import os
import resource

from ..config import NICE_IDLE as IDLE


def allow_return() -> None:
    """In a new granule, before it drops privileges: let it raise its priority back to nice 0 (not beyond)."""
    with contextlib.suppress(OSError, ValueError):
        resource.setrlimit(resource.RLIMIT_NICE, (20, 20))  # the limit is 20 - the lowest nice allowed


def enter(nice: int) -> int:
    """Before a call: lower this thread's priority to ``nice`` (0: leave it; ``IDLE``: the idle class).
    Returns the nice to go back to (-1: nothing changed)."""
    if nice <= 0:
        return -1
    try:
        before = os.getpriority(os.PRIO_PROCESS, 0)
        if nice >= IDLE:
            if not _may_return(before):
                return -1  # (it runs at normal priority)
            # Threads the call starts inherit the class. This thread only (pid 0: the caller, on Linux).
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        else:
            os.setpriority(os.PRIO_PROCESS, 0, nice)  # this thread (Linux: nice is per thread)
    except (OSError, AttributeError):  # AttributeError: no SCHED_IDLE on this platform
        return -1
    return before


def leave(before: int) -> bool:
    """After the call: back to the normal class and the nice it had; False if not allowed (the granule
    should retire)."""
    if before < 0:
        return True
    try:
        if os.sched_getscheduler(0) != os.SCHED_OTHER:
            os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
        os.setpriority(os.PRIO_PROCESS, 0, before)
    except OSError:
        return False
    return True


def _may_return(nice: int) -> bool:
    """Whether this granule may leave the idle class for nice ``nice`` again: as root (CAP_SYS_NICE, as a
    proxy), or within its RLIMIT_NICE (Linux counts the idle class as nice 20)."""
    if os.geteuid() == 0:
        return True
    soft, _ = resource.getrlimit(resource.RLIMIT_NICE)
    return soft == resource.RLIM_INFINITY or soft >= 20 - nice


def to_normal(pid: int) -> bool:
    """From outside (the worker, planner/idle.py): every thread of process ``pid`` in the idle class goes
    to the normal class (its nice unchanged). False if not allowed or gone; the call then leaves the idle
    class itself when it ends."""
    try:
        tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        return False
    ok = True
    for tid in tids:
        try:
            if os.sched_getscheduler(tid) == os.SCHED_IDLE:
                os.sched_setscheduler(tid, os.SCHED_OTHER, os.sched_param(0))
        except OSError:  # a thread that ended meanwhile, or not allowed (EPERM)
            ok = False
    return ok
