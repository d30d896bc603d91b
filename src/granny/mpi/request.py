"""mpi4py's Status and Request over the engine's requests."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from ..errors import MpiError
from .p2p import ANY_SOURCE, ANY_TAG, PROC_NULL, Engine, RecvReq, SendReq

UNDEFINED = -32766


class Status:
    """Source, tag, error and size of a received (or probed) message. ``count`` is in bytes."""

    def __init__(self, status: Status | None = None) -> None:
        self.source, self.tag, self.error, self.count, self.cancelled = ANY_SOURCE, ANY_TAG, 0, 0, False
        if status is not None:
            self.source, self.tag, self.error = status.source, status.tag, status.error
            self.count, self.cancelled = status.count, status.cancelled

    def Get_source(self) -> int:  # noqa: N802
        return self.source

    def Set_source(self, source: int) -> None:  # noqa: N802
        self.source = source

    def Get_tag(self) -> int:  # noqa: N802
        return self.tag

    def Set_tag(self, tag: int) -> None:  # noqa: N802
        self.tag = tag

    def Get_error(self) -> int:  # noqa: N802
        return self.error

    def Set_error(self, error: int) -> None:  # noqa: N802
        self.error = error

    def Get_count(self, datatype: Any = None) -> int:  # noqa: N802
        size = 1 if datatype is None else datatype.Get_size()
        if size == 0:
            return 0
        return self.count // size if self.count % size == 0 else UNDEFINED

    def Get_elements(self, datatype: Any) -> int:  # noqa: N802
        size = datatype.Get_size()
        return self.count // size if size else 0

    def Set_elements(self, datatype: Any, count: int) -> None:  # noqa: N802
        self.count = count * datatype.Get_size()

    def Is_cancelled(self) -> bool:  # noqa: N802
        return self.cancelled

    def Set_cancelled(self, flag: bool) -> None:  # noqa: N802
        self.cancelled = bool(flag)

    def py2f(self) -> list[int]:
        return [self.source, self.tag, self.error, self.count, int(self.cancelled)]

    @classmethod
    def f2py(cls, arg: Sequence[int]) -> Status:
        st = cls()
        st.source, st.tag, st.error, st.count, st.cancelled = arg[0], arg[1], arg[2], arg[3], bool(arg[4])
        return st

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Status) and self.py2f() == other.py2f()

    def __hash__(self) -> int:
        return hash(tuple(self.py2f()))

    def __repr__(self) -> str:
        return f"<Status source={self.source} tag={self.tag} error={self.error} count={self.count}>"

    source_ = property(Get_source)


def fill_status(status: Status | None, source: int, tag: int, nbytes: int, cancelled: bool = False) -> None:
    if status is not None:
        status.source, status.tag, status.count, status.error, status.cancelled = source, tag, nbytes, 0, cancelled


class Request:
    """A non-blocking operation. ``Wait``/``wait`` block (spinning briefly, then sleeping)."""

    def __init__(self, engine: Engine | None = None, inner: RecvReq | SendReq | None = None,
                 to_comm_rank: Callable[[int], int] | None = None, obj: bool = False) -> None:
        self._engine, self._inner, self._rank, self._obj = engine, inner, to_comm_rank, obj
        self._freed = False

    # helpers ---------------------------------------------------------------------------------
    def _null(self) -> bool:
        return self._inner is None

    def _done(self) -> bool:
        if self._inner is None:
            return True
        if not self._inner.done and self._engine is not None:
            self._engine.progress()
        return self._inner.done

    def _finish(self, status: Status | None) -> Any:
        inner = self._inner
        if inner is None:
            fill_status(status, PROC_NULL if False else ANY_SOURCE, ANY_TAG, 0)
            return None
        value: Any = None
        if isinstance(inner, RecvReq):
            if inner.error is not None:
                self._inner = None
                raise inner.error
            src = inner.msg_src
            if src >= 0 and self._rank is not None:
                src = self._rank(src)
            fill_status(status, src, inner.msg_tag, inner.nbytes, inner.cancelled)
            value = inner.value
        else:
            fill_status(status, ANY_SOURCE, ANY_TAG, 0)
        self._inner = None  # a completed request becomes REQUEST_NULL, as in MPI
        return value

    # mpi4py API ------------------------------------------------------------------------------
    def Wait(self, status: Status | None = None) -> bool:  # noqa: N802
        if self._inner is not None and self._engine is not None:
            self._engine.wait(self._inner)
        self._finish(status)
        return True

    def wait(self, status: Status | None = None) -> Any:
        if self._inner is not None and self._engine is not None:
            self._engine.wait(self._inner)
        return self._finish(status)

    def Test(self, status: Status | None = None) -> bool:  # noqa: N802
        if not self._done():
            return False
        self._finish(status)
        return True

    def test(self, status: Status | None = None) -> tuple[bool, Any]:
        if not self._done():
            return False, None
        return True, self._finish(status)

    def Get_status(self, status: Status | None = None) -> bool:  # noqa: N802
        if not self._done():
            return False
        inner = self._inner
        if isinstance(inner, RecvReq):
            src = inner.msg_src
            if src >= 0 and self._rank is not None:
                src = self._rank(src)
            fill_status(status, src, inner.msg_tag, inner.nbytes, inner.cancelled)
        return True

    def get_status(self, status: Status | None = None) -> bool:
        return self.Get_status(status)

    def Cancel(self) -> None:  # noqa: N802
        """Receives that have not matched are cancelled; sends cannot be (they are already on their way)."""
        if isinstance(self._inner, RecvReq) and self._engine is not None:
            self._engine.cancel(self._inner)

    cancel = Cancel

    def Free(self) -> None:  # noqa: N802
        self._inner = None

    free = Free

    def __bool__(self) -> bool:
        return self._inner is not None

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Request):
            return self is other or (self._inner is None and other._inner is None)
        return NotImplemented

    def __hash__(self) -> int:
        return id(self)

    # collections of requests -------------------------------------------------------------------
    @staticmethod
    def Waitall(requests: Sequence[Request], statuses: list[Status] | None = None) -> bool:  # noqa: N802
        for i, req in enumerate(requests):
            req.Wait(statuses[i] if statuses is not None and i < len(statuses) else None)
        return True

    @staticmethod
    def waitall(requests: Sequence[Request], statuses: list[Status] | None = None) -> list[Any]:
        return [req.wait(statuses[i] if statuses is not None and i < len(statuses) else None)
                for i, req in enumerate(requests)]

    @staticmethod
    def Testall(requests: Sequence[Request], statuses: list[Status] | None = None) -> bool:  # noqa: N802
        if not all(r._done() for r in requests):
            return False
        Request.Waitall(requests, statuses)
        return True

    @staticmethod
    def testall(requests: Sequence[Request], statuses: list[Status] | None = None) -> tuple[bool, list[Any] | None]:
        if not all(r._done() for r in requests):
            return False, None
        return True, Request.waitall(requests, statuses)

    @staticmethod
    def _any(requests: Sequence[Request], block: bool) -> int:
        active = [i for i, r in enumerate(requests) if r._inner is not None]
        if not active:
            return UNDEFINED
        while True:
            for i in active:
                if requests[i]._done():
                    return i
            if not block:
                return -1
            time.sleep(0) if len(active) > 64 else None

    @staticmethod
    def Waitany(requests: Sequence[Request], status: Status | None = None) -> int:  # noqa: N802
        i = Request._any(requests, True)
        if i == UNDEFINED:
            fill_status(status, ANY_SOURCE, ANY_TAG, 0)
            return i
        requests[i].Wait(status)
        return i

    @staticmethod
    def waitany(requests: Sequence[Request], status: Status | None = None) -> tuple[int, Any]:
        i = Request._any(requests, True)
        if i == UNDEFINED:
            return i, None
        return i, requests[i].wait(status)

    @staticmethod
    def Testany(requests: Sequence[Request], status: Status | None = None) -> tuple[int, bool]:  # noqa: N802
        i = Request._any(requests, False)
        if i == UNDEFINED:
            return i, True
        if i < 0:
            return UNDEFINED, False
        requests[i].Wait(status)
        return i, True

    @staticmethod
    def testany(requests: Sequence[Request], status: Status | None = None) -> tuple[int, bool, Any]:
        i = Request._any(requests, False)
        if i == UNDEFINED:
            return i, True, None
        if i < 0:
            return UNDEFINED, False, None
        return i, True, requests[i].wait(status)

    @staticmethod
    def Waitsome(requests: Sequence[Request], statuses: list[Status] | None = None) -> list[int] | None:  # noqa: N802
        i = Request._any(requests, True)
        if i == UNDEFINED:
            return None
        done = [j for j, r in enumerate(requests) if r._inner is not None and r._done()]
        for j in done:
            requests[j].Wait()
        return done

    @staticmethod
    def Testsome(requests: Sequence[Request], statuses: list[Status] | None = None) -> list[int] | None:  # noqa: N802
        if all(r._inner is None for r in requests):
            return None
        done = [j for j, r in enumerate(requests) if r._inner is not None and r._done()]
        for j in done:
            requests[j].Wait()
        return done


REQUEST_NULL = Request()


def completed_request(error: MpiError | None = None) -> Request:
    """A request that is already complete (sends to PROC_NULL, eager sends)."""
    req = Request(None, SendReq(done=True))
    return req
