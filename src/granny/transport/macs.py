"""The HMACs of the handshake, granule credentials and task grants: pure functions, no I/O.

Split from :mod:`.auth` (which dials and handshakes over sockets) so that the planner's pure
admission rules can use them without importing any socket code (see the purity contract in
pyproject.toml).
"""

from __future__ import annotations

import hmac
from hashlib import sha256

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
    parts = [p.encode() for p in (granule_id, req_id, str(index))]
    return make_mac(secret, b"granny-grant-v1", *(len(p).to_bytes(4, "big") + p for p in parts))[:16]
