"""A granule's link to the planner: what the planner must not lose is kept until it is durable.

Theory of operation: the granule numbers every Log and Done frame (``seq``) and keeps it in an
outbox until the planner's cumulative Ack says its journal holds it (the planner sends one Ack per
journal commit, not per frame). Whichever thread finds the connection dead (a write of the task's
output, the fd-capture pump, the Done, a read, or the watcher thread that reads while a task runs)
reconnects at once, announcing the task it is running, and sends every unacknowledged frame again,
in order, before anything new. The planner drops what it already has: output by (task, run,
``part``), results by the task's state. So a planner restart neither loses nor repeats output, and a
task that finished while the old planner was dying reports its result to the new one instead of
being run again.

Bounds: output waiting for an Ack is capped at ``max_bytes``. Past the cap (a planner that stalls
without closing the connection) further output of the task is dropped, and a line
``[granny: N bytes of output lost]`` on stderr takes its place as soon as there is room again, or at
the latest before the task's result. Done frames are never dropped: a granule runs one task at a
time and reconnects before it takes another, so only a few can wait for an Ack.

Frames that arrive on a connection are tagged with its generation: a Run received from a planner
that has since gone away is not started (the new planner dispatches it again).

:meth:`Link.request` is the one send-and-wait of a granule's talk with the planner (migration points,
a world's rendezvous): the request goes again on every new connection (a planner that restarted never
saw it), only a frame of the connection it went out on answers it, and every other frame -- including
one the new planner sent before the request reached it (a Stdin, a Run) -- goes to the caller, never
dropped.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from ..errors import ConnectionLostError
from ..transport import BlockingConn
from ..tunables import OUTPUT_BUFFER, WATCH_PERIOD
from ..wire import Ack, Done, Log, Message
from ..wire.framing import Buffer

Frame = tuple[Any, memoryview, int]  # a message, its body, the generation of the connection it came on
Dialer = Callable[[str, bytes], BlockingConn]  # busy task ("req_id:index" or ""), its grant -> a new connection


class Link:
    def __init__(self, dial: Dialer, run_id: str, max_bytes: int = OUTPUT_BUFFER) -> None:
        self._dial = dial
        self.run_id = run_id
        self.max_bytes = max_bytes
        self._lock = threading.RLock()  # order on the wire, the outbox and reconnects
        self._recv_lock = threading.Lock()  # one reader at a time: the main thread or the watcher
        self._current = (dial("", b""), 0)  # (connection, generation), replaced as one
        self._inbox: deque[tuple[Message, memoryview, int]] = deque()  # read by the watcher for the main thread
        self._frames: deque[tuple[int, Log | Done, Sequence[Buffer], int]] = deque()  # seq, frame, segments, bytes
        self._seq = 0
        self._acked = 0
        self._log_bytes = 0
        self.busy_task = ""
        self._grant = b""  # the planner's grant for the running task (Run.grant), shown with its frames
        self._task: tuple[str, int] = ("", 0)
        self._part = 0
        self._lost = 0
        self.reconnects = 0
        threading.Thread(target=self._watch, name="granny-link-watch", daemon=True).start()

    @property
    def conn(self) -> BlockingConn:
        return self._current[0]

    @property
    def generation(self) -> int:
        return self._current[1]

    # --- tasks ----------------------------------------------------------------------------------
    def start_task(self, req_id: str, index: int, generation: int, grant: bytes = b"") -> bool:
        """The task received on connection ``generation`` starts; False: that connection is gone."""
        with self._lock:
            if generation != self._current[1]:
                return False
            self.busy_task, self._grant = f"{req_id}:{index}", grant
            self._task, self._part, self._lost = (req_id, index), 0, 0
            return True

    def end_task(self) -> None:
        with self._lock:
            self.busy_task = ""

    # --- sending --------------------------------------------------------------------------------
    def send_log(self, stream: str, data: str) -> None:
        """Output of the running task; kept until acknowledged (see the module docstring)."""
        size = len(data)
        with self._lock:
            if self._lost:
                self._report_lost(force=False)
            if self._lost or self._log_bytes + size > self.max_bytes:
                self._lost += size
                return
            self._send_log(stream, data, size)

    def report_lost(self) -> None:
        """Before the task's result: say how much of its output was dropped, if any."""
        with self._lock:
            self._report_lost(force=True)

    def _report_lost(self, force: bool) -> None:
        text = f"[granny: {self._lost} bytes of output lost]\n"
        if self._lost and (force or self._log_bytes + len(text) <= self.max_bytes):
            self._lost = 0
            self._send_log("stderr", text, len(text))

    def _send_log(self, stream: str, data: str, size: int) -> None:
        self._part += 1
        req_id, index = self._task
        self._send(Log(req_id=req_id, index=index, stream=stream, data=data, run=self.run_id, part=self._part,
                       grant=self._grant),
                   (), size)

    def send_log_for(self, task: tuple[str, int], grant: bytes, part: int, stream: str, data: str) -> bool:
        """Output of one of several tasks running at once (fused calls, worker/fused.py), numbered by the
        caller; kept until acknowledged. False: dropped, the output buffer being full."""
        size = len(data)
        with self._lock:
            if self._log_bytes + size > self.max_bytes:
                return False
            self._send(Log(req_id=task[0], index=task[1], stream=stream, data=data, run=self.run_id, part=part,
                           grant=grant), (), size)
            return True

    def send_done(self, done: Done, segments: Sequence[Buffer]) -> None:
        with self._lock:
            if (done.req_id, done.index) == self._task:
                done.grant = self._grant
            self._send(done, segments, 0)

    def send(self, msg: Message) -> None:
        """A frame that need not survive a reconnect (the caller handles the error)."""
        self.conn.send(msg)

    def request(self, msg: Message, answers: Callable[[Any], bool], other: Callable[[Frame], None]) -> Any:
        """Send ``msg`` and return the frame ``answers`` accepts (see the module docstring); ``other``
        gets every frame that is not the answer, in order."""
        sent_on = -1
        while True:
            conn, gen = self._current
            if sent_on != gen:
                sent_on = gen
                try:
                    conn.send(msg)
                except ConnectionLostError:
                    self.reconnect(conn)
                    continue
            frame = self.recv()
            if frame[2] == sent_on and answers(frame[0]):
                return frame[0]
            other(frame)

    def _send(self, msg: Log | Done, segments: Sequence[Buffer], size: int) -> None:
        self._seq += 1
        msg.seq = self._seq
        self._frames.append((self._seq, msg, segments, size))
        self._log_bytes += size
        conn = self._current[0]
        try:
            conn.send(msg, segments)
        except ConnectionLostError:
            self._reconnect(conn)  # sends this frame again, with the others not yet acknowledged

    def ack(self, seq: int) -> None:
        with self._lock:
            self._acked = max(self._acked, seq)
            frames = self._frames
            while frames and frames[0][0] <= seq:
                self._log_bytes -= frames.popleft()[3]

    def unacknowledged(self) -> int:
        return len(self._frames)

    # --- reconnecting ---------------------------------------------------------------------------
    def reconnect(self, dead: BlockingConn) -> None:
        """``dead`` failed: connect again, unless another thread already did."""
        with self._lock:
            self._reconnect(dead)

    def _reconnect(self, dead: BlockingConn) -> None:
        while self._current[0] is dead:
            # Shut down, not closed: another thread may be about to read it, and a closed descriptor's
            # number could be reused by the new connection. The socket closes when it is collected.
            dead.closed = True
            with contextlib.suppress(OSError):
                dead.sock.shutdown(socket.SHUT_RDWR)
            conn = self._dial(self.busy_task, self._grant if self.busy_task else b"")
            self._current = (conn, self._current[1] + 1)
            self._inbox.clear()  # frames of the planner that went away
            self.reconnects += 1
            try:
                for _, msg, segments, _ in self._frames:
                    conn.send(msg, segments)
            except ConnectionLostError:
                dead = conn  # it died too: once more

    # --- receiving ------------------------------------------------------------------------------
    def recv(self) -> tuple[Message, memoryview, int]:
        """The next frame (Acks are handled here) and the generation of the connection it came on.

        A dead connection is replaced; frames of the old one that were not read are dropped."""
        frame = self.poll(wait=True)
        assert frame is not None
        return frame

    def poll(self, wait: bool = False) -> tuple[Message, memoryview, int] | None:
        """As :meth:`recv`, but None when no frame other than Acks can be had without blocking."""
        while True:
            if not wait and not self.ready():
                return None
            with self._recv_lock:
                if self._inbox:
                    msg, body, gen = self._inbox.popleft()
                else:
                    conn, gen = self._current
                    try:
                        msg, body = conn.recv()
                    except ConnectionLostError:
                        self.reconnect(conn)
                        continue
            if isinstance(msg, Ack):
                self.ack(msg.seq)
                continue
            if gen == self._current[1]:
                return msg, body, gen

    def ready(self) -> bool:
        """A frame can be received without blocking."""
        return bool(self._inbox) or self._current[0].ready()

    def await_close(self, timeout: float = 10.0) -> None:
        """Wait until the planner has acknowledged everything and closed the connection."""
        deadline = time.monotonic() + timeout
        while True:
            with self._recv_lock:
                conn = self._current[0]
                conn.sock.settimeout(max(0.1, deadline - time.monotonic()))
                try:
                    while True:
                        msg, _ = conn.recv()
                        if isinstance(msg, Ack):
                            self.ack(msg.seq)
                except ConnectionLostError:
                    pass
            if not self._frames or time.monotonic() > deadline:
                return
            self.reconnect(conn)  # closed before its Ack: the planner went away; tell the next one

    def _watch(self) -> None:
        """While the main thread runs a task (and so reads nothing), take Acks and notice a dead planner."""
        while True:
            time.sleep(WATCH_PERIOD)  # a polling period, not synchronisation
            if not self._recv_lock.acquire(blocking=False):
                continue  # the main thread is reading: it sees both itself
            try:
                conn, gen = self._current
                while not conn.closed and conn.ready():
                    try:
                        msg, body = conn.recv()
                    except ConnectionLostError:
                        self.reconnect(conn)
                        break
                    if isinstance(msg, Ack):
                        self.ack(msg.seq)
                    else:
                        self._inbox.append((msg, body, gen))
            except Exception:  # the watcher must outlive a bad moment; the main thread reports
                continue
            finally:
                self._recv_lock.release()
