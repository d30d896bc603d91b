"""Mutual challenge-response over HMAC-SHA256: the planner protocol's carrier of granny's one handshake.

(:mod:`.handshake` carries the same two proofs, from :mod:`.macs`, over raw data-plane links.)

The server speaks first with a random nonce. The peer answers with ``HMAC(key, nonce + role)`` and a
nonce of its own; the server answers that with ``HMAC(key, peer_nonce)``. Neither side ever sends the
key, replaying an old answer fails against a fresh nonce, and a client learns it reached a planner
that knows the token before it unpickles anything that planner sends.

Keys: workers use the cluster secret; API clients use the token; a granule (and the client a function
opens inside it, for chaining) uses its own granule credential, ``HMAC(secret, host, granule)``. Its
worker derives it and the planner derives it again to check, so the secret never reaches user code,
and one granule's credential proves nothing about any other identity (see docs/security.md).

The handshake authenticates the peers, not the frames after it: over plain TCP an on-path attacker
can inject frames into an authenticated stream. Dialling over TLS (:mod:`granny.transport.tls`,
switched on by ``GRANNY_TLS_CA``) closes that; the planner warns when it listens beyond loopback
without it.
"""

from __future__ import annotations

import os
from typing import Any

from ..config import DIAL_HANDSHAKE_TIMEOUT, ENV_TLS_CA, env
from ..errors import AuthError, ConnectionLostError, GrannyError, ProtocolError
from ..wire import Challenge, Hello, Reject, Role, Welcome
from .blocking import BlockingConn, connect_tcp, connect_unix, local_id
from .macs import (
    GRANULE_CREDENTIAL_BYTES,
    Key,
    acceptor_proof,
    check_acceptor,
    check_dialer,
    dialer_proof,
    granule_credential,
    make_mac,
    task_grant,
    verify_mac,
)

__all__ = ["GRANULE_CREDENTIAL_BYTES", "Key", "acceptor_proof", "check_acceptor", "check_dialer", "client_handshake", "dial",
           "dialer_proof", "granule_credential", "make_mac", "server_handshake", "task_grant", "verify_mac"]

def client_handshake(conn: BlockingConn, role: Role, key: Key, **fields: Any) -> Welcome:
    """Run the peer side of the handshake on a fresh connection; raises AuthError on refusal."""
    try:
        msg, _ = conn.recv()
    except ConnectionLostError as exc:
        hint = "" if conn.tls else f"; if the planner serves TLS, set {ENV_TLS_CA} (or --tls-ca) to its CA file"
        raise ConnectionLostError(f"no challenge from the peer ({exc}): it may have too many connections waiting to "
                                  f"authenticate{hint}") from None
    if not isinstance(msg, Challenge):
        raise ProtocolError(f"expected a challenge from the planner, got {type(msg).__name__}")
    nonce = os.urandom(16)
    conn.send(Hello(role=role, mac=dialer_proof(key, msg.nonce, role.value.encode()), nonce=nonce, **fields))
    reply, _ = conn.recv()
    if isinstance(reply, Reject):
        raise AuthError(f"the planner refused this connection: {reply.reason}")
    if not isinstance(reply, Welcome):
        raise ProtocolError(f"expected welcome, got {type(reply).__name__}")
    if not check_acceptor(key, reply.mac, nonce):
        raise AuthError("the planner could not prove it knows the key: wrong address or wrong token")
    return reply


def server_handshake(conn: BlockingConn, key: Key, nonce: bytes) -> Hello:
    """The server side, after it sent ``Challenge(nonce)``: check the peer's Hello and prove the key.

    Raises AuthError (after telling the peer) on a wrong MAC, ProtocolError on anything but a Hello."""
    msg, _ = conn.recv()
    if not isinstance(msg, Hello):
        conn.send(Reject(reason="the first frame must be a hello"))
        raise ProtocolError(f"expected hello, got {type(msg).__name__}")
    if not check_dialer(key, msg.mac, nonce, msg.role.value.encode()):
        conn.send(Reject(reason=f"authentication failed for {msg.role.value}: wrong key"))
        raise AuthError(f"authentication failed for a {msg.role.value}")
    conn.send(Welcome(mac=acceptor_proof(key, msg.nonce)))
    return msg


def dial(address: tuple[str, int], role: Role, key: Key, unix_hint: str = "", **fields: Any
         ) -> tuple[BlockingConn, Welcome, str]:
    """Connect and authenticate, preferring the planner's Unix socket when it is really local.

    Returns the connection, the planner's welcome and the Unix path to prefer next time ("" if
    none). A wrong key raises AuthError at once; other failures raise OSError or ProtocolError.
    """
    if unix_hint:
        try:
            conn = BlockingConn(connect_unix(unix_hint))
            return conn, _shake(conn, role, key, fields), unix_hint
        except AuthError:
            raise
        except (OSError, GrannyError):
            pass
    conn = _connect_tcp(address)
    welcome = _shake(conn, role, key, fields)
    if welcome.local_path and welcome.local_id and welcome.local_id == local_id():
        try:
            local = BlockingConn(connect_unix(welcome.local_path))
            local_welcome = _shake(local, role, key, fields)
        except (OSError, GrannyError):
            return conn, welcome, ""
        conn.close()
        return local, local_welcome, welcome.local_path
    return conn, welcome, ""


def _connect_tcp(address: tuple[str, int]) -> BlockingConn:
    """A TCP connection to the planner, over TLS if GRANNY_TLS_CA names a CA to verify it with."""
    sock = connect_tcp(*address)
    ca = env(ENV_TLS_CA)
    if not ca:
        return BlockingConn(sock)
    from .tls import wrap_client  # ssl costs ~13 ms to import: only where TLS is used

    sock.settimeout(DIAL_HANDSHAKE_TIMEOUT)
    return BlockingConn(wrap_client(sock, address[0], ca), tls=True)


def _shake(conn: BlockingConn, role: Role, key: Key, fields: dict[str, Any]) -> Welcome:
    # A peer that accepts but never answers (a wrong port, a stalled planner) must not hang us.
    try:
        conn.sock.settimeout(DIAL_HANDSHAKE_TIMEOUT)
        welcome = client_handshake(conn, role, key, **fields)
        conn.sock.settimeout(None)
        return welcome
    except BaseException:
        conn.close()
        raise
