"""One exception hierarchy for granny.

    GrannyError
    ├── ConfigError            bad flag, env var or argument value
    ├── ProtocolError          malformed, oversized or unexpected frame
    │   └── AuthError          wrong secret or token, or a peer that failed the handshake
    ├── ClusterError           the cluster cannot do what was asked
    │   ├── NeverFitsError     a request larger than the whole cluster's capacity
    │   ├── HostDiedError      the host running a granule stopped sending heartbeats
    │   │   └── HostEvictedError  the host was taken back at the end of its eviction notice
    │   ├── ConnectionLostError  the planner could not be reached again in time
    │   └── ConflictError      a name that is already taken (a registered function, say)
    │   └── PrunedError        finished work older than the planner's --retain (also a KeyError)
    ├── TaskError              a granule did not produce a result
    │   ├── RemoteError        the function raised and its exception could not be rebuilt here
    │   ├── GranuleCrashedError  the granule process died (exit code, signal, out of memory)
    │   ├── ResultSerializationError  the return value could not be pickled
    │   └── CancelledError     the task was cancelled
    ├── MpiError               an MPI call failed (mpi4py's MPI.Exception), with its MPI error class
    │   └── PeerLostError      another rank of the world vanished (a consequence, not a cause)
    ├── InvalidTransitionError an illegal (state, event) pair in a lifecycle table
    └── TestbedError           a testbed could not be built, changed or torn down

    NotImplementedMpi          an MPI call granny lacks: a NotImplementedError and an AttributeError, as
                               mpi4py code expects, so outside GrannyError
"""

from __future__ import annotations

from enum import StrEnum


class GrannyError(Exception):
    """Base of every error granny raises on purpose."""


class ConfigError(GrannyError, ValueError):
    pass


class ProtocolError(GrannyError):
    pass


class AuthError(ProtocolError):
    pass


class ClusterError(GrannyError):
    pass


class NeverFitsError(ClusterError):
    pass


class HostDiedError(ClusterError):
    pass


class HostEvictedError(HostDiedError):
    """The granule's host was evicted (a spot VM taken back) while it still ran there."""


class ConnectionLostError(ClusterError):
    pass


class ConflictError(ClusterError):
    pass
class PrunedError(ClusterError, KeyError):
    """The app or call finished more than ``--retain`` ago and the planner pruned it.

    Also a KeyError, so code that looks apps and calls up by id treats it as "not found"."""

    def __str__(self) -> str:  # KeyError's would quote the message
        return str(self.args[0]) if self.args else "pruned"


class TaskError(GrannyError):
    pass


class DeadlineError(TaskError):
    """A delay-tolerant call's deadline cannot be met: refused when it was submitted (see docs/functions.md)."""


class RemoteError(TaskError):
    """The remote function raised; ``remote_traceback`` holds the formatted remote traceback."""

    def __init__(self, message: str, remote_traceback: str = "", exc_type: str = "") -> None:
        super().__init__(message)
        self.remote_traceback = remote_traceback
        self.exc_type = exc_type


class GranuleCrashedError(TaskError):
    pass


class ResultSerializationError(TaskError):
    pass


class CancelledError(TaskError):
    pass


class InvalidTransitionError(GrannyError):
    pass


class MpiError(GrannyError):
    """An MPI call failed. ``error_class`` is the MPI error class (mpi4py's ``Get_error_class``)."""

    def __init__(self, message: str, error_class: int = 16) -> None:  # 16: MPI_ERR_OTHER
        super().__init__(message)
        self.error_class = error_class

    def Get_error_class(self) -> int:  # mpi4py's name
        return self.error_class

    def Get_error_code(self) -> int:
        return self.error_class

    def Get_error_string(self) -> str:
        return str(self)

    @property
    def error_code(self) -> int:
        return self.error_class

    @property
    def error_string(self) -> str:
        return str(self)


class PeerLostError(MpiError):
    """A rank on another host closed its stream without saying goodbye: it died, or its host did.

    When an app fails, the client reports the failure that caused this one, not this one."""


class NotImplementedMpi(NotImplementedError, AttributeError):
    """An MPI call granny does not implement (also an AttributeError, so ``hasattr`` says False)."""


class TestbedError(GrannyError):
    """A testbed could not be built, changed or torn down; the message says what to do."""

    __test__ = False  # not a pytest test class


class ErrorKind(StrEnum):
    """Why a task failed, as it travels on the wire (``Result.error_kind``, ``Done.error_kind``) and in
    the HTTP API; ERROR_KINDS maps each to the exception a client raises."""

    NONE = ""  # no error
    ERROR = "error"  # refused, or a failure without a more precise kind
    REMOTE = "remote"  # the function raised (its exception travels pickled)
    EXIT = "exit"  # a script ended with a non-zero exit code
    UNPICKLABLE_RESULT = "unpicklable_result"
    CRASHED = "crashed"  # the granule process died
    HOST_DIED = "host_died"
    EVICTED = "evicted"  # it still ran on a host at the end of its eviction notice
    NEVER_FITS = "never_fits"
    DEADLINE = "deadline"  # a delay-tolerant call that could not start before its deadline
    CANCELLED = "cancelled"
    LOST = "lost"  # the planner lost it (a restart, a payload it never got)
    PRUNED = "pruned"  # finished longer ago than the planner keeps results


# Maps the error kinds that travel on the wire to local classes, so a failure reason keeps its type.
ERROR_KINDS: dict[str, type[GrannyError]] = {
    ErrorKind.NEVER_FITS: NeverFitsError,
    ErrorKind.DEADLINE: DeadlineError,
    ErrorKind.HOST_DIED: HostDiedError,
    ErrorKind.EVICTED: HostEvictedError,
    ErrorKind.CRASHED: GranuleCrashedError,
    ErrorKind.UNPICKLABLE_RESULT: ResultSerializationError,
    ErrorKind.CANCELLED: CancelledError,
    ErrorKind.LOST: ClusterError,
    ErrorKind.PRUNED: PrunedError,
    ErrorKind.REMOTE: RemoteError,
    ErrorKind.ERROR: TaskError,
}
