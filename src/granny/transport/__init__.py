"""Streams between granny processes: the authenticated handshake and blocking frame connections."""

from .auth import (
                   acceptor_proof,
                   client_handshake,
                   dial,
                   granule_credential,
                   make_mac,
                   server_handshake,
                   task_grant,
                   verify_mac,
)
from .blocking import BlockingConn, connect_tcp, connect_unix, local_id

__all__ = [
    "BlockingConn", "acceptor_proof", "client_handshake", "connect_tcp", "dial", "connect_unix", "granule_credential",
    "local_id", "make_mac", "server_handshake", "task_grant", "verify_mac",
]
