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
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from .config import (
    ENV_ADDRESS,
    ENV_HEARTBEAT_TIMEOUT,
    ENV_LOG_LEVEL,
    ENV_TOKEN,
    ENV_WATCH_FD,
    env,
    env_slots,
    private_dir,
)
from .errors import ClusterError


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
                 heartbeat_timeout: float | None = None, bind: str = "127.0.0.1", log_level: str = "",
                 granule_user: str | None = None, python: str | None = None) -> None:
        """``granule_user``: as ``granny worker --granule-user``; None leaves the worker's default
        (``nobody`` under root). The embedded cluster and the test fixtures pass ``"same"``.
        ``python``: the interpreter of the planner and workers (default: this one)."""
        self.slots = slots or env_slots()
        self.ephemeral = data_dir is None if ephemeral is None else ephemeral
        self.data_dir = Path(data_dir) if data_dir is not None else Path(tempfile.mkdtemp(prefix="granny-"))
        private_dir(self.data_dir)
        spare = free_ports(2, bind)
        self.port = port or spare[0]
        self.http_port = http_port if http_port is None or http_port else spare[1]
        self.bind = bind
        self.address = f"{bind}:{self.port}"
        self.http_address = f"{bind}:{self.http_port}" if self.http_port else ""
        self._watch_r, self._watch_w = os.pipe()
        os.set_inheritable(self._watch_r, True)
        self.procs: list[subprocess.Popen[bytes]] = []
        self._drained: set[int] = set()  # children whose stdout a thread drains (and closes at EOF)
        self._refs = 0
        self._stopped = False
        env = dict(os.environ, **{ENV_WATCH_FD: str(self._watch_r)})
        if heartbeat_timeout is not None:
            env[ENV_HEARTBEAT_TIMEOUT] = str(heartbeat_timeout)
        env.pop(ENV_ADDRESS, None)
        if log_level:
            env[ENV_LOG_LEVEL] = log_level
        py = [python or sys.executable, "-m", "granny"]
        planner = [*py, "planner", "--bind", bind, "--port", str(self.port), "--data-dir", str(self.data_dir)]
        planner += ["--http-port", str(self.http_port)] if self.http_port else ["--no-http"]
        # The planner writes the secret; create it first so workers can start at the same time.
        from .config import read_or_create_credential

        read_or_create_credential(self.data_dir / "secret")
        self.token = read_or_create_credential(self.data_dir / "token")
        self._spawn(planner, env)
        self.workers: dict[str, tuple[int, list[str]]] = {}  # host id -> (its index in procs, its command)
        self._env = env
        for i in range(workers):
            host_id = "local" if workers == 1 else f"local{i + 1}"
            argv = [*py, "worker", "--planner", self.address, "--slots", str(self.slots), "--host-id", host_id,
                    "--secret-file", str(self.data_dir / "secret")]
            argv += ["--granule-user", granule_user] if granule_user is not None else []
            self.workers[host_id] = (len(self.procs), argv)
            self._spawn(argv, env)
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
                proc.stdout.close()
                raise ClusterError(f"{' '.join(map(str, proc.args))} exited with code {proc.wait()} before it was ready")  # type: ignore[arg-type]
            if line.startswith(b"READY"):
                # Keep draining stdout so a chatty child never blocks on a full pipe.
                threading.Thread(target=_drain, args=(proc.stdout,), daemon=True).start()
                self._drained.add(proc.pid)
                return
        raise ClusterError("a cluster process did not become ready in time")

    def revive(self, hosts: list[dict[str, Any]]) -> list[str]:
        """Start again the workers that exited after an eviction (code 0) whose host was restored since
        (``granny hosts restore``: ``evicted`` is false again in the planner's ``hosts`` rows). Returns them."""
        rows = {h["host_id"]: h for h in hosts}
        revived = []
        for host_id, (index, argv) in self.workers.items():
            row = rows.get(host_id)
            if self.procs[index].poll() == 0 and row is not None and not row.get("evicted") and not row["alive"]:
                proc = subprocess.Popen(argv, env=self._env, stdout=subprocess.PIPE, pass_fds=(self._watch_r,))
                self.procs[index] = proc
                self._wait_ready(proc)
                revived.append(host_id)
        return revived

    def adopt(self, index: int, proc: subprocess.Popen[bytes]) -> None:
        """Put ``proc`` (started by the caller, its READY line read) in place of child ``index``: its
        stdout is drained from now on, and it is stopped with the cluster."""
        assert proc.stdout is not None
        threading.Thread(target=_drain, args=(proc.stdout,), daemon=True).start()
        self._drained.add(proc.pid)
        self.procs[index] = proc

    def evicted(self) -> bool:
        """A worker exited with code 0: its host was evicted (see :meth:`revive`)."""
        return any(self.procs[i].poll() == 0 for i, _ in self.workers.values())

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
            if proc.pid not in self._drained and proc.stdout is not None:
                proc.stdout.close()
        os.close(self._watch_w)
        os.close(self._watch_r)
        if self.ephemeral:
            shutil.rmtree(self.data_dir, ignore_errors=True)


def _drain(stream: Any) -> None:
    with stream:  # closed at EOF: the child, and whatever inherited its stdout, have exited
        for _ in stream:
            pass


_embedded: LocalCluster | None = None
_embedded_lock = threading.Lock()


def embedded_cluster() -> LocalCluster:
    """The process-wide embedded cluster, started on first use and stopped at exit."""
    global _embedded
    with _embedded_lock:
        if _embedded is None or _embedded._stopped:
            # Its granules run only this process's own functions, as this process's user, as
            # multiprocessing's would: nobody else can submit to it (docs/security.md).
            _embedded = LocalCluster(workers=1, http_port=None, log_level="ERROR", granule_user="same")
            atexit.register(_embedded.stop)
        return _embedded


def watch_parent() -> None:
    """In a cluster child: exit when the owning process's watchdog pipe closes."""
    raw = env(ENV_WATCH_FD, pop=True)
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


def granny_command() -> list[str]:
    """How to start the ``granny`` command of this interpreter's environment."""
    exe = Path(sys.executable).with_name("granny")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "granny"]


class UpProcess:
    """``granny up`` run as a subprocess, exactly as a user starts it; ready once it prints READY.

    Its output is drained for its whole life (into ``lines``, the last ``keep`` of them), so it never
    blocks on a full pipe. ``env`` holds GRANNY_ADDRESS/GRANNY_TOKEN for commands run against it."""

    def __init__(self, data_dir: str | Path, *, slots: int = 2, workers: int = 1, timeout: float = 60.0,
                 new_session: bool = False, keep: int = 100, granule_user: str | None = "same") -> None:
        """``granule_user`` defaults to ``same`` here (tests and benchmarks write files from functions);
        None gives ``granny up``'s own default."""
        self.data_dir = Path(data_dir)
        self.lines: list[str] = []
        self.cmd = [*granny_command(), "up", "--workers", str(workers), "--slots", str(slots), "--data-dir",
                    str(self.data_dir), "--port", "0", "--http-port", "0"]
        self.cmd += ["--granule-user", granule_user] if granule_user is not None else []
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, text=True, bufsize=1, start_new_session=new_session)
        ready = threading.Event()

        def pump() -> None:
            assert self.proc.stdout is not None
            with self.proc.stdout:  # closed at EOF
                for line in self.proc.stdout:
                    self.lines.append(line.rstrip("\n"))
                    del self.lines[:-keep]
                    if line.startswith("READY "):
                        ready.set()
            ready.set()  # EOF: wake the waiter, which then finds no READY line

        threading.Thread(target=pump, name="granny-up-output", daemon=True).start()
        ready.wait(timeout)
        self.ready_line = next((x for x in self.lines if x.startswith("READY ")), "")
        address = re.search(r"address=(\S+)", self.ready_line)
        if address is None:
            state = "is still starting" if self.alive() else f"exited ({self.proc.poll()})"
            self.stop()
            raise ClusterError(f"`granny up` {state} without a READY line after {timeout:g} s: {self.lines[-5:]}")
        self.ready_s = time.perf_counter() - t0
        self.address = address.group(1)
        token_file = re.search(r"token_file=(\S+)", self.ready_line)
        self.token = Path(token_file.group(1) if token_file else self.data_dir / "token").read_text().strip()
        self.env = {ENV_ADDRESS: self.address, ENV_TOKEN: self.token}

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, grace: float = 15.0) -> int | None:
        """Ctrl-C, as a user would; then terminate and kill. Returns the exit code (None if it was killed)."""
        if self.proc.poll() is not None:
            return self.proc.returncode
        self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            return None
