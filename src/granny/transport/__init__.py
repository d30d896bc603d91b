"""Streams between granny processes: the authenticated handshake and blocking frame connections."""

from .auth import client_handshake, make_mac, verify_mac
from .blocking import BlockingConn, connect_tcp

__all__ = ["BlockingConn", "client_handshake", "connect_tcp", "make_mac", "verify_mac"]
