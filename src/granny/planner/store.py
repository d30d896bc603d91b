"""Where frozen MPI ranks' state waits: files under the planner's data directory, and a small server
that hands each one back, once, to the granule that thaws the rank.

Theory of operation
- Fetching (:meth:`StateStore.fetch`): a thread pulls a freezing rank's packed state from its old process
  straight into ``state/<world>/<gen>/<rank>.state`` (never all in memory), syncs it, and only then
  acknowledges, so the old process ends only once its state is on disk. The result comes back to the
  event loop, which hands it to the planner's state (``state_stored``).
- Serving (:meth:`StateStore.grant`): a thawing rank's Run carries this store's port and a fresh 16-byte
  key for that one file; the serving thread runs the handshake against the keys it has granted (the
  puller proves one, never sends it) and ``sendfile``s that key's file. The wire format is
  granny.migration.ship's, so a granule pulls from the planner exactly as it would from another rank.
- The files of a world are deleted when it has thawed or ended (:meth:`drop`); which worlds are frozen is
  journaled (the ``frozen`` table), so a restarted planner thaws them too.
Plaintext, as the MPI data plane is; the one-time keys keep others from reading the state.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import shutil
import socket
import threading
from collections.abc import Callable
from pathlib import Path

from ..config import private_dir
from ..migration import ship
from ..tunables import MIGRATION_TIMEOUT

log = logging.getLogger("granny.planner")


class StateStore:
    def __init__(self, root: Path, loop: asyncio.AbstractEventLoop, bind: str = "0.0.0.0",
                 timeout: float = MIGRATION_TIMEOUT) -> None:
        self.root = root
        self.timeout = timeout  # Config.migration_timeout
        self.loop = loop
        self.bind = bind
        self._keys: dict[bytes, str] = {}  # one-time key -> file
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None

    def path(self, req_id: str, slot: str, index: int) -> Path:
        """``slot``: "g<gen>" (a freeze into generation gen) or "c<n>" (checkpoint n)."""
        return self.root / req_id / slot / f"{index}.state"

    def fetch(self, req_id: str, index: int, slot: str, address: str, key: bytes,
              done: Callable[[str], None]) -> None:
        """Pull a rank's state into the store in a thread; ``done(error)`` runs on the event loop after."""
        path = self.path(req_id, slot, index)

        told = threading.Event()

        def tell(error: str) -> None:  # on the event loop
            try:
                done(error)
            finally:
                told.set()

        def stored(size: int) -> None:
            # The planner records the rank's state as stored before the rank hears so and goes on: its next
            # migration point then finds this checkpoint complete, never still "being saved".
            os.replace(tmp, path)
            log.info("stored %d bytes of rank %d of %s (%s)", size, index, req_id, slot)
            self.loop.call_soon_threadsafe(tell, "")
            told.wait(self.timeout)

        tmp = f"{path}.part"

        def work() -> None:
            try:
                private_dir(path.parent)
                ship.pull_to_file(address, key, tmp, self.timeout, before_ack=stored)
            except Exception as exc:  # the rank's freeze fails with the reason
                if not told.is_set():
                    self.loop.call_soon_threadsafe(tell, str(exc))

        threading.Thread(target=work, name=f"granny-store-{req_id}-{index}", daemon=True).start()

    def grant(self, req_id: str, slot: str, index: int) -> tuple[int, bytes]:
        """(port, one-time key) under which the rank's stored state can be pulled once."""
        port = self._listen()
        key = secrets.token_bytes(ship.KEY_BYTES)
        with self._lock:
            self._keys[key] = str(self.path(req_id, slot, index))
        return port, key

    def drop(self, req_id: str, slot: str = "") -> None:
        shutil.rmtree(self.root / req_id / slot if slot else self.root / req_id, ignore_errors=True)

    def _listen(self) -> int:
        with self._lock:
            if self._sock is None:
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind((self.bind, 0))
                sock.listen(64)
                self._sock = sock
                threading.Thread(target=self._serve, name="granny-store", daemon=True).start()
            return int(self._sock.getsockname()[1])

    def _serve(self) -> None:
        assert self._sock is not None
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        with conn:
            try:
                conn.settimeout(self.timeout)
                with self._lock:
                    keys = list(self._keys)
                key = ship.accept(conn, keys)  # the handshake: which grant's key the puller proved
                with self._lock:
                    path = self._keys.pop(key, None) if key is not None else None
                if path is not None:
                    ship.serve_file(conn, path, self.timeout)
            except Exception as exc:  # the puller sees the broken connection and fails the rank
                log.warning("serving a stored rank state failed: %s", exc)

    def close(self) -> None:
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None
