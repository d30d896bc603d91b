"""Status and Request (single and multiple completion) against a fake engine, mpi4py's semantics."""

from __future__ import annotations

import pickle
from typing import Any

import pytest

import granny.mpi.datatypes as D
from granny.errors import MpiError
from granny.mpi.p2p import ANY_SOURCE, ANY_TAG, RecvReq, SendReq
from granny.mpi.request import UNDEFINED, Request, Status, completed_request, fill_status


class FakeEngine:
    """Completes the queued receives one per ``progress`` call."""

    def __init__(self) -> None:
        self.queue: list[RecvReq] = []
        self.progressed = 0

    def recv(self, src: int, tag: int, nbytes: int = 4, value: Any = None) -> Request:
        inner = RecvReq(0, src, tag, None)
        inner.nbytes, inner.value = nbytes, value
        self.queue.append(inner)
        return Request(self, inner, lambda w: w + 100, obj=True)

    def progress(self) -> int:
        self.progressed += 1
        if self.queue:
            self.queue.pop(0).done = True
            return 1
        return 0

    def wait(self, done: Any) -> None:
        while not done.done:
            if not self.progress():
                raise AssertionError("would hang")

    def cancel(self, req: RecvReq) -> bool:
        if req in self.queue:
            self.queue.remove(req)
            req.cancelled = req.done = True
            return True
        return False


def _is_empty(st: Status) -> bool:
    return (st.source, st.tag, st.error, st.count, st.cancelled) == (ANY_SOURCE, ANY_TAG, 0, 0, False)


def _dirty() -> Status:
    st = Status()
    st.source, st.tag, st.error = 0, 0, 16
    return st


# --- Status -----------------------------------------------------------------------------------
def test_status_defaults_constructor_and_copy() -> None:
    st = Status()
    assert _is_empty(st) and st.Get_count(D.BYTE) == 0 and st.Get_elements(D.BYTE) == 0
    with pytest.raises(TypeError):
        Status(123)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Status("abc")  # type: ignore[arg-type]
    st.source, st.tag, st.error = 1, 2, 13
    st.Set_elements(D.INT, 3)
    st.Set_cancelled(True)
    cp = Status(st)
    assert (cp.source, cp.tag, cp.error, cp.Get_count(D.INT), cp.Get_count(D.BYTE), cp.Is_cancelled()) == (
        1, 2, 13, 3, 12, True)
    assert type(cp.count) is int and type(cp.cancelled) is bool
    assert cp == st and cp.Get_count(D.DOUBLE) == UNDEFINED


def test_status_pickle_and_fortran_roundtrip() -> None:
    st = Status()
    st.source, st.tag, st.error, st.count, st.cancelled = 3, 4, 5, 2**40 + 7, True
    again = pickle.loads(pickle.dumps(st))
    assert again == st and again.count == 2**40 + 7 and again.cancelled
    assert Status.f2py(st.py2f()) == st


def test_status_tomemory_writes_through_both_ways() -> None:
    st = Status()
    st.source, st.tag, st.error = 11, 22, 33
    mem = st.tomemory()
    seq = list(mem)
    assert mem.format == "i" and len(seq) == 6
    mem[seq.index(11)] = 111
    mem[seq.index(22)] = 222
    mem[seq.index(33)] = 333
    assert (st.source, st.tag, st.error) == (111, 222, 333)
    fill_status(st, 5, 6, 40, True)
    assert list(mem)[:4] == [5, 6, 0, 1] and st.Get_count(D.INT) == 10 and st.Is_cancelled()
    assert st.tomemory().tolist() == mem.tolist()
    assert Status(st) == st and pickle.loads(pickle.dumps(st)) == st


# --- single requests --------------------------------------------------------------------------
def test_null_request_completes_with_the_empty_status() -> None:
    req = Request()
    st = _dirty()
    assert req.Wait(st) is True and _is_empty(st)
    assert req.wait() is None and req.Test() is True and req.test() == (True, None)
    st = _dirty()
    assert req.Get_status(st) and _is_empty(st)
    with pytest.raises(MpiError):
        req.Free()
    req.free()
    with pytest.raises(TypeError):
        Request(Status())


def test_wait_fills_status_and_nulls_the_request() -> None:
    eng = FakeEngine()
    req = eng.recv(1, 7, 8, "x")
    copy = Request(req)
    assert copy == req and copy
    st = Status()
    assert req.Get_status(st) and st.source == 101 and req  # non-destructive
    assert req.wait(st) == "x"
    assert (st.source, st.tag, st.count) == (101, 7, 8) and not req and req == Request()


def test_cancel_marks_the_status() -> None:
    eng = FakeEngine()
    req = eng.recv(1, 7)
    req.Cancel()
    st = Status()
    req.Wait(st)
    assert st.Is_cancelled()


def test_error_is_raised_once_and_request_becomes_null() -> None:
    inner = RecvReq(0, 0, 0, None)
    inner.done, inner.error = True, MpiError("boom", 15)
    req = Request(None, inner)
    with pytest.raises(MpiError, match="boom"):
        req.Wait()
    assert not req


# --- multiple completion ------------------------------------------------------------------------
def test_waitall_statuses_list_tuple_and_none() -> None:
    nulls = [Request() for _ in range(5)]
    sts: list[Status] = []
    assert Request.Waitall(nulls, sts) is True
    assert len(sts) == 5 and all(_is_empty(s) for s in sts)
    short = (_dirty(),)
    Request.Waitall(nulls, short)
    assert _is_empty(short[0])
    eng = FakeEngine()
    reqs = [eng.recv(i, i, value=i) for i in range(3)] + [completed_request()]
    sts = [_dirty()]
    assert Request.waitall(reqs, sts) == [0, 1, 2, None]
    assert [s.source for s in sts] == [100, 101, 102, ANY_SOURCE] and not any(reqs)


def test_waitall_finishes_every_request_before_raising() -> None:
    inner = RecvReq(0, 0, 0, None)
    inner.done, inner.error = True, MpiError("bad")
    bad = Request(None, inner)
    good = completed_request()
    with pytest.raises(MpiError):
        Request.Waitall([bad, good])
    assert not bad and not good


def test_testall_is_all_or_nothing() -> None:
    eng = FakeEngine()
    reqs = [eng.recv(0, 0, value="a"), eng.recv(1, 1, value="b")]
    sts = [_dirty(), _dirty()]
    assert Request.Testall(reqs, sts) is False and all(reqs)  # one completed, not both
    assert all(_is_empty(s) for s in sts)
    assert Request.Get_status_all(reqs) is True and all(reqs)
    assert Request.testall(reqs, sts) == (True, ["a", "b"]) and [s.tag for s in sts] == [0, 1]
    assert Request.testall(reqs) == (True, [None, None])


def test_any_variants() -> None:
    nulls = [Request() for _ in range(3)]
    st = _dirty()
    assert Request.Waitany(nulls, st) == UNDEFINED and _is_empty(st)
    assert Request.Testany(nulls) == (UNDEFINED, True)
    assert Request.Get_status_any(nulls) == (UNDEFINED, True)
    assert Request.waitany(nulls) == (UNDEFINED, None)
    eng = FakeEngine()
    reqs = [Request(), eng.recv(0, 5, value="a"), eng.recv(1, 6, value="b")]
    assert Request.Get_status_any(reqs, st) == (1, True) and st.tag == 5 and reqs[1]
    assert Request.waitany(reqs, st) == (1, "a") and not reqs[1]
    assert Request.testany(reqs, st) == (2, True, "b") and st.tag == 6
    assert Request.testany(reqs) == (UNDEFINED, True, None)
    idle = FakeEngine()
    pending = Request(idle, RecvReq(0, 0, 0, None))
    assert Request.Testany([pending]) == (UNDEFINED, False)
    assert Request.Get_status_any([pending]) == (UNDEFINED, False)


def test_some_variants() -> None:
    nulls = [Request() for _ in range(3)]
    sts = [_dirty()]
    for call in (Request.Waitsome, Request.Testsome, Request.Get_status_some):
        assert call(nulls, sts) is None and len(sts) == 1 and sts[0].error == 16
    assert Request.waitsome(nulls) == (None, None) and Request.testsome(nulls) == (None, None)
    idle = FakeEngine()
    pending = Request(idle, RecvReq(0, 0, 0, None))
    assert Request.Testsome([pending]) == []
    eng = FakeEngine()
    reqs = [eng.recv(0, 1, value="a"), Request(), eng.recv(2, 3, value="b")]
    sts = [_dirty(), _dirty(), _dirty()]
    assert Request.Get_status_some(reqs, sts) == [0] and reqs[0] and sts[0].tag == 1 and _is_empty(sts[1])
    assert Request.waitsome(reqs, sts) == ([0], ["a"]) and not reqs[0]
    assert Request.Waitsome(reqs, sts) == [2] and sts[0].tag == 3 and _is_empty(sts[1])
    assert Request.Testsome(reqs) is None


def test_sends_complete_with_the_empty_status() -> None:
    st = _dirty()
    Request(None, SendReq(done=True)).Wait(st)
    assert _is_empty(st)
