"""The HMACs of the handshake, granule credentials and task grants: pure functions, no I/O.

Split from :mod:`.auth` (which dials and handshakes over sockets) so that the planner's pure
admission rules can use them without importing any socket code (see the purity contract in
pyproject.toml).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
from hashlib import sha256

Key = str | bytes  # the secret and the token are text; a granule credential is a raw digest

GRANULE_CREDENTIAL_BYTES = 32


def make_mac(key: Key, *parts: bytes) -> bytes:
    return hmac.new(key.encode() if isinstance(key, str) else key, b"".join(parts), sha256).digest()


def verify_mac(key: Key, mac: bytes, *parts: bytes) -> bool:
    return hmac.compare_digest(make_mac(key, *parts), mac)


# --- the handshake's two proofs (the carriers: transport/auth.py for the planner protocol, ------------
# transport/handshake.py for raw data-plane links). Each side proves the key over the other's fresh
# nonce, so neither proof can be replayed; the dialer proves first, so an acceptor never offers a proof
# to anyone who has not shown the key, and the two proofs are labelled apart.
def dialer_proof(key: Key, acceptor_nonce: bytes, label: bytes) -> bytes:
    return make_mac(key, acceptor_nonce, label)


def acceptor_proof(key: Key, dialer_nonce: bytes, label: bytes = b"") -> bytes:
    return make_mac(key, dialer_nonce, label)


def check_dialer(key: Key, mac: bytes, acceptor_nonce: bytes, label: bytes) -> bool:
    return verify_mac(key, mac, acceptor_nonce, label)


def check_acceptor(key: Key, mac: bytes, dialer_nonce: bytes, label: bytes = b"") -> bool:
    return verify_mac(key, mac, dialer_nonce, label)


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
