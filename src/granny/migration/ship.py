"""How a moving rank's state travels: packed once, served by the old process, pulled by the new one.

Theory of operation
- ``pack`` pickles ``(resume, args, extra)`` with cloudpickle (so a ``resume`` defined in the program's
  own ``__main__`` travels by value) at protocol 5: numpy arrays and other buffers go out-of-band, as
  views of their own memory, never copied into the pickle.
- The old process listens on a fresh port of the address other hosts reach it at, with a fresh
  16-byte key; the planner passes both to the target granule only (:class:`Server`).
- The puller and the server prove the key to each other with granny's one handshake
  (:mod:`granny.transport.handshake`: a fresh nonce from each side, HMAC both ways), so the key never
  crosses the wire, a recorded handshake proves nothing later, and neither side sends or reads a byte of
  state before the other has proved it. The puller then gets the state as a pickle frame
  (:mod:`granny.serde`: the head with the part sizes, then the pickle and each buffer straight from the
  old process's memory, ``sendall`` of a memoryview), receives each part into one preallocated buffer,
  and acknowledges: only then does the old process end.
- Plaintext, as the MPI data plane is; the key keeps others from pulling (or posing as) the state.
"""

from __future__ import annotations

import os
import secrets
import socket
import time
from collections.abc import Callable
from typing import Any

from .. import serde
from ..config import migration_timeout
from ..errors import AuthError, MpiError, ProtocolError
from ..mpi import runtime
from ..transport import handshake
from ..tunables import MAX_STATE
from ..tunables import STATE_CHUNK as CHUNK

KEY_BYTES = 16
CONTEXT = b"granny-migration-state-v1"  # what the handshake binds: this link carries a rank's state
CLAIM = 0  # the handshake's claim: the one-time key alone names the state


def pack(resume: Any, args: tuple[Any, ...], extra: dict[str, Any]) -> tuple[bytes, list[memoryview]]:
    """The pickle and its out-of-band buffers."""
    runtime.packing[0] = True
    try:
        data, *buffers = serde.pickle_parts((resume, args, extra), by_value=True)
    except Exception as exc:  # any pickling failure means the same to the caller
        raise MpiError(f"the migration point's resume function or arguments cannot be pickled: {exc}") from exc
    finally:
        runtime.packing[0] = False
    assert isinstance(data, bytes)
    return data, [memoryview(b) for b in buffers]


def unpack(data: bytes | bytearray, buffers: list[bytearray]) -> tuple[Any, tuple[Any, ...], dict[str, Any]]:
    resume, args, extra = serde.loads([data, *buffers])
    return resume, tuple(args), dict(extra)


class Server:
    """Serves one rank's packed state to the one puller that shows the key."""

    def __init__(self, ip: str) -> None:
        self.key = secrets.token_bytes(KEY_BYTES)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind((ip or "0.0.0.0", 0))
        self.sock.listen(4)
        self.ip = ip
        self.port = int(self.sock.getsockname()[1])

    def serve(self, data: bytes, buffers: list[memoryview], timeout: float | None = None) -> bool:
        """Hand the state over; False when nobody with the key pulled it within ``timeout`` seconds.

        A peer that fails the handshake (or breaks it off) is dropped and the wait goes on, until the
        deadline: another local process cannot make the rank give up its state, only delay it."""
        timeout = migration_timeout() if timeout is None else timeout
        deadline = time.monotonic() + timeout
        try:
            while (left := deadline - time.monotonic()) > 0:
                self.sock.settimeout(left)
                conn, _ = self.sock.accept()
                with conn:
                    try:
                        conn.settimeout(left)
                        if accept(conn, [self.key]) is None:
                            continue  # not the puller: wait for the right one
                    except (OSError, MpiError):
                        continue
                    conn.settimeout(timeout)
                    conn.sendall(serde.frame_head([data, *buffers]))
                    conn.sendall(data)
                    for buf in buffers:
                        conn.sendall(buf)
                    return _recv_exact(conn, 1) == b"\x01"
            return False
        except (OSError, MpiError):
            return False
        finally:
            self.sock.close()


def pull(address: str, key: bytes, timeout: float | None = None) -> tuple[bytearray, list[bytearray]]:
    """Fetch a rank's packed state from ``address`` ("ip:port")."""
    host, _, port = address.rpartition(":")
    timeout = migration_timeout() if timeout is None else timeout
    try:
        with socket.create_connection((host, int(port)), timeout=timeout) as conn:
            _dial(conn, key, address)
            data, *buffers = serde.read_frame(lambda n: _recv_into(conn, bytearray(n)), MAX_STATE)
            conn.sendall(b"\x01")
            return data, buffers
    except AuthError as exc:
        raise MpiError(f"the moved rank's state at {address}: {exc}") from exc
    except ProtocolError as exc:
        raise MpiError(f"the moved rank's state from {address} is malformed: {exc}") from exc
    except OSError as exc:
        raise MpiError(f"could not fetch the moved rank's state from {address}: {exc}") from exc


def pull_to_file(address: str, key: bytes, path: str, timeout: float | None = None,
                 before_ack: Callable[[int], None] | None = None) -> int:
    """Fetch a rank's packed state from ``address`` into the file ``path``, as it travels (never all in
    memory), in the form :func:`serve_file` sends it back; synced to disk before the old process is told it
    may end (``before_ack(size)`` runs between the two). Returns its size."""
    host, _, port = address.rpartition(":")
    timeout = migration_timeout() if timeout is None else timeout
    try:
        with socket.create_connection((host, int(port)), timeout=timeout) as conn, open(path, "wb") as out:
            _dial(conn, key, address)
            head, sizes = serde.read_head(lambda n: _recv_into(conn, bytearray(n)), MAX_STATE)
            out.write(head)
            left = sum(sizes)
            total = len(head) + left
            chunk = bytearray(min(CHUNK, max(left, 1)))
            view = memoryview(chunk)
            while left:
                n = conn.recv_into(view[:min(left, len(chunk))])
                if n == 0:
                    raise MpiError(f"the connection closed with {left} bytes of the rank's state still to come")
                out.write(view[:n])
                left -= n
            out.flush()
            os.fsync(out.fileno())
            if before_ack is not None:
                before_ack(int(total))
            conn.sendall(b"\x01")
            return int(total)
    except AuthError as exc:
        raise MpiError(f"the rank's state at {address}: {exc}") from exc
    except ProtocolError as exc:
        raise MpiError(f"the rank's state from {address} is malformed: {exc}") from exc
    except OSError as exc:
        raise MpiError(f"could not fetch the rank's state from {address}: {exc}") from exc


def serve_file(conn: socket.socket, path: str, timeout: float) -> bool:
    """Send a state stored by :func:`pull_to_file` to a puller (:func:`pull`); True once it acknowledged."""
    conn.settimeout(timeout)
    with open(path, "rb") as fh:
        conn.sendfile(fh)
    return _recv_exact(conn, 1) == b"\x01"


def accept(conn: socket.socket, keys: list[bytes]) -> bytes | None:
    """The server's side of the handshake: which of ``keys`` the puller proved (and was told it was
    accepted with), or None (it was told "wrong key"). Reads fixed-size records only."""
    acceptor = handshake.Acceptor(b"", CONTEXT)
    conn.sendall(acceptor.challenge())
    answer = _recv_into(conn, bytearray(handshake.ANSWER.size))
    for key in keys:
        acceptor.key = key
        if acceptor.check(answer) == CLAIM:
            conn.sendall(acceptor.verdict(handshake.ACCEPTED))
            return key
    conn.sendall(acceptor.verdict(handshake.WRONG_KEY))
    return None


def _dial(conn: socket.socket, key: bytes, address: str) -> None:
    handshake.dial(conn, key, CONTEXT, CLAIM, f"the state server at {address}")


def _recv_exact(conn: socket.socket, n: int) -> bytes:
    return bytes(_recv_into(conn, bytearray(n)))


def _recv_into(conn: socket.socket, buf: bytearray) -> bytearray:
    view = memoryview(buf)
    got = 0
    while got < len(buf):
        n = conn.recv_into(view[got:got + CHUNK])
        if n == 0:
            raise MpiError(f"the connection closed after {got} of {len(buf)} bytes of a rank's state")
        got += n
    return buf
