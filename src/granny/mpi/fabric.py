"""The data plane of one rank: shared-memory rings to same-host ranks, TCP streams to the others.

Theory of operation
- ``send`` moves one record (a 32-byte header plus payload) to a peer; ``progress`` delivers every
  record that has arrived to the handler, in order per sender; ``wait_until`` spins then blocks until
  a condition holds. Nothing here knows about matching, tags or communicators (see p2p.py).
- A rank waiting for anything polls its rings in a tight loop for ``spin`` seconds, then sleeps on its
  doorbell (and the TCP sockets). When there are more ranks on the host than cores the spin is cut to
  a few microseconds and each pass yields the core, so an oversubscribed world still moves.
- A world that fills its host binds each rank to a core, round-robin (``bind_to_core``), as Open MPI
  does; closing the fabric restores the process's CPU set.
- Incoming TCP data is checked every ``TCP_EVERY`` spin passes, since a poll syscall costs more than a
  whole shared-memory pass.
"""

from __future__ import annotations

import os
import select
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..config import ENV_MPI_BIND, ENV_MPI_SPIN_US, env
from ..errors import ConnectionLostError, MpiError, PeerLostError
from ..tunables import MPI_SAFETY_TIMEOUT as SAFETY_TIMEOUT
from ..tunables import PEER_LOSS_GRACE, TCP_EVERY
from . import shm
from .shm import PAD, REC, RING_DATA, Consumer, Doorbell, Inbox, Producer, doorbell_name, inbox_path

Handler = Callable[[int, int, int, int, int, int, memoryview], None]  # kind flags ctx src tag arg payload


@dataclass(frozen=True)
class RankAddr:
    host_id: str
    pid: int
    ip: str
    port: int


class Fabric:
    def __init__(self, world_id: str, rank: int, size: int) -> None:
        self.world_id, self.rank, self.size = world_id, rank, size
        self.fast = shm.fast_rings()
        self.inbox = Inbox(inbox_path(world_id, rank, os.getpid()), size, create=True, fast=self.fast)
        self.doorbell = Doorbell(world_id, rank)
        self.tcp: Any = None  # TcpLinks, created by the world only when a peer is remote
        self.handler: Handler = _unset_handler
        self.producers: list[shm.AnyProducer | None] = [None] * size
        self.peer_inboxes: dict[int, Inbox] = {}
        self.consumers: list[shm.AnyConsumer] = []
        self.consumer_of: dict[int, shm.AnyConsumer] = {}  # same-host sender -> its ring in our inbox
        # The C rings by world rank, for the buffer fast paths of Comm.Send/Recv (p2p_api.py); all None
        # when the rings are the pure-Python ones.
        self.fast_out: list[shm.FastProducer | None] = [None] * size
        self.fast_in: list[shm.FastConsumer | None] = [None] * size
        self.local: list[int] = [rank]
        self.remote: list[int] = []
        self.spin = float(env(ENV_MPI_SPIN_US)) * 1e-6
        self.yield_spin = False
        self._passes = 0
        self._unlinked = False
        self._affinity: set[int] = set()  # the CPUs this process may use, while it is bound to one

    # --- set-up -----------------------------------------------------------------------------
    def attach(self, addrs: list[RankAddr]) -> None:
        """Map the inboxes of same-host ranks; the TCP side is connected by the caller."""
        me = addrs[self.rank]
        self.local = [r for r, a in enumerate(addrs) if a.host_id == me.host_id]
        self.remote = [r for r, a in enumerate(addrs) if a.host_id != me.host_id]
        for r in self.local:
            if r == self.rank:
                continue
            inbox = Inbox(inbox_path(self.world_id, r, addrs[r].pid), self.size, create=False)
            self.peer_inboxes[r] = inbox
            prod: shm.AnyProducer
            cons: shm.AnyConsumer
            if self.fast:
                bell_fd, bell = self.doorbell.out.fileno(), doorbell_name(self.world_id, r)
                prod = self.fast_out[r] = shm.FastProducer(inbox, self.rank, bell_fd, bell)
                cons = self.fast_in[r] = shm.FastConsumer(self.inbox, r)
                cons.attach_peer(inbox, bell_fd, bell)
                cons.set_ack(prod)  # recv_buf acknowledges a rendezvous itself
            else:
                prod = Producer(inbox, self.rank)
                cons = Consumer(self.inbox, r)
                cons.peer_words = inbox.words
            self.producers[r] = prod
            self.consumers.append(cons)
            self.consumer_of[r] = cons
        if len(self.local) > (os.cpu_count() or 1):
            self.spin, self.yield_spin = min(self.spin, 5e-6), True
        self._affinity = bind_to_core(self.local.index(self.rank), len(self.local))

    def unlink(self) -> None:
        """Every local peer has mapped the inbox (after the first barrier): drop its name."""
        if not self._unlinked:
            self._unlinked = True
            try:
                os.unlink(self.inbox.path)
            except FileNotFoundError:
                pass

    def close(self) -> None:
        if self._affinity:
            os.sched_setaffinity(0, self._affinity)  # a warm granule goes back unbound
            self._affinity = set()
        self.unlink()
        if self.tcp is not None:
            self.tcp.close()
        for ring in (*self.fast_out, *self.fast_in):
            if ring is not None:
                ring.set_bell(-1, b"")  # the C rings keep the socket's number, not the socket
        for cons in self.fast_in:
            if cons is not None:
                cons.set_ack(None)
        self.doorbell.close()

    # --- sending ----------------------------------------------------------------------------
    def send(self, dst: int, kind: int, flags: int, ctx: int, tag: int, arg: int, payload: Any = b"",
             plen: int = 0) -> None:
        prod = self.producers[dst]
        if prod is not None:
            if not prod.try_put(kind, flags, ctx, self.rank, tag, arg, payload, plen):
                self.wait_until(lambda: prod.try_put(kind, flags, ctx, self.rank, tag, arg, payload, plen))
            if prod.words[0]:  # the peer sleeps: wake it
                self.doorbell.ring(dst)
        elif dst == self.rank:
            self.handler(kind, flags, ctx, dst, tag, arg, memoryview(bytes(payload)) if plen else memoryview(b""))
        elif self.tcp is not None:
            try:
                self.tcp.send(dst, REC.pack(kind, flags, ctx, self.rank, tag, arg, plen), payload if plen else b"")
            except ConnectionLostError as exc:
                _peer_lost(exc)
        else:
            raise MpiError(f"rank {dst} is not reachable from rank {self.rank}", 6)  # MPI_ERR_RANK

    def is_local(self, dst: int) -> bool:
        return self.producers[dst] is not None or dst == self.rank

    # --- receiving --------------------------------------------------------------------------
    def progress(self) -> int:
        """Deliver every record that has arrived; returns how many."""
        n = 0
        handler = self.handler
        words = self.inbox.words
        for c in self.consumers:
            head = words[c.head_i]
            tail = c.tail
            if head == tail:
                continue
            data = c.data
            while tail < head:
                pos = tail & (RING_DATA - 1)
                kind, flags, ctx, src, tag, arg, plen = REC.unpack_from(data, pos)
                if kind == PAD:
                    tail += plen
                    continue
                start = pos + 32
                handler(kind, flags, ctx, src, tag, arg, data[start:start + plen])
                tail += (32 + plen + 63) & ~63
                n += 1
            c.tail = tail
            words[c.tail_i] = tail
            peer = self.peer_inboxes.get(c.src)
            if peer is not None and peer.words[0]:
                self.doorbell.ring(c.src)  # it may be asleep waiting for room in this ring
        if self.tcp is not None:
            self._passes += 1
            if self._passes >= TCP_EVERY:
                self._passes = 0
                try:
                    n += self.tcp.poll(self._on_tcp)
                except ConnectionLostError as exc:
                    _peer_lost(exc)
        return n

    def _on_tcp(self, src: int, header: memoryview, payload: memoryview) -> None:
        kind, flags, ctx, _src, tag, arg, _plen = REC.unpack_from(header, 0)
        self.handler(kind, flags, ctx, src, tag, arg, payload)

    def wait_until(self, cond: Callable[[], bool]) -> None:
        """Progress until ``cond()`` holds: spin for the budget, then sleep on the doorbell.

        ``cond`` may have side effects (``send`` passes a ``try_put``): it is called again only after it
        returned False, never twice for one success."""
        if cond():
            return
        deadline = time.perf_counter() + self.spin
        progress, spins = self.progress, 0
        while True:
            progress()
            if cond():
                return
            spins += 1
            if self.yield_spin:
                os.sched_yield()
            elif spins & 15:
                continue  # reading the clock costs as much as a pass over the rings
            if time.perf_counter() > deadline:
                break
        inbox = self.inbox
        timeout = SAFETY_TIMEOUT
        while True:
            inbox.set_sleeping(1)
            self._passes = TCP_EVERY
            moved = self.progress()
            if cond():  # once per pass: a condition may act (Fabric.send's is a try_put)
                inbox.set_sleeping(0)
                return
            if moved:
                inbox.set_sleeping(0)
                continue
            # Re-read the TCP fds each time: a peer that said goodbye has its stream closed.
            fds = [self.doorbell.fileno()] + (self.tcp.fileno_list() if self.tcp is not None else [])
            select.select(fds, [], [], timeout)
            timeout = min(timeout * 2, 0.05)  # a lost wake-up is rare: back off, do not poll
            inbox.set_sleeping(0)
            self.doorbell.drain()
            self._passes = TCP_EVERY
            self.progress()
            if cond():
                return


def bind_to_core(index: int, local: int) -> set[int]:
    """Bind the ``index``-th of ``local`` same-host ranks to one core, round-robin, as Open MPI binds ranks
    to cores: when a world fills its host (at least one rank per usable core), or always with
    GRANNY_MPI_BIND=1; never with GRANNY_MPI_BIND=0. Unbound, ranks that wait by spinning briefly and
    then sleeping or yielding can be left by the scheduler on one core while another process holds
    the other, and every exchange between them then costs a context switch (8 µs instead of 0.4 µs
    for a 2-rank Barrier here). Returns the CPUs the process had (to restore), or an empty set when
    it was not bound."""
    mode = env(ENV_MPI_BIND)
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except OSError:
        return set()
    if local < 2 or mode == "0" or (mode != "1" and local < len(cpus)):
        return set()
    try:
        os.sched_setaffinity(0, {cpus[index % len(cpus)]})
    except OSError:
        return set()
    return set(cpus)




def _peer_lost(exc: ConnectionLostError) -> None:
    """A rank on another host vanished. Its death also reaches the planner (its worker reports the
    exit, or its host stops sending heartbeats), which then stops the whole world with that rank's own
    error. Reporting this rank's failure first would bury the cause under a consequence, so wait to be
    stopped, and only fail by itself if that does not happen."""
    deadline = time.monotonic() + PEER_LOSS_GRACE
    while time.monotonic() < deadline:
        time.sleep(0.05)  # the planner's kill ends this wait; nothing else does
    raise PeerLostError(f"{exc} (and the planner did not stop this world within {PEER_LOSS_GRACE:g}s)") from None


def _unset_handler(kind: int, flags: int, ctx: int, src: int, tag: int, arg: int, payload: memoryview) -> None:
    raise MpiError("record arrived before the MPI engine was ready")
