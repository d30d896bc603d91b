"""A failed task as the Done frame and payload that its client gets (used by granule.py and fused.py)."""

from __future__ import annotations

import os
import traceback
import types

from .. import serde
from ..errors import ErrorKind
from ..wire import Done, Run, Status
from ..wire.framing import Buffer

# The worker's own frames at the top of a user's traceback are noise: the granule's loop, fused calls, this.
_OWN = frozenset(os.path.join(os.path.dirname(__file__), name) for name in ("granule.py", "fused.py", "outcome.py"))


def error_done(run: Run, exc: BaseException, limit: int) -> tuple[Done, list[Buffer]]:
    text = "".join(traceback.format_exception(type(exc), exc, user_tb(exc.__traceback__)))
    message = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, MemoryError) and limit:
        message = f"MemoryError: the granule exceeded its memory limit of {limit} bytes"
    try:
        body = serde.framed(serde.dumps(exc))
    except BaseException:  # an unpicklable exception still reports its text
        body = []
    return Done(req_id=run.req_id, index=run.index, status=Status.ERROR, error_kind=ErrorKind.REMOTE, message=message,
                traceback=text, size=serde.body_size(body)), body


def user_tb(tb: types.TracebackType | None) -> types.TracebackType | None:
    """The traceback from the user's first frame on."""
    while tb is not None and tb.tb_frame.f_code.co_filename in _OWN:
        tb = tb.tb_next
    return tb
