"""Which policy the planner runs: ``granny planner --policy``, then ``granny policy set`` or
``PUT /v1/policy`` at run time. Every choice is journaled (the ``settings`` table), so a restarted
planner runs the policy it ran before; a ``--policy`` flag given at start-up overrides that.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError, GrannyError
from ..wire import Query, Reply
from .policies import DEFAULT_POLICY, POLICIES, Policy

if TYPE_CHECKING:
    from .conn import Conn
    from .server_protocol import Server

log = logging.getLogger("granny.planner")

SETTING = "policy"  # its key in the journal's settings table
SET_QUERY = "set-policy"  # the RPC query that changes it (``granny policy set``); "policy" reads it


def policy_named(name: str) -> Policy:
    policy = POLICIES.get(name)
    if policy is None:
        raise ConfigError(f"unknown policy {name!r}: choose one of {', '.join(POLICIES)}")
    return policy


def at_start(flag: str | None, journaled: str | None) -> str:
    """The policy a starting planner runs: the flag, else the journaled choice, else the default."""
    if flag:
        return flag
    if journaled and journaled not in POLICIES:
        log.warning("the journal names policy %r, which this planner does not have; running %s",
                    journaled, DEFAULT_POLICY)
        return DEFAULT_POLICY
    return journaled or DEFAULT_POLICY


def describe(policy: Policy) -> dict[str, Any]:
    return {"policy": policy.name, "policies": list(POLICIES)}


def answer_set(p: Server, conn: Conn, msg: Query) -> None:
    """``granny policy set``: the reply goes out once the choice is in the journal."""
    try:
        p.set_policy(msg.arg)
    except GrannyError as exc:
        conn.send(Reply(qid=msg.qid, data=b"null", error=str(exc)))
        return
    reply = Reply(qid=msg.qid, data=json.dumps(describe(p.state.policy)).encode())
    p.journal.call_after_commit(conn.send, reply)
