"""The planner link's handshake (clients, workers): a wrong key is refused, clearly; a replay proves nothing."""

from __future__ import annotations

import pytest

from granny.cluster import LocalCluster
from granny.config import parse_address
from granny.errors import AuthError
from granny.transport import BlockingConn, connect_tcp, dial
from granny.transport.macs import dialer_proof
from granny.wire import Challenge, Hello, Reject, Role, Welcome


def test_a_client_with_the_wrong_token_is_refused_with_a_clear_error(cluster: LocalCluster) -> None:
    with pytest.raises(AuthError, match="the planner refused this connection: authentication failed for client: wrong token"):
        dial(parse_address(cluster.address), Role.CLIENT, "not-the-token")


def test_a_worker_with_the_wrong_secret_is_refused_with_a_clear_error(cluster: LocalCluster) -> None:
    with pytest.raises(AuthError, match="authentication failed for worker: wrong secret"):
        dial(parse_address(cluster.address), Role.WORKER, "not-the-secret", name="intruder", host_id="intruder",
             slots=1, boot="b")


def test_a_replayed_hello_is_refused(cluster: LocalCluster) -> None:
    """A Hello recorded from a good handshake fails against the next connection's fresh challenge."""
    addr = parse_address(cluster.address)
    first = BlockingConn(connect_tcp(*addr))
    challenge, _ = first.recv()
    assert isinstance(challenge, Challenge)
    hello = Hello(role=Role.CLIENT, mac=dialer_proof(cluster.token, challenge.nonce, b"client"), nonce=b"n" * 16)
    first.send(hello)
    welcome, _ = first.recv()
    assert isinstance(welcome, Welcome)  # genuine: accepted
    first.close()
    second = BlockingConn(connect_tcp(*addr))
    again, _ = second.recv()
    assert isinstance(again, Challenge) and again.nonce != challenge.nonce
    second.send(hello)  # the same bytes, replayed
    reply, _ = second.recv()
    second.close()
    assert isinstance(reply, Reject) and "wrong token" in reply.reason
