"""Who may connect as what, and what a connection holding a granule's credential may send.

Keys, by the role a peer claims in its Hello (see docs/security.md):
- worker: the cluster secret only. A worker is a full member of the cluster.
- granule: its own credential, ``HMAC(secret, host, granule)``, derived again here from the name and
  host the Hello claims; so it connects as that granule on that host and as nothing else. A
  granule that has exited stays refused (``Ended``): a credential that leaked out of it is dead.
- client: the API token (any app); or, from a function inside a granule (chaining), that granule's
  credential, accepted only while the granule runs a task of the app the client names.

A connection admitted with a granule's credential carries a :class:`Scope`; :func:`check` says which
of its frames may go on. Pure: no sockets, no clocks.
"""

from __future__ import annotations

import hmac
from collections import OrderedDict
from dataclasses import dataclass

from ..errors import ErrorKind
from ..transport.macs import Key, check_dialer, granule_credential, task_grant
from ..tunables import ENDED_MAX
from ..wire.messages import (
    Cancel,
    Done,
    Hello,
    Log,
    Message,
    MigrateAsk,
    MigrateOut,
    MpiJoin,
    MpiWorld,
    Query,
    Reply,
    Result,
    Role,
    Status,
    Stdin,
    Submit,
    Waiting,
)
from .state import PlannerState

# "app" and "logs" of its own app only; "waiting" is a count (an elastic team grows only when it is 0),
# not the queue's requests, which name other apps.
SCOPED_QUERIES = ("hosts", "waiting", "app", "logs")
UNSCOPED_ARG = ("hosts", "waiting")


@dataclass(frozen=True)
class Scope:
    """What a connection authenticated by a granule credential speaks for."""

    granule_id: str
    host_id: str
    app_id: str = ""  # a chaining client's app; "" on the granule's own connection


class Ended:
    """Granules whose exit the worker reported: their credentials are refused from then on."""

    def __init__(self, limit: int = ENDED_MAX) -> None:
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._limit = limit

    def add(self, granule_id: str) -> None:
        self._ids[granule_id] = None
        while len(self._ids) > self._limit:
            self._ids.popitem(last=False)

    def __contains__(self, granule_id: object) -> bool:
        return granule_id in self._ids


def admit(secret: str, token: str, nonce: bytes, hello: Hello, state: PlannerState, ended: Ended
          ) -> tuple[Key, Scope | None] | str:
    """The key ``hello`` proved and its scope (None: unrestricted), or why it is refused."""
    parts = (nonce, hello.role.value.encode())
    if hello.role is Role.WORKER:
        return (secret, None) if check_dialer(secret, hello.mac, *parts) else "wrong secret"
    if hello.role is Role.CLIENT and check_dialer(token, hello.mac, *parts):
        return token, None
    if not hello.name or not hello.host_id:
        return "wrong token" if hello.role is Role.CLIENT else "a granule must name itself and its host"
    key = granule_credential(secret, hello.host_id, hello.name)
    if not check_dialer(key, hello.mac, *parts):
        return "wrong token or granule credential" if hello.role is Role.CLIENT else "wrong granule credential"
    if hello.name in ended:
        return f"granule {hello.name} has exited"
    if hello.role is Role.GRANULE:
        return key, Scope(hello.name, hello.host_id)
    running = _running_app(state, hello.name, hello.host_id)
    if not hello.app_id or hello.app_id != running:
        return (f"granule {hello.name} may submit only into the app of the task it runs "
                f"({running or 'none'}), not into {hello.app_id or 'a new app'}")
    return key, Scope(hello.name, hello.host_id, hello.app_id)


def _running_app(state: PlannerState, granule_id: str, host_id: str) -> str:
    granule = state.granules.get(granule_id)
    if granule is None or granule.host_id != host_id or granule.task is None:
        return ""
    req = state.requests.get(granule.task[0])
    return req.app_id if req is not None else ""


def check(state: PlannerState, role: Role, scope: Scope, msg: Message, secret: str) -> str:
    """Why ``msg`` may not go on from a connection of ``scope``; "" when it may."""
    if role is Role.GRANULE:
        if isinstance(msg, MpiJoin):
            return _own_task(state, scope, msg.req_id, msg.index)
        if isinstance(msg, MigrateAsk):
            return _own_task(state, scope, msg.req_id, 0)
        if isinstance(msg, MigrateOut):  # a checkpoint's comes from the rank's own granule, a move's from the old one
            if msg.checkpoint:
                return _own_task(state, scope, msg.req_id, msg.index)
            return _moved_from(state, scope, msg.req_id, msg.index)
        if isinstance(msg, Done | Log):
            # The old process of a rank that moved away still sends its last output and its report.
            why = _own_task(state, scope, msg.req_id, msg.index) and _moved_from(state, scope, msg.req_id, msg.index)
            # Not assigned here (a planner that restarted forgot it): the grant must prove it was.
            # Checked second: an HMAC per frame would cost the common case a few microseconds.
            return "" if not why or granted(secret, scope.granule_id, msg.req_id, msg.index, msg.grant) else why
        return f"a granule's connection may not send {type(msg).__name__}"
    if isinstance(msg, Submit):
        return "" if msg.app_id == scope.app_id else f"submitting into app {msg.app_id}, not {scope.app_id}"
    if isinstance(msg, Waiting):
        return "" if msg.granule_id == scope.granule_id else f"Waiting for granule {msg.granule_id}"
    if isinstance(msg, Cancel):
        if msg.app_id and msg.app_id != scope.app_id:
            return f"cancelling app {msg.app_id}"
        return _own_request(state, scope, msg.req_id) if msg.req_id else ""
    if isinstance(msg, Stdin):
        return _own_request(state, scope, msg.req_id)
    if isinstance(msg, Query):
        if msg.what not in SCOPED_QUERIES or (msg.what not in UNSCOPED_ARG and msg.arg != scope.app_id):
            return f"query {msg.what!r} {msg.arg!r} is not about app {scope.app_id}"
        return ""
    return f"a granule's client may not send {type(msg).__name__}"


def answers(msg: Message, why: str) -> list[Message]:
    """What to send back for a refused frame, so that nobody waits for an answer that never comes."""
    if isinstance(msg, Submit):
        return [Result(req_id=msg.req_id, index=i, status=Status.ERROR, error_kind=ErrorKind.ERROR, message=f"refused: {why}")
                for i in range(msg.n if 0 < msg.n <= 100_000 else 1)]
    if isinstance(msg, Query):
        return [Reply(qid=msg.qid, data=b"null", error=f"refused: {why}")]
    if isinstance(msg, MpiJoin):  # the rank would otherwise wait for its world for ever
        return [MpiWorld(req_id=msg.req_id, error=f"refused: {why}")]
    return []


def busy_claim(secret: str, hello: Hello) -> tuple[str, int] | None:
    """The task a reconnecting granule says it still runs, if the planner's grant backs the claim.

    Without the check, a granule could claim any queued task (of any app) and report its result."""
    rid, _, idx = hello.busy_task.rpartition(":")
    if not rid or not idx.isdigit():
        return None
    return (rid, int(idx)) if granted(secret, hello.name, rid, int(idx), hello.busy_grant) else None


def granted(secret: str, granule_id: str, req_id: str, index: int, grant: bytes) -> bool:
    """``grant`` is the planner's signature on dispatching ``req_id[index]`` to ``granule_id``."""
    return bool(grant) and hmac.compare_digest(task_grant(secret, granule_id, req_id, index), grant)


def _own_task(state: PlannerState, scope: Scope, req_id: str, index: int) -> str:
    req = state.requests.get(req_id)
    if req is None or not 0 <= index < req.n or req.tasks[index].granule_id != scope.granule_id:
        return f"task {req_id}[{index}] is not assigned to granule {scope.granule_id}"
    return ""


def _moved_from(state: PlannerState, scope: Scope, req_id: str, index: int) -> str:
    if state.migrations.from_source(req_id, index, scope.granule_id):
        return ""
    return f"granule {scope.granule_id} is not where rank {index} of {req_id} moved from"


def _own_request(state: PlannerState, scope: Scope, req_id: str) -> str:
    req = state.requests.get(req_id)
    if req is not None and req.app_id != scope.app_id:
        return f"request {req_id} belongs to another app"
    return ""
