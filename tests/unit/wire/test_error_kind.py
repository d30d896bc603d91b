"""Error kinds are an enum in code and plain strings on the wire (as before the enum)."""

from __future__ import annotations

import concurrent.futures as cf

import msgspec
import pytest

from granny.errors import ERROR_KINDS, ErrorKind, TaskError
from granny.outcomes import rebuild_error
from granny.wire import Done, Result, Status, decode_header, encode_header


def test_every_failure_kind_has_its_exception() -> None:
    without = {ErrorKind.NONE, ErrorKind.EXIT}  # EXIT: a script's exit code, reported as a TaskError
    assert set(ERROR_KINDS) == set(ErrorKind) - without


@pytest.mark.parametrize("kind", list(ErrorKind))
def test_the_wire_carries_the_kind_as_its_string(kind: ErrorKind) -> None:
    res = Result(req_id="r", index=0, status=Status.ERROR, error_kind=kind)
    fields = msgspec.msgpack.decode(encode_header(res))
    assert fields.get("error_kind", "") == kind.value and type(fields.get("error_kind", "")) is str
    back = decode_header(encode_header(res))
    assert isinstance(back, Result) and back.error_kind is kind
    done = decode_header(encode_header(Done(req_id="r", index=0, status=Status.ERROR, error_kind=kind)))
    assert isinstance(done, Done) and done.error_kind is kind


def test_a_client_rebuilds_the_exception_of_the_kind() -> None:
    res = Result(req_id="r", index=0, status=Status.ERROR, error_kind=ErrorKind.CANCELLED, message="stop")
    assert isinstance(rebuild_error(res, memoryview(b"")), cf.CancelledError)
    res = Result(req_id="r", index=0, status=Status.ERROR, error_kind=ErrorKind.EXIT, message="exit 3")
    assert type(rebuild_error(res, memoryview(b""))) is TaskError
