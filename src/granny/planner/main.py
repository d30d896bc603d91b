"""Run a planner process: the RPC port, the HTTP API and the journal, until SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import os
import signal
import sys
from typing import Any

from ..config import Config, read_or_create_credential, write_private
from .conn import Conn
from .server import PlannerServer

log = logging.getLogger("granny.planner")


async def serve(config: Config, bind: str, port: int, http_port: int | None, policy: str | None = None,
                ready_line: bool = True) -> None:
    secret = read_or_create_credential(config.secret_path)
    token = read_or_create_credential(config.token_path)
    loop = asyncio.get_running_loop()
    tls: dict[str, Any] = {}
    if config.tls_cert:
        from ..transport.tls import server_context

        # The TLS handshake happens before the Conn (and its deadline) exists: it gets a deadline of its own.
        tls = {"ssl": server_context(config.tls_cert, config.tls_key), "ssl_handshake_timeout": config.handshake_timeout}
    elif not is_loopback(bind):
        log.warning("listening on %s without TLS: anyone on the network can reach the RPC port and the HTTP API, "
                    "and an on-path attacker can read calls and inject frames into authenticated connections; "
                    "pass --tls-cert/--tls-key (see docs/security.md)", bind or "every interface")
    planner = PlannerServer(config, secret, token, policy)
    planner.store.bind = "127.0.0.1" if is_loopback(bind) else "0.0.0.0"
    server = await loop.create_server(lambda: Conn(planner), bind, port, reuse_address=True, backlog=1024, **tls)
    rpc_port = server.sockets[0].getsockname()[1]
    unix_server = None
    unix_path = str((config.data_dir / "planner.sock").resolve())
    if len(unix_path) < 100:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(unix_path)
        unix_server = await loop.create_unix_server(lambda: Conn(planner), unix_path)
        os.chmod(unix_path, 0o600)
        planner.unix_path = unix_path
    http_addr = ""
    http_task = None
    if http_port is not None:
        from .http import start_http

        http_task, http_bound = await start_http(planner, bind, http_port, config.tls_cert, config.tls_key)
        http_addr = f"{_advertised(bind)}:{http_bound}"
    address = f"{_advertised(bind)}:{rpc_port}"
    write_private(config.planner_info_path, json.dumps({"address": address, "http": http_addr, "pid": _pid()}))
    if ready_line:
        print(f"READY address={address} http={http_addr} data_dir={config.data_dir}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()
    if unix_server is not None:
        unix_server.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(unix_path)
    if http_task is not None:
        http_task.cancel()
    planner.close()


def is_loopback(bind: str) -> bool:
    """True if ``bind`` listens on loopback only (a wildcard or a host name counts as beyond it)."""
    if bind == "localhost":
        return True
    try:
        return ipaddress.ip_address(bind).is_loopback
    except ValueError:
        return False


def _advertised(bind: str) -> str:
    return "127.0.0.1" if bind in ("0.0.0.0", "", "::") else bind


def _pid() -> int:
    return os.getpid()


def run(config: Config, bind: str, port: int, http_port: int | None, policy: str | None = None) -> int:
    logging.basicConfig(level=config.log_level, stream=sys.stderr, format="%(asctime)s planner %(levelname)s %(message)s")
    try:
        import uvloop

        uvloop.run(serve(config, bind, port, http_port, policy))
    except ImportError:
        asyncio.run(serve(config, bind, port, http_port, policy))
    return 0
