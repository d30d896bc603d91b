"""mpi4py's Request over the engine's requests (Status is in status.py).

Theory of operation
- A ``Request`` wraps the engine's ``RecvReq``/``SendReq`` (``_inner``); completing it (Wait/Test, or the
  multiple-completion calls) fills the status and turns it into REQUEST_NULL (``_inner`` None), as in
  MPI. Completing REQUEST_NULL gives the empty status (ANY_SOURCE, ANY_TAG, SUCCESS, 0 bytes).
- The multiple-completion calls follow mpi4py's argument handling exactly (``_p_rs.release``): a
  ``statuses`` *list* shorter than the completed count (all requests for the *all calls, the completed
  ones for the *some calls) is extended with new Status objects; a tuple is filled as far as it goes; every
  status of a request that did not complete (or, for the *some calls, past the completed ones) is reset
  to the empty status; when no request is active the *some calls return None and leave statuses alone.
- ``Get_status*`` are the non-destructive variants (MPI_Request_get_status_*): nothing is freed.
- Waiting on several requests sleeps through ``Engine.wait`` with a predicate over all of them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ..errors import MpiError, NotImplementedMpi
from .p2p import Engine, RecvReq, SendReq, _AllDone, _AnyDone
from .status import UNDEFINED as UNDEFINED
from .status import Status as Status
from .status import _empty
from .status import fill_status as fill_status

ERR_REQUEST = 7


def _missing(what: str) -> Exception:
    return NotImplementedMpi(f"MPI.{what} is not implemented by granny")


class Request:
    """A non-blocking operation. ``Wait``/``wait`` block (spinning briefly, then sleeping)."""

    __slots__ = ("_engine", "_inner", "_obj", "_rank")
    _engine: Engine | None
    _inner: RecvReq | SendReq | None
    _rank: Callable[[int], int] | None
    _obj: bool

    def __init__(self, engine: Any = None, inner: RecvReq | SendReq | None = None,
                 to_comm_rank: Callable[[int], int] | None = None, obj: bool = False) -> None:
        """``Request()`` is REQUEST_NULL, ``Request(request)`` a copy (mpi4py); granny's own code passes
        the engine and the engine's request."""
        self._engine, self._inner, self._rank, self._obj = engine, inner, to_comm_rank, obj
        if inner is None and engine is not None:
            if not isinstance(engine, Request):
                raise TypeError(f"Argument 'request' has incorrect type (expected MPI.Request, "
                                f"got {type(engine).__name__})")
            self._engine, self._inner, self._rank, self._obj = engine._engine, engine._inner, engine._rank, engine._obj

    # helpers ---------------------------------------------------------------------------------
    def _done(self) -> bool:
        inner = self._inner
        if inner is None:
            return True
        if not inner.done and self._engine is not None:
            self._engine.progress()
        return inner.done

    def _peek(self, status: Status | None) -> None:
        """Fill ``status`` from a complete request without freeing it."""
        inner = self._inner
        if status is None:
            return
        if isinstance(inner, RecvReq):
            src = inner.msg_src
            if src >= 0 and self._rank is not None:
                src = self._rank(src)
            fill_status(status, src, inner.msg_tag, inner.nbytes, inner.cancelled)
        else:
            _empty(status)

    def _finish(self, status: Status | None) -> Any:
        inner = self._inner
        if inner is None:
            _empty(status)
            return None
        self._inner = None  # a completed request becomes REQUEST_NULL, as in MPI
        if type(inner) is RecvReq:
            if inner.error is not None:
                raise inner.error
            if status is not None:
                src = inner.msg_src
                if src >= 0 and self._rank is not None:
                    src = self._rank(src)
                fill_status(status, src, inner.msg_tag, inner.nbytes, inner.cancelled)
            return inner.value
        _empty(status)
        return None

    # mpi4py API ------------------------------------------------------------------------------
    def Wait(self, status: Status | None = None) -> bool:
        inner = self._inner
        if inner is not None and not inner.done and self._engine is not None:
            self._engine.wait(inner)
        self._finish(status)
        return True

    def wait(self, status: Status | None = None) -> Any:
        inner = self._inner
        if inner is not None and not inner.done and self._engine is not None:
            self._engine.wait(inner)
        return self._finish(status)

    def Test(self, status: Status | None = None) -> bool:
        if not self._done():
            return False
        self._finish(status)
        return True

    def test(self, status: Status | None = None) -> tuple[bool, Any]:
        if not self._done():
            return False, None
        return True, self._finish(status)

    def Get_status(self, status: Status | None = None) -> bool:
        """Non-destructive test: True (and the status) if complete; the request stays as it is."""
        if not self._done():
            return False
        self._peek(status)
        return True

    get_status = Get_status

    def Cancel(self) -> None:
        """Receives that have not matched are cancelled; sends cannot be (they are already on their way)."""
        if isinstance(self._inner, RecvReq) and self._engine is not None:
            self._engine.cancel(self._inner)

    cancel = Cancel

    def Free(self) -> None:
        """Drops the request; an active operation still completes (a receive still fills its buffer)."""
        if self._inner is None:
            raise MpiError("MPI.Request.Free: invalid request (REQUEST_NULL)", ERR_REQUEST)
        self._inner = None

    def free(self) -> None:
        if self._inner is not None:
            self._inner = None

    def __bool__(self) -> bool:
        return self._inner is not None

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Request):
            return self is other or self._inner is other._inner
        return NotImplemented

    def __hash__(self) -> int:
        return id(self)

    def __reduce__(self) -> str | tuple[Any, ...]:
        if self._inner is None and self is REQUEST_NULL:
            return "REQUEST_NULL"
        if self._inner is None:
            return (Request, ())
        raise ValueError("cannot serialize 'mpi4py.MPI.Request' instance")

    # not implemented: persistent and generalized requests, integer handles ---------------------
    def Start(self) -> None:
        raise _missing("Prequest.Start")

    @classmethod
    def Startall(cls, requests: Sequence[Request]) -> None:
        raise _missing("Prequest.Startall")

    def toint(self) -> int:
        raise _missing("Request.toint")

    @classmethod
    def fromint(cls, arg: int, /) -> Request:
        raise _missing("Request.fromint")

    def py2f(self) -> int:
        raise _missing("Request.py2f")

    @classmethod
    def f2py(cls, arg: int) -> Request:
        raise _missing("Request.f2py")

    @classmethod
    def fromhandle(cls, handle: int) -> Request:
        raise _missing("Request.fromhandle")

    @property
    def handle(self) -> int:
        return 0 if self._inner is None else id(self._inner)

    # collections of requests -------------------------------------------------------------------
    @staticmethod
    def _check(requests: Sequence[Request]) -> None:
        for r in requests:
            if not isinstance(r, Request):
                raise TypeError(f"Cannot convert {type(r).__name__} to MPI.Request")

    @staticmethod
    def _wait_any(requests: Sequence[Request]) -> None:
        """Block until at least one active request is complete (there is one)."""
        Request._check(requests)
        engine: Engine | None = None
        inners: list[RecvReq | SendReq] = []
        for r in requests:
            inner = r._inner
            if inner is not None:
                if inner.done:
                    return
                inners.append(inner)
                engine = engine or r._engine
        if engine is not None:
            engine.wait(_AnyDone(inners))

    @staticmethod
    def _wait_all(requests: Sequence[Request]) -> None:
        Request._check(requests)
        engine: Engine | None = None
        inners: list[RecvReq | SendReq] = []
        for r in requests:
            inner = r._inner
            if inner is not None and not inner.done:
                inners.append(inner)
                engine = engine or r._engine
        if engine is not None:
            engine.wait(inners[0] if len(inners) == 1 else _AllDone(inners))

    @staticmethod
    def _all_done(requests: Sequence[Request]) -> bool:
        Request._check(requests)
        engine: Engine | None = None
        for r in requests:
            inner = r._inner
            if inner is not None and not inner.done:
                engine = r._engine
                break
        else:
            return True
        if engine is not None:
            engine.progress()
        return all(r._inner is None or r._inner.done for r in requests)

    @staticmethod
    def _first_done(requests: Sequence[Request], progress: bool) -> int:
        """Index of the first complete active request; UNDEFINED if none is active, -1 if none done."""
        Request._check(requests)
        engine: Engine | None = None
        active = False
        for i, r in enumerate(requests):
            inner = r._inner
            if inner is not None:
                if inner.done:
                    return i
                active = True
                engine = engine or r._engine
        if not active:
            return UNDEFINED
        if progress and engine is not None:
            engine.progress()
            for i, r in enumerate(requests):
                inner = r._inner
                if inner is not None and inner.done:
                    return i
        return -1

    @staticmethod
    def _statuses(statuses: Sequence[Status] | None, n: int) -> Sequence[Status] | None:
        """mpi4py's release step: a list of statuses grows to ``n``; a tuple is used as far as it goes."""
        if statuses is not None and len(statuses) < n and isinstance(statuses, list):
            statuses.extend(Status() for _ in range(n - len(statuses)))
        return statuses

    @staticmethod
    def _complete_all(requests: Sequence[Request], statuses: Sequence[Status] | None) -> list[Any]:
        """Finish every (complete) request into its status; raises the first error after finishing all."""
        error: Exception | None = None
        if statuses is None:
            try:
                return [r._finish(None) for r in requests]
            except MpiError as exc:
                error = exc  # finish the others below, then raise the first error
        sts = Request._statuses(statuses, len(requests))
        ns = len(sts) if sts is not None else 0
        values: list[Any] = []
        for i, r in enumerate(requests):
            try:
                values.append(r._finish(sts[i] if sts is not None and i < ns else None))
            except MpiError as exc:
                values.append(None)
                error = error or exc
        if error is not None:
            raise error
        return values

    @staticmethod
    def _reset(statuses: Sequence[Status] | None, n: int, start: int = 0) -> None:
        sts = Request._statuses(statuses, n)
        if sts is not None:
            for i in range(start, min(n, len(sts))):
                _empty(sts[i])

    @staticmethod
    def Waitall(requests: Sequence[Request], statuses: Sequence[Status] | None = None) -> bool:
        Request._wait_all(requests)
        Request._complete_all(requests, statuses)
        return True

    @staticmethod
    def waitall(requests: Sequence[Request], statuses: Sequence[Status] | None = None) -> list[Any]:
        Request._wait_all(requests)
        return Request._complete_all(requests, statuses)

    @staticmethod
    def Testall(requests: Sequence[Request], statuses: Sequence[Status] | None = None) -> bool:
        if not Request._all_done(requests):
            Request._reset(statuses, len(requests))
            return False
        Request._complete_all(requests, statuses)
        return True

    @staticmethod
    def testall(requests: Sequence[Request],
                statuses: Sequence[Status] | None = None) -> tuple[bool, list[Any] | None]:
        if not Request._all_done(requests):
            Request._reset(statuses, len(requests))
            return False, None
        return True, Request._complete_all(requests, statuses)

    @staticmethod
    def Get_status_all(requests: Sequence[Request], statuses: Sequence[Status] | None = None) -> bool:
        if not Request._all_done(requests):
            Request._reset(statuses, len(requests))
            return False
        sts = Request._statuses(statuses, len(requests))
        if sts is not None:
            for r, st in zip(requests, sts, strict=False):
                r._peek(st)
        return True

    get_status_all = Get_status_all

    @staticmethod
    def Waitany(requests: Sequence[Request], status: Status | None = None) -> int:
        return Request.waitany(requests, status)[0]

    @staticmethod
    def waitany(requests: Sequence[Request], status: Status | None = None) -> tuple[int, Any]:
        i = Request._first_done(requests, False)
        if i == UNDEFINED:
            _empty(status)
            return UNDEFINED, None
        if i < 0:
            Request._wait_any(requests)
            i = Request._first_done(requests, False)
        return i, requests[i]._finish(status)

    @staticmethod
    def Testany(requests: Sequence[Request], status: Status | None = None) -> tuple[int, bool]:
        i, flag, _ = Request.testany(requests, status)
        return i, flag

    @staticmethod
    def testany(requests: Sequence[Request], status: Status | None = None) -> tuple[int, bool, Any]:
        i = Request._first_done(requests, True)
        if i == UNDEFINED:
            _empty(status)
            return UNDEFINED, True, None
        if i < 0:
            return UNDEFINED, False, None
        return i, True, requests[i]._finish(status)

    @staticmethod
    def Get_status_any(requests: Sequence[Request], status: Status | None = None) -> tuple[int, bool]:
        i = Request._first_done(requests, True)
        if i == UNDEFINED:
            _empty(status)
            return UNDEFINED, True
        if i < 0:
            return UNDEFINED, False
        requests[i]._peek(status)
        return i, True

    get_status_any = Get_status_any

    @staticmethod
    def _some(requests: Sequence[Request], statuses: Sequence[Status] | None, block: bool,
              free: bool) -> tuple[list[int] | None, list[Any] | None]:
        first = Request._first_done(requests, not block)
        if first == UNDEFINED:
            return None, None
        if first < 0 and block:
            Request._wait_any(requests)
        done = [i for i, r in enumerate(requests) if r._inner is not None and r._inner.done]
        sts = Request._statuses(statuses, len(done))
        ns = len(sts) if sts is not None else 0
        values: list[Any] = []
        error: Exception | None = None
        for k, i in enumerate(done):
            st = sts[k] if sts is not None and k < ns else None
            if free:
                try:
                    values.append(requests[i]._finish(st))
                except MpiError as exc:
                    values.append(None)
                    error = error or exc
            else:
                requests[i]._peek(st)
        if sts is not None:  # past the completed ones: the empty status, without growing the list
            for k in range(len(done), min(len(requests), ns)):
                _empty(sts[k])
        if error is not None:
            raise error
        return done, values

    @staticmethod
    def Waitsome(requests: Sequence[Request], statuses: Sequence[Status] | None = None) -> list[int] | None:
        return Request._some(requests, statuses, True, True)[0]

    @staticmethod
    def waitsome(requests: Sequence[Request],
                 statuses: Sequence[Status] | None = None) -> tuple[list[int] | None, list[Any] | None]:
        return Request._some(requests, statuses, True, True)

    @staticmethod
    def Testsome(requests: Sequence[Request], statuses: Sequence[Status] | None = None) -> list[int] | None:
        return Request._some(requests, statuses, False, True)[0]

    @staticmethod
    def testsome(requests: Sequence[Request],
                 statuses: Sequence[Status] | None = None) -> tuple[list[int] | None, list[Any] | None]:
        return Request._some(requests, statuses, False, True)

    @staticmethod
    def Get_status_some(requests: Sequence[Request],
                        statuses: Sequence[Status] | None = None) -> list[int] | None:
        return Request._some(requests, statuses, False, False)[0]

    get_status_some = Get_status_some


REQUEST_NULL = Request()


def completed_request(error: MpiError | None = None) -> Request:
    """A request that is already complete (sends to PROC_NULL, eager sends)."""
    return Request(None, SendReq(done=True))
