"""The one reconnect loop (clients, worker daemons, granules)."""

from __future__ import annotations

import time

import pytest

from granny.errors import AuthError, ConnectionLostError, ProtocolError
from granny.transport.redial import redial


def failing(errors: list[BaseException], result: str = "conn") -> tuple[list[int], object]:
    calls = [0]

    def dial() -> str:
        calls[0] += 1
        if errors:
            raise errors.pop(0)
        return result

    return calls, dial


def test_retries_until_the_planner_answers() -> None:
    calls, dial = failing([ConnectionRefusedError(), ProtocolError("no challenge")])
    assert redial(dial, time.monotonic() + 30, "x") == "conn"  # type: ignore[arg-type]
    assert calls == [3]


def test_a_wrong_key_is_raised_at_once_unless_worth_retrying() -> None:
    calls, dial = failing([AuthError("wrong token")])
    with pytest.raises(AuthError, match="wrong token"):
        redial(dial, None, "x")  # type: ignore[arg-type]
    assert calls == [1]
    calls, dial = failing([AuthError("not yet"), AuthError("not yet")])
    assert redial(dial, time.monotonic() + 30, "x", retry_auth=True) == "conn"  # type: ignore[arg-type]
    assert calls == [3]


def test_past_the_deadline_it_says_what_it_could_not_reach() -> None:
    calls, dial = failing([ConnectionRefusedError("refused")] * 3)
    with pytest.raises(ConnectionLostError, match="cannot reach the planner at h:1: refused"):
        redial(dial, time.monotonic() - 1, "the planner at h:1")  # type: ignore[arg-type]
    assert calls == [1]
    calls, dial = failing([AuthError("still not")])
    with pytest.raises(AuthError, match="still not"):
        redial(dial, time.monotonic() - 1, "x", retry_auth=True)  # type: ignore[arg-type]
