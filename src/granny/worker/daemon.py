"""The worker daemon: registers its host, heartbeats, and keeps a pool of warm granules.

Theory of operation: three threads. The main thread reads the planner connection (kill and spawn
orders). A heartbeat thread sends a heartbeat every interval while connected. A zygote thread reads
the zygote's events: a granule that exits is reported to the planner with its cause and replaced,
so the host always offers ``slots`` warm granules. When the planner connection drops, the worker
keeps its granules and reconnects until the planner is back; exit reports it could not send then
are sent once it is. When the planner declared this host dead (a pause longer than the heartbeat
timeout), it says so (Rejoin) and closes the connection: the worker registers again, as the host's
next incarnation, and kills the granules the planner fenced (their work was already failed). The
heartbeat period comes from the planner (Registered), so the timeout is set once, per cluster.
When the planner evicts the host (the end of an eviction notice: StopWorker), the worker kills its
granules and exits with code 0, without registering again.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import IO

from ..config import (
    ENV_HOST_ID,
    ENV_PLANNER,
    ENV_SECRET,
    ENV_SHM_OWNER,
    ENV_TOKEN,
    Config,
    parse_address,
    worker_shm_tag,
)
from ..errors import ConnectionLostError, GrannyError
from ..transport import BlockingConn, dial, granule_credential
from ..transport.redial import redial
from ..tunables import UNSENT_MAX
from ..wire import GranuleExit, Heartbeat, KillGranule, Registered, Rejoin, Role, Spawn, StopWorker
from .granule_user import resolve
from .pausing import Pidfds
from .procutil import describe_status
from .zygote_pipe import encode_command


class Worker:
    def __init__(self, config: Config, planner: str, secret: str, slots: int, host_id: str,
                 register_at: float = 0.0) -> None:
        self.config = config
        self.register_at = register_at  # wall clock: start now, register then (a spot VM booted ahead)
        self.planner = planner
        self.address = parse_address(planner, "--planner")
        self.secret = secret
        self.slots = slots
        self.host_id = host_id
        self.conn: BlockingConn | None = None
        self.unix = ""  # the planner's Unix socket, when it runs in this network namespace
        self.connected = threading.Event()
        self.stopping = False
        self.kill_reasons: dict[str, str] = {}
        self.live: set[str] = set()
        self.pidfds = Pidfds()  # pauses go straight to the granule (see pausing.py)
        self.paused: set[str] = set()  # granules this worker stopped for the planner and did not continue yet
        self._seq = 0
        # Granule ids never repeat across worker restarts: a credential of an earlier incarnation's
        # granule must not become valid again for a new granule of the same number.
        self._id_tag = os.urandom(3).hex()
        self._lock = threading.Lock()
        # This worker's tag on shared memory, for itself and every granule it forks (reaper.py).
        os.environ[ENV_SHM_OWNER] = worker_shm_tag(host_id, planner)
        self.incarnation = 0  # as the planner numbers this host's registrations (see Registered)
        self.boot = secrets.token_hex(8)  # this process, so the planner tells a restart from a reconnect
        self.heartbeat_interval = min(config.heartbeat_interval, config.heartbeat_timeout / 4)
        self._unsent: list[GranuleExit] = []  # exit reports made while the planner was unreachable
        self._conn_lock = threading.Lock()  # the connection in use, and the reports queued for the next one
        self.granule_user = resolve(config.granule_user)
        # The zygote (and every granule forked from it) gets neither the cluster secret nor the API
        # token: each granule gets a credential of its own with its spawn command (see spawn).
        env = {k: v for k, v in os.environ.items() if k not in (ENV_SECRET, ENV_TOKEN)}
        env.update({ENV_PLANNER: planner, ENV_HOST_ID: host_id})
        argv = [sys.executable, "-m", "granny.worker.zygote"]
        argv += self.granule_user.argv() if self.granule_user is not None else []
        self.zygote = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
        assert self.zygote.stdout is not None and self.zygote.stdin is not None
        self.zin: IO[bytes] = self.zygote.stdin
        self.zout: IO[bytes] = self.zygote.stdout

    # --- zygote -------------------------------------------------------------------------------
    def _zygote_cmd(self, obj: dict[str, str], credential: bytes = b"") -> None:
        with self._lock:
            try:
                self.zin.write(encode_command(obj, credential))
                self.zin.flush()
            except (BrokenPipeError, ValueError):
                pass

    def spawn(self, count: int) -> None:
        for _ in range(count):
            with self._lock:
                self._seq += 1
                gid = f"{self.host_id}-{self._id_tag}-g{self._seq}"
                self.live.add(gid)
            self._zygote_cmd({"spawn": gid, "unix": self.unix}, granule_credential(self.secret, self.host_id, gid))

    def _zygote_events(self) -> None:
        for line in self.zout:
            event = json.loads(line)
            if "spawned" in event:
                self.pidfds.spawned(event["spawned"], int(event["pid"]))
            if "exit" not in event:
                continue
            gid = event["exit"]
            self.pidfds.exited(gid)
            self.paused.discard(gid)
            cause, code = describe_status(event["status"])
            reason = self.kill_reasons.pop(gid, "")
            if reason:
                cause = f"killed by the planner ({reason})"
            with self._lock:
                self.live.discard(gid)
            self._send(GranuleExit(granule_id=gid, cause=cause, exit_code=code))
            if not self.stopping:
                self.spawn(max(0, self.slots - len(self.live)))
        if not self.stopping:
            print(f"worker {self.host_id}: the zygote died; exiting", file=sys.stderr, flush=True)
            os._exit(1)

    # --- planner ------------------------------------------------------------------------------
    def _send(self, msg: GranuleExit | Heartbeat) -> None:
        with self._conn_lock:
            conn = self.conn if self.connected.is_set() else None
            if conn is None:
                if isinstance(msg, GranuleExit) and len(self._unsent) < UNSENT_MAX:
                    self._unsent.append(msg)  # the planner must hear of it, or it waits on that granule
                return
        try:
            conn.send(msg)
        except ConnectionLostError:
            with self._conn_lock:
                if isinstance(msg, GranuleExit) and len(self._unsent) < UNSENT_MAX:
                    self._unsent.append(msg)
                if self.conn is conn:  # not a connection made since, by the main thread
                    self.connected.clear()

    def _connect(self, first: bool) -> None:
        """Connect (again) and send the exit reports held meanwhile; only the first connection gives up."""
        def once() -> None:
            conn, _, self.unix = dial(self.address, Role.WORKER, self.secret, self.unix, name=self.host_id,
                                      host_id=self.host_id, pid=os.getpid(), slots=self.slots, boot=self.boot)
            with self._conn_lock:
                for msg in self._unsent:  # (a failure here retries them all on the next connection)
                    conn.send(msg)
                self._unsent.clear()
                self.conn = conn
                self.connected.set()

        deadline = time.monotonic() + self.config.reconnect_timeout if first else None
        redial(once, deadline, f"the planner at {self.planner}", max_delay=1.0)

    def _heartbeats(self) -> None:
        from .reaper import sweep

        while not self.stopping:
            self._send(Heartbeat(granules=len(self.live), load=os.getloadavg()[0]))
            sweep()  # shared memory of processes killed before they could clean up
            time.sleep(self.heartbeat_interval)  # the heartbeat period itself

    def run(self) -> int:
        ready = json.loads(self.zout.readline() or b"{}")
        if "ready" not in ready:
            print("worker: the zygote failed to start", file=sys.stderr)
            return 1
        time.sleep(max(0.0, self.register_at - time.time()))  # (0: at once) its host is not back before then
        self._connect(first=True)
        threading.Thread(target=self._zygote_events, name="zygote-events", daemon=True).start()
        self.spawn(self.slots)
        threading.Thread(target=self._heartbeats, name="heartbeats", daemon=True).start()
        print(f"READY host_id={self.host_id} slots={self.slots} planner={self.planner}", flush=True)
        while not self.stopping:
            assert self.conn is not None
            try:
                msg, _ = self.conn.recv()
            except ConnectionLostError:
                self.connected.clear()
                if self.stopping:
                    break
                self._continue_paused()
                if self.config.log_level in ("INFO", "DEBUG", "WARNING"):
                    print(f"worker {self.host_id}: lost the planner; reconnecting", file=sys.stderr, flush=True)
                self._connect(first=False)
                continue
            if isinstance(msg, KillGranule) and msg.signal == "NORMAL":  # out of the idle class (planner/idle.py)
                if msg.granule_id in self.live:
                    self.pidfds.normal(msg.granule_id)
            elif isinstance(msg, KillGranule) and msg.signal in ("STOP", "CONT"):  # a pause (planner/pausing.py)
                self._pause(msg.granule_id, msg.signal)
            elif isinstance(msg, KillGranule):
                if msg.granule_id in self.live:  # (a fenced granule's kill is ordered again after it exited)
                    self.kill_reasons[msg.granule_id] = msg.reason or "killed"
                    self._zygote_cmd({"kill": msg.granule_id})
            elif isinstance(msg, Spawn):
                self.spawn(msg.count)
            elif isinstance(msg, Registered):
                self._registered(msg)
            elif isinstance(msg, Rejoin):
                print(f"worker {self.host_id}: the planner forgot this host ({msg.reason}); registering again",
                      file=sys.stderr, flush=True)
                self.connected.clear()
                self.conn.close()
                self._connect(first=False)
            elif isinstance(msg, StopWorker):
                return self._evicted(msg.reason)
        return 0

    def _pause(self, gid: str, sig: str) -> None:
        if gid not in self.live:
            return
        (self.paused.add if sig == "STOP" else self.paused.discard)(gid)
        if not self.pidfds.signal(gid, sig):
            self._zygote_cmd({"signal": gid, "sig": sig})

    def _continue_paused(self) -> None:
        """The planner went away: continue the granules it paused. A restarted planner knows nothing of those
        pauses and would never continue them, and a stopped granule cannot report its running call to it
        (it would run the call again elsewhere). If the same planner comes back, its paused calls just run
        on unpaused until they end (their Done continues them again: no harm)."""
        for gid in list(self.paused):
            self._pause(gid, "CONT")

    def _evicted(self, reason: str) -> int:
        """The planner took this host back (an eviction notice ran out): stop, granules and all, and stay down."""
        print(f"worker {self.host_id}: stopping: {reason}", file=sys.stderr, flush=True)
        self.stop()
        self.zygote.wait()
        from .reaper import sweep

        sweep()  # the granules died with the zygote, killed: remove the shared memory they left
        return 0

    def _registered(self, msg: Registered) -> None:
        # A planner with a shorter timeout than this worker's default must get beats often enough.
        self.heartbeat_interval = msg.heartbeat_interval if msg.heartbeat_interval > 0 else self.heartbeat_interval
        sock = self.conn.sock if self.conn is not None else None
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6) and msg.heartbeat_timeout > 0:
            # Behind a partition, heartbeats go unacknowledged and TCP backs off for minutes before it
            # gives up. Give up after the heartbeat timeout instead (the planner has given up on this
            # host by then), so the worker starts dialling again and is back soon after the network.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, max(1000, int(msg.heartbeat_timeout * 1000)))
        if msg.incarnation != self.incarnation and self.incarnation:
            print(f"worker {self.host_id}: registered again, as incarnation {msg.incarnation} of this host",
                  file=sys.stderr, flush=True)
        self.incarnation = msg.incarnation

    def stop(self) -> None:
        self.stopping = True
        self.zygote.kill()  # its granules die with it (PR_SET_PDEATHSIG)
        self.pidfds.close()
        if self.conn is not None:
            self.conn.close()


def run_worker(config: Config, planner: str, secret: str, slots: int, host_id: str, register_at: float = 0.0) -> int:
    worker = Worker(config, planner, secret, slots, host_id, register_at)

    def _stop(signum: int, frame: object) -> None:
        worker.stop()
        os._exit(0)

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        return worker.run()
    except GrannyError as exc:
        print(f"worker {host_id}: {exc}", file=sys.stderr)
        worker.stop()
        return 2
