"""A planner (and a worker) started as `granny planner`/`granny worker` with any flags, for network tests.

Each helper starts exactly one process and stops it in ``stop()``; the planner's stderr goes to a
file that tests read for its log lines. Raw-socket helpers speak just enough of the wire to act as
an unauthenticated (or hostile) peer.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from granny.config import ENV_TLS_CA
from granny.wire import Challenge, FrameReader, Message

READY_TIMEOUT = 60.0


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRANNY_")}
    env.update(extra)
    return env


class PlannerProc:
    def __init__(self, data_dir: Path, *flags: str, http: bool = False) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir = data_dir
        self.err_path = data_dir / "planner.err"
        argv = [sys.executable, "-m", "granny", "planner", "--port", "0", "--data-dir", str(data_dir), *flags]
        argv += ["--http-port", "0"] if http else ["--no-http"]
        with open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err, env=_env())
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode()
        if not line.startswith("READY"):
            self.stop()
            raise AssertionError(f"planner did not start: {line!r} {self.log()[-2000:]}")
        self.ready_line = line
        self.address = re.search(r"address=(\S+)", line).group(1)  # type: ignore[union-attr]
        self.http = re.search(r"http=(\S*)", line).group(1)  # type: ignore[union-attr]
        host, port = self.address.rsplit(":", 1)
        self.addr = (host, int(port))
        self.pid = self.proc.pid
        self.token = (data_dir / "token").read_text().strip()

    def log(self) -> str:
        return self.err_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


class WorkerProc:
    def __init__(self, planner: PlannerProc, *flags: str, slots: int = 1) -> None:
        argv = [sys.executable, "-m", "granny", "worker", "--planner", planner.address, "--slots", str(slots),
                "--host-id", "w1", "--secret-file", str(planner.data_dir / "secret"), "--granule-user", "same", *flags]
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, env=_env())
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode()
        if not line.startswith("READY"):
            self.stop()
            raise AssertionError(f"worker did not start: {line!r}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def read_frame(sock: socket.socket, reader: FrameReader | None = None) -> Message | None:
    """One frame from a raw socket, or None at EOF (the peer closed)."""
    reader = reader or FrameReader()
    while True:
        try:
            n = sock.recv_into(reader.get_buffer())
        except ConnectionResetError:
            return None
        if n == 0:
            return None
        frames = reader.buffer_updated(n)
        if frames:
            return frames[0][0]


def raw_unauthenticated(addr: tuple[str, int], timeout: float = 30.0) -> socket.socket:
    """A TCP connection that got the planner's challenge and has sent nothing (fails if refused)."""
    sock = socket.create_connection(addr, timeout=timeout)
    assert isinstance(read_frame(sock), Challenge)
    return sock


def closed_by_peer(sock: socket.socket) -> bool:
    """Wait (up to the socket's timeout) for the peer to close; True on EOF, False if data came instead."""
    try:
        data = sock.recv(1 << 16)
    except ConnectionResetError:
        return True
    return data == b""


def make_ca(tmp: Path, name: str) -> tuple[Path, Path]:
    """A throw-away CA (certificate, key), made with the openssl command."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make test certificates")
    cert, key = tmp / f"{name}.pem", tmp / f"{name}.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", f"/CN={name}"],
                   check=True, capture_output=True)
    return cert, key


def make_server_cert(tmp: Path, ca: tuple[Path, Path], names: str = "IP:127.0.0.1,DNS:localhost"
                     ) -> tuple[Path, Path]:
    """A server certificate for ``names`` signed by ``ca``: (certificate, key)."""
    cert, key, csr, ext = tmp / "server.pem", tmp / "server.key", tmp / "server.csr", tmp / "server.ext"
    ext.write_text(f"subjectAltName={names}\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\n"
                   "extendedKeyUsage=serverAuth\n")
    subprocess.run(["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", str(key), "-out", str(csr), "-subj", "/CN=localhost"], check=True, capture_output=True)
    subprocess.run(["openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca[0]), "-CAkey", str(ca[1]),
                    "-CAcreateserial", "-out", str(cert), "-days", "2", "-extfile", str(ext)],
                   check=True, capture_output=True)
    return cert, key


__all__ = ["ENV_TLS_CA", "PlannerProc", "WorkerProc", "closed_by_peer", "make_ca", "make_server_cert",
           "raw_unauthenticated", "read_frame"]
