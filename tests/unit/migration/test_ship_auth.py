"""A moving rank's state travels only after the one handshake: the key never crosses the wire, a peer
without it gets nothing (and cannot make the rank give up), and a server without it gets no key and
has nothing of its unpickled."""

from __future__ import annotations

import asyncio
import pickle
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from granny import serde
from granny.errors import AuthError, MpiError
from granny.migration import ship
from granny.planner.store import StateStore
from granny.transport import handshake

SERVER = """
import sys
import numpy as np
from granny.migration import ship
data, buffers = ship.pack(len, (np.arange(1000), "seven"), {"gen": 3})
server = ship.Server("127.0.0.1")
print(server.port, server.key.hex(), flush=True)
print("served" if server.serve(data, buffers, timeout=60) else "not served", flush=True)
"""


@pytest.fixture
def server() -> Iterator[tuple[subprocess.Popen[str], str, bytes]]:
    """A process that serves a packed state, as a rank leaving at a migration point does."""
    proc = subprocess.Popen([sys.executable, "-c", SERVER], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    port, key = proc.stdout.readline().split()
    try:
        yield proc, f"127.0.0.1:{port}", bytes.fromhex(key)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=30)


def test_a_puller_without_the_key_is_refused_and_the_rank_still_moves(
        server: tuple[subprocess.Popen[str], str, bytes]) -> None:
    proc, address, key = server
    host, port = address.split(":")
    with socket.create_connection((host, int(port)), timeout=30) as s:
        with pytest.raises(AuthError, match="refused this link: wrong key"):
            handshake.dial(s, b"not the key, 16b", ship.CONTEXT, ship.CLAIM, "the state server")
        assert s.recv(1) == b""  # refused: the server closed it without sending a byte of state
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.recv(handshake.CHALLENGE.size, socket.MSG_WAITALL)  # a peer that breaks the handshake off
    data, buffers = ship.pull(address, key, timeout=30)
    resume, args, extra = ship.unpack(data, buffers)
    assert resume is len and args[1] == "seven" and extra == {"gen": 3}
    np.testing.assert_array_equal(args[0], np.arange(1000))
    assert proc.stdout is not None and proc.stdout.readline().strip() == "served"


class _Boom:
    """Unpickling this writes a marker: what an impostor's state would run in the puller."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (Path.write_text, (str(self.marker), "unpickled"))  # type: ignore[return-value]


def test_a_server_without_the_key_gets_no_key_and_nothing_of_it_is_unpickled(tmp_path: Path) -> None:
    """A listener at the state's address that does not know the key (one that took the port, say)."""
    marker = tmp_path / "unpickled"
    listener = socket.create_server(("127.0.0.1", 0))
    heard = bytearray()

    def impostor() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(5)
            conn.sendall(handshake.CHALLENGE.pack(handshake.MAGIC, b"n" * 16))
            try:
                while len(heard) < handshake.ANSWER.size and (chunk := conn.recv(4096)):
                    heard.extend(chunk)
            except TimeoutError:
                pass
            conn.sendall(handshake.VERDICT.pack(handshake.ACCEPTED, bytes(32)) + serde.frame([
                pickle.dumps(_Boom(marker))]))

    thread = threading.Thread(target=impostor, daemon=True)
    thread.start()
    key = b"k" * ship.KEY_BYTES
    with pytest.raises(MpiError, match="could not prove it knows the key"):
        ship.pull(f"127.0.0.1:{listener.getsockname()[1]}", key, timeout=10)
    thread.join(10)
    listener.close()
    assert key not in heard and len(heard) == handshake.ANSWER.size
    assert not marker.exists()


def test_the_state_store_serves_a_file_once_to_the_holder_of_its_key(tmp_path: Path) -> None:
    loop = asyncio.new_event_loop()
    store = StateStore(tmp_path, loop, bind="127.0.0.1")
    try:
        path = store.path("app-1", "g1", 0)
        path.parent.mkdir(parents=True)
        path.write_bytes(serde.frame(ship.pack(len, ("state",), {})[:1]))  # as pull_to_file stores it
        port, key = store.grant("app-1", "g1", 0)
        with pytest.raises(MpiError, match="wrong key"):
            ship.pull(f"127.0.0.1:{port}", b"x" * ship.KEY_BYTES, timeout=30)
        data, buffers = ship.pull(f"127.0.0.1:{port}", key, timeout=30)
        assert ship.unpack(data, buffers)[1] == ("state",)
        with pytest.raises(MpiError, match="wrong key"):  # one-time: the key is spent
            ship.pull(f"127.0.0.1:{port}", key, timeout=30)
    finally:
        store.close()
        loop.close()
