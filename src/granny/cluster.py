"""Local clusters: a planner and N workers as child processes of this one.

Used two ways: ``granny up`` (a cluster in the foreground until Ctrl-C) and the embedded cluster
that ``connect()`` starts when no address is given. Children hold the read end of a watchdog pipe
whose write end only this process has: when this process dies, even by ``kill -9``, the pipe reads
EOF and each child shuts down; workers take their zygote and granules with them. So an embedded
cluster never outlives its owner.
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from .config import env_slots
from .errors import ClusterError

ENV_WATCH_FD = "GRANNY_WATCH_FD"


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """Ports free right now, all different (each socket stays bound until all are chosen)."""
    socks = [socket.socket() for _ in range(count)]
    try:
        for s in socks:
            s.bind((host, 0))
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


class LocalCluster:
    def __init__(self, workers: int = 1, slots: int | None = None, data_dir: str | Path | None = None,
                 port: int = 0, http_port: int | None = 0, ephemeral: bool | None = None,
                 heartbeat_timeout: float | None = None, bind: str = "127.0.0.1", log_level: str = "") -> None:
        self.slots = slots or env_slots()
        self.ephemeral = data_dir is None if ephemeral is None else ephemeral
        self.data_dir = Path(data_dir) if data_dir is not None else Path(tempfile.mkdtemp(prefix="granny-"))
        self.data_dir.mkdir(parents=True, exist_ok=True)
        spare = free_ports(2, bind)
        self.port = port or spare[0]
        self.http_port = http_port if http_port is None or http_port else spare[1]
        self.bind = bind
        self.address = f"{bind}:{self.port}"
        self.http_address = f"{bind}:{self.http_port}" if self.http_port else ""
        self._watch_r, self._watch_w = os.pipe()
        os.set_inheritable(self._watch_r, True)
        self.procs: list[subprocess.Popen[bytes]] = []
        self._refs = 0
        self._stopped = False
        env = dict(os.environ, **{ENV_WATCH_FD: str(self._watch_r)})
        if heartbeat_timeout is not None:
            env["GRANNY_HEARTBEAT_TIMEOUT"] = str(heartbeat_timeout)
        env.pop("GRANNY_ADDRESS", None)
        if log_level:
            env["GRANNY_LOG_LEVEL"] = log_level
        py = [sys.executable, "-m", "granny"]
        planner = [*py, "planner", "--bind", bind, "--port", str(self.port), "--data-dir", str(self.data_dir)]
        planner += ["--http-port", str(self.http_port)] if self.http_port else ["--no-http"]
        # The planner writes the secret; create it first so workers can start at the same time.
        from .config import read_or_create_credential

        read_or_create_credential(self.data_dir / "secret")
        self.token = read_or_create_credential(self.data_dir / "token")
        self._spawn(planner, env)
        for i in range(workers):
            host_id = "local" if workers == 1 else f"local{i + 1}"
            self._spawn([*py, "worker", "--planner", self.address, "--slots", str(self.slots), "--host-id", host_id,
                         "--secret-file", str(self.data_dir / "secret")], env)
        try:
            for proc in self.procs:
                self._wait_ready(proc)
        except BaseException:
            self.stop()
            raise

    def _spawn(self, argv: list[str], env: dict[str, str]) -> None:
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, pass_fds=(self._watch_r,))
        self.procs.append(proc)

    def _wait_ready(self, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
        assert proc.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                raise ClusterError(f"{' '.join(map(str, proc.args))} exited with code {proc.wait()} before it was ready")  # type: ignore[arg-type]
            if line.startswith(b"READY"):
                # Keep draining stdout so a chatty child never blocks on a full pipe.
                threading.Thread(target=_drain, args=(proc.stdout,), daemon=True).start()
                return
        raise ClusterError("a cluster process did not become ready in time")

    def acquire(self) -> LocalCluster:
        self._refs += 1
        return self

    def release(self) -> None:
        self._refs -= 1

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        os.close(self._watch_w)
        os.close(self._watch_r)
        if self.ephemeral:
            shutil.rmtree(self.data_dir, ignore_errors=True)


def _drain(stream: object) -> None:
    for _ in stream:  # type: ignore[attr-defined]
        pass


_embedded: LocalCluster | None = None
_embedded_lock = threading.Lock()


def embedded_cluster() -> LocalCluster:
    """The process-wide embedded cluster, started on first use and stopped at exit."""
    global _embedded
    with _embedded_lock:
        if _embedded is None or _embedded._stopped:
            _embedded = LocalCluster(workers=1, http_port=None, log_level="ERROR")
            atexit.register(_embedded.stop)
        return _embedded


def watch_parent() -> None:
    """In a cluster child: exit when the owning process's watchdog pipe closes."""
    raw = os.environ.pop(ENV_WATCH_FD, "")
    if not raw:
        return
    fd = int(raw)

    def watch() -> None:
        try:
            while os.read(fd, 1):
                pass
        except OSError:
            pass
        os.kill(os.getpid(), 15)  # SIGTERM: the normal, clean shutdown path

    threading.Thread(target=watch, name="granny-watchdog", daemon=True).start()
