"""Process plumbing shared by the worker, the zygote and the embedded cluster."""

from __future__ import annotations

import ctypes
import os
import signal

_PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGKILL) -> None:
    """Ask the kernel to send ``sig`` when our parent exits, then close the race where it already has."""
    parent = os.getppid()
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the pipe watchdogs still apply
        return
    if os.getppid() != parent or parent == 1:
        os.kill(os.getpid(), sig)


def describe_status(status: int) -> tuple[str, int]:
    """Turn a waitpid status into (cause, exit code) for humans."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = f"signal {sig}"
        hint = " (the kernel's out-of-memory killer, or a cancel)" if sig == signal.SIGKILL else ""
        hint = " (segmentation fault)" if sig == signal.SIGSEGV else hint
        return f"killed by {name}{hint}", 128 + sig
    code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else -1
    return f"exited with code {code}", code
