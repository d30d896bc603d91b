"""The C ring (granny.mpi._fastring, shm.FastProducer/FastConsumer) against the pure-Python one (shm.Producer/
Consumer): the same bytes in the ring, records of either readable by the other, wrap-around with PAD
records, a full ring, what the fast calls refuse (and leave for the general path), doorbells."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from granny.mpi import p2p, shm
from granny.mpi.shm import PAD, REC, RING_DATA, Consumer, Inbox, Producer

fastring = pytest.importorskip("granny.mpi._fastring", reason="the optional C extension is not built")

ME, PEER = 0, 1  # the producer writes into PEER's inbox, in the ring of sender ME
CTX, TAG = 4, 7


class Rig:
    """Two ranks' inboxes in one process: ``inbox`` is PEER's (holds the ring ME -> PEER), ``own`` is ME's
    (its sleeping flag is what a consumer checks before ringing ME's doorbell)."""

    def __init__(self) -> None:
        wid = f"fr{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.paths = [shm.inbox_path(wid, r, os.getpid()) for r in (ME, PEER)]
        self.own = Inbox(self.paths[0], 2, create=True, fast=True)
        self.inbox = Inbox(self.paths[1], 2, create=True, fast=True)
        self.bells = {r: _bell(wid, r) for r in (ME, PEER)}
        self.out = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.wid = wid

    def producer(self, fast: bool) -> Any:
        if fast:
            p = shm.FastProducer(self.inbox, ME, self.out.fileno(), shm.doorbell_name(self.wid, PEER))
            p.buf_eager = shm.EAGER_LIMIT  # these tests fill the ring with send_buf up to the eager limit
            return p
        return Producer(self.inbox, ME)

    def consumer(self, fast: bool) -> Any:
        if fast:
            c = shm.FastConsumer(self.inbox, ME)
            c.attach_peer(self.own, self.out.fileno(), shm.doorbell_name(self.wid, ME))
            return c
        c = Consumer(self.inbox, ME)
        c.peer_words = self.own.words
        return c

    def ring_bytes(self) -> bytes:
        off = self.inbox.ring_offset(ME)
        return bytes(self.inbox.mem[off:off + shm.RING_META + RING_DATA])

    def close(self) -> None:
        for s in (*self.bells.values(), self.out):
            s.close()
        for p in self.paths:
            os.unlink(p)


def _bell(wid: str, rank: int) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(shm.doorbell_name(wid, rank))
    s.setblocking(False)
    return s


def _rang(s: socket.socket) -> int:
    n = 0
    try:
        while True:
            s.recv(16)
            n += 1
    except BlockingIOError:
        return n


@pytest.fixture
def rig() -> Iterator[Rig]:
    r = Rig()
    yield r
    r.close()


def take_py(rig: Rig, c: Any) -> tuple[int, int, int, int, int, int, bytes] | None:
    """The next record as fabric.progress reads it (PADs skipped), or None when the ring is empty."""
    words = rig.inbox.words
    while words[c.head_i] != c.tail:
        pos = c.tail & (RING_DATA - 1)
        kind, flags, ctx, src, tag, arg, plen = REC.unpack_from(c.data, pos)
        if kind == PAD:
            c.tail += plen
            words[c.tail_i] = c.tail
            continue
        payload = bytes(c.data[pos + 32:pos + 32 + plen])
        c.tail += (32 + plen + 63) & ~63
        words[c.tail_i] = c.tail
        return kind, flags, ctx, src, tag, arg, payload
    return None


def take_c(rig: Rig, c: Any, nbytes: int) -> tuple[int, int, bytes] | None:
    """The next K_BUF record through recv_buf: (length, tag, payload); a PAD in front is skipped the way
    the general path does; None when the ring is empty."""
    out = np.empty(max(nbytes, 1), dtype=np.uint8)
    for _ in range(2):
        n = c.recv_buf(out, CTX, p2p.ANY_TAG, 0)
        if n >= 0:
            return n, c.last_tag, out[:n].tobytes()
        assert n == -2
        if rig.inbox.words[c.head_i] == c.tail:
            return None
        kind, *_, plen = REC.unpack_from(c.data, c.tail & (RING_DATA - 1))
        assert kind == PAD, "recv_buf refused a simple record"
        c.tail += plen
        rig.inbox.words[c.tail_i] = c.tail
    raise AssertionError("two PADs in a row")


def test_constants_agree_with_the_python_side() -> None:
    assert fastring.K_BUF == p2p.K_BUF and fastring.K_OBJ == p2p.K_OBJ
    assert fastring.PAD == PAD
    assert fastring.HEADER == REC.size == 32


def _payload(i: int, n: int) -> bytes:
    return bytes((i * 31 + j) & 0xFF for j in range(n)) if n < 4096 else np.full(n, i & 0xFF, np.uint8).tobytes()


# (payload length, consume everything after this put)
SEQUENCES = st.lists(st.tuples(st.one_of(st.integers(0, 200), st.integers(1000, shm.EAGER_LIMIT)), st.booleans()),
                     min_size=1, max_size=60)


WRAPS = [(50_000, True)] * 30 + [(100, False)] * 3 + [(65_000, False)] * 20  # PADs, then a full ring


@settings(max_examples=25, deadline=None)
@given(seq=SEQUENCES)
@example(seq=WRAPS)
def test_c_and_python_producers_write_the_same_bytes(seq: list[tuple[int, bool]]) -> None:
    """Two rings fed the same records (and drained at the same points) hold identical bytes, PAD records
    at the wrap included; try_put refuses at the same points when the ring is full."""
    rigs = [Rig(), Rig()]
    try:
        prods = [rigs[0].producer(False), rigs[1].producer(True)]
        cons = [rigs[0].consumer(False), rigs[1].consumer(False)]
        for i, (n, drain) in enumerate(seq):
            data = _payload(i, n)
            ok = [p.try_put(p2p.K_BUF, 0, CTX, ME, i, i * 3, data, n) for p in prods]
            assert ok[0] == ok[1]
            if not ok[0] or drain:
                for r, c in zip(rigs, cons, strict=True):
                    while take_py(r, c) is not None:
                        pass
            assert rigs[0].ring_bytes() == rigs[1].ring_bytes()
            assert prods[0].head == prods[1].head and prods[0].tail_cache == prods[1].tail_cache
    finally:
        for r in rigs:
            r.close()


@settings(max_examples=25, deadline=None)
@given(seq=SEQUENCES, fast_producer=st.booleans(), fast_consumer=st.booleans())
@example(seq=WRAPS, fast_producer=True, fast_consumer=True)
@example(seq=WRAPS, fast_producer=True, fast_consumer=False)
@example(seq=WRAPS, fast_producer=False, fast_consumer=True)
def test_records_cross_between_implementations(seq: list[tuple[int, bool]], fast_producer: bool,
                                               fast_consumer: bool) -> None:
    """Whatever writes, whatever reads: every record arrives once, in order, intact, across wrap-arounds."""
    rig = Rig()
    try:
        prod, cons = rig.producer(fast_producer), rig.consumer(fast_consumer)
        sent: list[tuple[int, bytes]] = []
        got: list[tuple[int, bytes]] = []

        def drain() -> None:
            while True:
                if fast_consumer:
                    rec = take_c(rig, cons, 70_000)
                    if rec is None:
                        return
                    got.append((rec[1], rec[2]))
                else:
                    r = take_py(rig, cons)
                    if r is None:
                        return
                    assert r[:4] == (p2p.K_BUF, 0, CTX, ME)
                    got.append((r[4], r[6]))

        for i, (n, now) in enumerate(seq):
            data = _payload(i, n)
            arr = np.frombuffer(data, dtype=np.uint8).copy() if n else np.empty(0, np.uint8)

            def put(i: int = i, n: int = n, data: bytes = data, arr: Any = arr) -> bool:
                if fast_producer:
                    return bool(prod.send_buf(arr, CTX, i) == 1)
                return bool(prod.try_put(p2p.K_BUF, 0, CTX, ME, i, 0, data, n))

            if not put():
                drain()
                assert put()
            sent.append((i, data))
            if now:
                drain()
        drain()
        assert got == sent
    finally:
        rig.close()


def test_full_ring_refuses_without_writing(rig: Rig) -> None:
    prod = rig.producer(True)
    big = np.ones(60_000, dtype=np.uint8)
    n = 0
    while prod.send_buf(big, CTX, TAG) == 1:
        n += 1
    assert n == RING_DATA // 60_032  # 60_000 + header, rounded up to 64
    head = prod.head
    assert prod.send_buf(big, CTX, TAG) == 0
    assert not prod.try_put(p2p.K_BUF, 0, CTX, ME, TAG, 0, big, big.nbytes)
    assert prod.head == head == rig.inbox.words[prod.head_i]
    cons = rig.consumer(True)
    out = np.zeros_like(big)
    assert cons.recv_buf(out, CTX, TAG, 0) == big.nbytes and out.all()
    assert prod.send_buf(big, CTX, TAG) == 1  # room again


def test_send_buf_leaves_the_unusual_to_the_general_path(rig: Rig) -> None:
    prod = rig.producer(True)
    head = prod.head
    for buf in (bytearray(8), [np.ones(8, np.uint8)], np.ones((4, 4))[:, 0], np.array(3.0),
                np.array([object(), 1], dtype=object), np.ones(shm.EAGER_LIMIT + 1, np.uint8)):
        assert prod.send_buf(buf, CTX, TAG) == -1, buf
    for tag in (np.int32(3), 2**31, "1"):
        assert prod.send_buf(np.ones(8, np.uint8), CTX, tag) == -1
    assert prod.head == head
    ro = np.ones(8, np.uint8)
    ro.flags.writeable = False
    assert prod.send_buf(ro, CTX, TAG) == 1  # a read-only array may be sent
    assert prod.send_buf(np.ones(shm.EAGER_LIMIT, np.uint8), CTX, TAG) == 1


def test_recv_buf_takes_only_the_simple_match(rig: Rig) -> None:
    prod, cons = rig.producer(False), rig.consumer(True)
    out = np.zeros(16, dtype=np.uint8)
    assert cons.recv_buf(out, CTX, TAG, 10_000) == -2  # nothing arrived within 10 µs
    ro = np.zeros(16, np.uint8)
    ro.flags.writeable = False
    for buf in (bytearray(16), ro, np.zeros((4, 4), np.uint8)[:, 0], np.array(1, np.uint8)):
        assert cons.recv_buf(buf, CTX, TAG, 0) == -1
    tail = cons.tail
    refused = [
        (p2p.K_OBJ, 0, CTX, TAG, 8),  # a pickle
        (p2p.K_BUF, p2p.F_SYNC, CTX, TAG, 8),  # a synchronous send wants an ACK
        (p2p.K_RTS_BUF, 0, CTX, TAG, 8),  # a rendezvous
        (p2p.K_BUF, 0, CTX + 2, TAG, 8),  # another communicator
        (p2p.K_BUF, 0, CTX, TAG + 1, 8),  # another tag
        (p2p.K_BUF, 0, CTX, -5, 8),  # an internal tag: never ANY_TAG's
        (p2p.K_BUF, 0, CTX, TAG, 17),  # truncation
    ]
    for kind, flags, ctx, tag, n in refused:
        assert prod.try_put(kind, flags, ctx, ME, tag, 0, bytes(n), n)
        want = p2p.ANY_TAG if tag == -5 else TAG
        assert cons.recv_buf(out, CTX, want, 0) == -2, (kind, flags, ctx, tag, n)
        assert cons.tail == tail  # not consumed
        assert take_py(rig, cons) is not None
        tail = cons.tail
    assert prod.try_put(p2p.K_BUF, 0, CTX, ME, 9, 0, b"abcdefgh", 8)
    assert cons.recv_buf(out, CTX, p2p.ANY_TAG, 0) == 8
    assert cons.last_tag == 9 and out[:8].tobytes() == b"abcdefgh" and not out[8:].any()
    assert rig.inbox.words[cons.tail_i] == cons.tail == tail + 64
    assert prod.try_put(p2p.K_BUF, 0, CTX, ME, TAG, 0, b"", 0)
    assert cons.recv_buf(out, CTX, TAG, 0) == 0


def test_doorbells_ring_only_for_sleepers(rig: Rig) -> None:
    prod, cons = rig.producer(True), rig.consumer(True)
    msg, out = np.ones(8, np.uint8), np.empty(8, np.uint8)
    assert prod.send_buf(msg, CTX, TAG) == 1 and cons.recv_buf(out, CTX, TAG, 0) == 8
    assert _rang(rig.bells[PEER]) == 0 and _rang(rig.bells[ME]) == 0
    rig.inbox.set_sleeping(1)  # the consumer sleeps: a send wakes it
    assert prod.send_buf(msg, CTX, TAG) == 1
    assert _rang(rig.bells[PEER]) == 1
    rig.own.set_sleeping(1)  # the producer sleeps (waiting for room): taking a record wakes it
    assert cons.recv_buf(out, CTX, TAG, 0) == 8
    assert _rang(rig.bells[ME]) == 1
    assert rig.inbox.sleeping == 1 and rig.own.sleeping == 1
    prod.set_bell(-1, b"")  # what Fabric.close does: its socket is gone, its number may be reused
    cons.set_bell(-1, b"")
    assert prod.send_buf(msg, CTX, TAG) == 1 and cons.recv_buf(out, CTX, TAG, 0) == 8
    assert _rang(rig.bells[PEER]) == 0 and _rang(rig.bells[ME]) == 0


def test_set_flag_and_bad_arguments(rig: Rig) -> None:
    fastring.set_flag(rig.inbox.map, 0, 5)
    assert rig.inbox.sleeping == 5
    with pytest.raises(ValueError):
        fastring.set_flag(rig.inbox.map, len(rig.inbox.map) // 8, 1)
    with pytest.raises(ValueError):
        fastring.Producer(rig.inbox.map, 8, RING_DATA, ME, 100)  # not 64-byte aligned
    with pytest.raises(ValueError):
        fastring.Consumer(rig.inbox.map, rig.inbox.ring_offset(1), RING_DATA * 2, ME)  # past the end
    with pytest.raises(BufferError):
        fastring.Producer(b"read-only", 0, 64, ME, 100)
    prod = rig.producer(True)
    with pytest.raises(ValueError, match="payload has 3 bytes"):
        prod.try_put(p2p.K_BUF, 0, CTX, ME, TAG, 0, b"abc", 4)
    with pytest.raises(OverflowError):
        prod.try_put(300, 0, CTX, ME, TAG, 0, b"", 0)


def test_pure_switch_picks_the_python_rings(monkeypatch: pytest.MonkeyPatch) -> None:
    from granny.mpi.fabric import Fabric

    for value, fast in (("1", False), ("0", True), ("", True)):
        monkeypatch.setenv(shm.PURE_ENV, value)
        assert shm.fast_rings() is fast
        f = Fabric(f"t{os.getpid()}-{uuid.uuid4().hex[:6]}", 0, 1)
        try:
            assert f.fast is fast and f.inbox.fast is fast
        finally:
            f.close()


def test_objects_through_send_obj_and_recv_obj(rig: Rig) -> None:
    prod, cons = rig.producer(True), rig.consumer(True)
    assert cons.recv_obj(CTX, TAG, 10_000, 4096) is None  # nothing came
    assert prod.send_obj(b"pickle", CTX, TAG) == 1
    assert cons.recv_obj(CTX + 2, TAG, 0, 4096) is None  # another context: the general path
    assert cons.recv_obj(CTX, TAG + 1, 0, 4096) is None  # another tag
    got = cons.recv_obj(CTX, p2p.ANY_TAG, 0, 4096)
    assert type(got) is bytearray and got == b"pickle" and cons.last_tag == TAG
    assert prod.send_obj(bytearray(5000), CTX, TAG) == 1
    assert cons.recv_obj(CTX, TAG, 0, 4096) is False  # the match, but large: left for recv_direct
    assert take_py(rig, cons) == (p2p.K_OBJ, 0, CTX, ME, TAG, 0, bytes(5000))
    assert prod.send_buf(np.ones(4, np.uint8), CTX, TAG) == 1
    assert cons.recv_obj(CTX, TAG, 0, 4096) is None  # a buffer message
    out = np.zeros(4, np.uint8)
    assert cons.recv_buf(out, CTX, TAG, 0) == 4
    assert prod.send_obj(b"x" * (shm.EAGER_LIMIT + 1), CTX, TAG) == -1
    assert prod.send_obj(object(), CTX, TAG) == -1  # no buffer
    assert prod.send_obj(b"", CTX, TAG) == 1
    assert cons.recv_obj(CTX, TAG, 0, 4096) == bytearray()
    rig.own.set_sleeping(1)
    assert prod.send_obj(b"z", CTX, TAG) == 1 and cons.recv_obj(CTX, TAG, 0, 4096) == b"z"
    assert _rang(rig.bells[ME]) == 1


def test_rendezvous_send_and_receive_in_c(rig: Rig) -> None:
    """send_rndv publishes an RTS; recv_buf copies the array out of the sender (process_vm_readv, here of
    this very process) and acknowledges it in the ring back (PEER -> ME, in ``own``); a sender still
    spinning takes that ACK itself. What they refuse is left untouched for the general path."""
    prod = shm.FastProducer(rig.inbox, ME, rig.out.fileno(), shm.doorbell_name(rig.wid, PEER))
    cons = rig.consumer(True)  # PEER reading ME's ring
    back = shm.FastProducer(rig.own, PEER, rig.out.fileno(), shm.doorbell_name(rig.wid, ME))
    back_cons = shm.FastConsumer(rig.own, PEER)  # ME reading PEER's ring: where ACKs arrive
    cons.set_ack(back)
    n = shm.RNDV_FROM + 1000
    data = np.arange(n, dtype=np.uint8)
    pid = os.getpid()
    assert prod.send_rndv(np.ones(shm.RNDV_FROM, np.uint8), CTX, TAG, 1, pid, back_cons, 0) == -1  # send_buf's
    assert prod.send_rndv([data], CTX, TAG, 1, pid, back_cons, 0) == -1
    assert prod.send_buf(data, CTX, TAG) == -1
    # Nobody receives yet: RTS sent, no ACK (2). A buffer too small is refused, then the receive copies.
    assert prod.send_rndv(data, CTX, TAG, 41, pid, back_cons, 0) == 2
    tail = cons.tail
    assert cons.recv_buf(np.zeros(n - 1, np.uint8), CTX, TAG, 0) == -2 and cons.tail == tail
    assert cons.recv_buf(np.zeros(n, np.uint8), CTX, TAG + 1, 0) == -2 and cons.tail == tail
    out = np.zeros(n + 5, np.uint8)
    assert cons.recv_buf(out, CTX, p2p.ANY_TAG, 0) == n
    assert (out[:n] == data).all() and not out[n:].any() and cons.last_tag == TAG
    ack = take_py(rig_back(rig), back_cons)
    assert ack is not None and ack[:6] == (p2p.K_ACK, 0, 0, PEER, 0, 41)
    # The receiver acts while the sender spins (the GIL is released then): the sender takes the ACK (1).
    import threading

    got: list[int] = []

    def receive() -> None:
        while not got or got[-1] == -2:
            got.append(cons.recv_buf(out, CTX, TAG, 0))

    t = threading.Thread(target=receive)
    t.start()
    assert prod.send_rndv(data, CTX, TAG, 42, pid, back_cons, 5_000_000_000) == 1
    t.join()
    assert got[-1] == n and rig.own.words[back_cons.head_i] == back_cons.tail  # the ACK was taken
    # No room for the ACK: the copy is done, the ACK is left to the caller (-3, last_arg).
    filler = np.zeros(60_000, np.uint8)
    back.buf_eager = shm.EAGER_LIMIT
    while back.send_buf(filler, CTX, TAG) == 1:
        pass
    while back.try_put(p2p.K_BUF, 0, CTX, PEER, TAG, 0, b"", 0):
        pass
    out[:] = 0
    assert prod.send_rndv(data, CTX, TAG, 43, pid, back_cons, 0) == 2
    assert cons.recv_buf(out, CTX, TAG, 0) == -3
    assert cons.last_arg == 43 and cons.last_len == n and (out[:n] == data).all()
    cons.set_ack(None)


def rig_back(rig: Rig) -> Any:
    """A view of the rig whose ``inbox`` is ME's own (take_py reads the ring PEER -> ME)."""

    class Back:
        inbox = rig.own

    return Back()
