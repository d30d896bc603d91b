"""Mutual challenge-response over HMAC-SHA256.

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

import functools
import hashlib
import hmac
import os
from hashlib import sha256
from typing import Any

from ..config import DIAL_HANDSHAKE_TIMEOUT, ENV_TLS_CA
from ..errors import AuthError, ConnectionLostError, GrannyError, ProtocolError
from ..wire import Challenge, Hello, Reject, Role, Welcome
from .blocking import BlockingConn, connect_tcp, connect_unix, local_id

Key = str | bytes  # the secret and the token are text; a granule credential is a raw digest

GRANULE_CREDENTIAL_BYTES = 32


def make_mac(key: Key, *parts: bytes) -> bytes:
    return hmac.new(key.encode() if isinstance(key, str) else key, b"".join(parts), sha256).digest()


def verify_mac(key: Key, mac: bytes, *parts: bytes) -> bool:
    return hmac.compare_digest(make_mac(key, *parts), mac)


def granule_credential(secret: str, host_id: str, granule_id: str) -> bytes:
    """The key granule ``granule_id`` of ``host_id`` authenticates with (and nothing else can).

    Length-prefixed parts: no two (host, granule) pairs share a derivation input."""
    parts = [p.encode() for p in (host_id, granule_id)]
    return make_mac(secret, b"granny-granule-v1", *(len(p).to_bytes(4, "big") + p for p in parts))


def task_grant(secret: str, granule_id: str, req_id: str, index: int) -> bytes:
    """The planner's signature on "task ``req_id[index]`` was dispatched to ``granule_id``".

    Sent with the Run; the granule shows it again when it reports that task to a planner that does
    not know the assignment (one restarted meanwhile), so a granule can report only work it was
    really given, and a restarted planner can check that without any state of its own."""
    # Keyed BLAKE2b (a MAC by design, and ~0.6 us against ~2.5 us for HMAC-SHA256 here: every dispatch
    # pays it). The key is a hash of the secret under its own label, so it is never the secret itself.
    # Ids hold no NUL byte, so NUL-separated parts cannot run into one another.
    data = b"\0".join((granule_id.encode(), req_id.encode(), str(index).encode()))
    return hashlib.blake2b(data, key=_grant_key(secret), digest_size=16).digest()


@functools.lru_cache(maxsize=8)
def _grant_key(secret: str) -> bytes:
    return hashlib.blake2b(secret.encode(), person=b"granny-grant-v1", digest_size=32).digest()


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
    conn.send(Hello(role=role, mac=make_mac(key, msg.nonce, role.value.encode()), nonce=nonce, **fields))
    reply, _ = conn.recv()
    if isinstance(reply, Reject):
        raise AuthError(f"the planner refused this connection: {reply.reason}")
    if not isinstance(reply, Welcome):
        raise ProtocolError(f"expected welcome, got {type(reply).__name__}")
    if not verify_mac(key, reply.mac, nonce):
        raise AuthError("the planner could not prove it knows the key: wrong address or wrong token")
    return reply


def server_handshake(conn: BlockingConn, key: Key, nonce: bytes) -> Hello:
    """The server side, after it sent ``Challenge(nonce)``: check the peer's Hello and prove the key.

    Raises AuthError (after telling the peer) on a wrong MAC, ProtocolError on anything but a Hello."""
    msg, _ = conn.recv()
    if not isinstance(msg, Hello):
        conn.send(Reject(reason="the first frame must be a hello"))
        raise ProtocolError(f"expected hello, got {type(msg).__name__}")
    if not verify_mac(key, msg.mac, nonce, msg.role.value.encode()):
        conn.send(Reject(reason=f"authentication failed for {msg.role.value}: wrong key"))
        raise AuthError(f"authentication failed for a {msg.role.value}")
    conn.send(Welcome(mac=make_mac(key, msg.nonce)))
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
    ca = os.environ.get(ENV_TLS_CA, "")
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
