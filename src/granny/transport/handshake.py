"""The handshake of raw data-plane links: MPI TCP streams (mpi/tcp.py) and remote team members
(parallel/remote.py).

It is the planner's handshake (transport/auth.py, with the same two proofs from :mod:`.macs`) in
fixed-size binary records instead of frames, since these links speak no frames of their own before
it and must read nothing of unknown size from a peer they do not know yet:

1. acceptor -> dialer: ``b"GHS1"`` and a fresh 16-byte nonce;
2. dialer -> acceptor: its claim (a rank, a thread number: u64), a fresh nonce of its own, and
   HMAC(key, acceptor nonce + label), the label binding the link's context (which world and rank,
   which team) and the claim;
3. acceptor -> dialer: a verdict byte and, if accepted, HMAC(key, dialer nonce + b"acceptor" + label).

A recorded transcript proves nothing later (the other side's nonce is new), a wrong key is refused
with a verdict the dialer reports as such (:class:`AuthError`), and nothing is unpickled before it.
"""

from __future__ import annotations

import os
import socket
import struct

from ..errors import AuthError, ProtocolError
from .macs import Key, acceptor_proof, check_acceptor, check_dialer, dialer_proof

MAGIC = b"GHS1"
NONCE_BYTES = 16
CHALLENGE = struct.Struct("<4s16s")  # magic, acceptor nonce
ANSWER = struct.Struct("<Q16s32s")  # claim, dialer nonce, dialer proof
VERDICT = struct.Struct("<B32s")  # verdict, acceptor proof
ACCEPTED, WRONG_KEY, UNEXPECTED = 0, 1, 2
_WHY = {WRONG_KEY: "wrong key", UNEXPECTED: "the key is right, but it expects no such peer (or has it already)"}


def _label(context: bytes, claim: int) -> bytes:
    return len(context).to_bytes(4, "big") + context + claim.to_bytes(8, "big")


def dial(sock: socket.socket, key: Key, context: bytes, claim: int, peer: str) -> None:
    """The dialer's side, on a connected blocking socket (its timeout bounds each read).

    Raises AuthError if ``peer`` refused the key or could not prove it knows it, ProtocolError if it does
    not speak this handshake, ConnectionError/OSError if the connection breaks."""
    magic, nonce = CHALLENGE.unpack(_recv_exact(sock, CHALLENGE.size, peer))
    if magic != MAGIC:
        raise ProtocolError(f"{peer} does not speak granny's handshake (it sent {magic!r})")
    mine = os.urandom(NONCE_BYTES)
    label = _label(context, claim)
    sock.sendall(ANSWER.pack(claim, mine, dialer_proof(key, nonce, label)))
    verdict, proof = VERDICT.unpack(_recv_exact(sock, VERDICT.size, peer))
    if verdict != ACCEPTED:
        raise AuthError(f"{peer} refused this link: {_WHY.get(verdict, f'verdict {verdict}')}")
    if not check_acceptor(key, proof, mine, b"acceptor" + label):
        raise AuthError(f"{peer} could not prove it knows the key: a wrong address, or someone else's listener")


class Acceptor:
    """The acceptor's side of one connection, in steps, for callers that read without blocking."""

    def __init__(self, key: Key, context: bytes) -> None:
        self.key, self.context = key, context
        self.nonce = os.urandom(NONCE_BYTES)
        self._label = b""
        self._theirs = b""

    def challenge(self) -> bytes:
        return CHALLENGE.pack(MAGIC, self.nonce)

    def check(self, answer: bytes | bytearray) -> int | None:
        """The dialer's claim if its proof holds for this nonce, else None."""
        claim, theirs, proof = ANSWER.unpack(answer)
        label = _label(self.context, claim)
        if not check_dialer(self.key, proof, self.nonce, label):
            return None
        self._label, self._theirs = label, theirs
        return int(claim)

    def verdict(self, verdict: int) -> bytes:
        if verdict != ACCEPTED:
            return VERDICT.pack(verdict, bytes(32))
        return VERDICT.pack(ACCEPTED, acceptor_proof(self.key, self._theirs, b"acceptor" + self._label))


def accept(sock: socket.socket, key: Key, context: bytes, peer: str) -> int:
    """The acceptor's side on a blocking socket: the dialer's claim, or AuthError (after telling it why)."""
    acceptor = Acceptor(key, context)
    sock.sendall(acceptor.challenge())
    claim = acceptor.check(_recv_exact(sock, ANSWER.size, peer))
    if claim is None:
        sock.sendall(acceptor.verdict(WRONG_KEY))
        raise AuthError(f"{peer} failed the handshake: wrong key (or a replayed one)")
    sock.sendall(acceptor.verdict(ACCEPTED))
    return claim


def _recv_exact(sock: socket.socket, n: int, peer: str) -> bytearray:
    buf = bytearray(n)
    view, got = memoryview(buf), 0
    while got < n:
        k = sock.recv_into(view[got:])
        if k == 0:
            raise ConnectionError(f"{peer} closed the connection during the handshake")
        got += k
    return buf
