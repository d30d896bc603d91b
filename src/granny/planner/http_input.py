"""Turning HTTP input into validated values: bounded bodies, strict JSON, strict query parameters.

Every refusal is an ``HTTPException`` with a 4xx status and a message for the client. Bodies are
read chunk by chunk and refused (413) as soon as they pass the limit, so a client cannot make the
planner buffer more than ``limit`` bytes; a ``Content-Length`` above the limit is refused before
anything is read. The 413 closes the connection: the rest of the body is never read.
"""

from __future__ import annotations

import math
import re
from typing import Any

import msgspec
from starlette.exceptions import HTTPException
from starlette.requests import Request

from .openapi import FLAG_VALUES

CLOSE = {"Connection": "close"}
_NUMBER = re.compile(r"^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$")
_INTEGER = re.compile(r"^(0|[1-9][0-9]*)$")


def too_large(what: str, size: int | str, limit: int) -> HTTPException:
    return HTTPException(413, f"{what} of {size} bytes is larger than this planner's limit of {limit} bytes",
                         headers=CLOSE)


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, at most ``limit`` bytes (else 413, without reading the rest)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large("a request body", declared, limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large("a request body", f"more than {limit}", limit)
        chunks.append(chunk)
    return b"".join(chunks)


def decode(raw: bytes, schema: type[Any]) -> Any:
    """Decode JSON into ``schema``: 400 if it is not JSON, 422 if it does not fit the schema."""
    try:
        return msgspec.json.decode(raw or b"{}", type=schema)
    except msgspec.ValidationError as exc:
        raise HTTPException(422, f"invalid request body: {exc}") from None
    except msgspec.DecodeError as exc:
        raise HTTPException(400, f"malformed JSON: {exc}") from None
    except UnicodeDecodeError as exc:  # msgspec checks UTF-8 only when it builds a str
        raise HTTPException(400, f"malformed JSON: a string is not valid UTF-8 ({exc.reason} at byte "
                                 f"{exc.start} of the string)") from None
    except RecursionError:
        raise HTTPException(400, "malformed JSON: nested too deep") from None


def _single(request: Request, name: str) -> str | None:
    values = request.query_params.getlist(name)
    if len(values) > 1:
        raise HTTPException(400, f"give {name} at most once")
    return values[0] if values else None


def flag(request: Request, name: str) -> bool:
    raw = _single(request, name)
    if raw is None:
        return False
    if raw not in FLAG_VALUES:
        raise HTTPException(400, f"{name} must be one of {', '.join(FLAG_VALUES)}, got {raw!r}")
    return FLAG_VALUES[raw]


def number(request: Request, name: str, default: float, maximum: float) -> float:
    """A query number in (0, maximum]."""
    raw = _single(request, name)
    if raw is None:
        return default
    value = float(raw) if len(raw) <= 64 and _NUMBER.match(raw) else math.nan
    if not 0 < value <= maximum:  # also refuses nan
        raise HTTPException(400, f"{name} must be a number of seconds in (0, {maximum:g}]")
    return value


def integer(request: Request, name: str, default: int, maximum: int) -> int:
    """A query integer in [0, maximum]."""
    raw = _single(request, name)
    if raw is None:
        return default
    if len(raw) > len(str(maximum)) or not _INTEGER.match(raw) or int(raw) > maximum:
        raise HTTPException(400, f"{name} must be an integer from 0 to {maximum}")
    return int(raw)
