"""Team members on other hosts: snapshots out at the fork, dirty-page diffs back at the join.

Theory of operation
- A member that is not on the master's host (different boot, network or mount namespace) cannot map
  the board or the shared arrays. It dials the master instead, and the master runs a *proxy* thread
  for it: the proxy behaves exactly like a local member on the board (it owns that thread's words),
  so the master's fork/join code does not know the difference.
- At each fork the proxy sends the region plus, per shared array, the pages that changed since its
  last push to this member (the whole array, as a diff from zeros, the first time). The member keeps
  a private replica, snapshots it, runs its share, and sends back the dirty pages of its replica
  against that snapshot (memory/diff.py). The proxy merges them into the real array with the
  ``overwrite`` op (only the bytes the member changed), writes reduction partials into the thread's
  private segment, then marks the thread done. Bytes on the wire are proportional to dirty pages.
- ``barrier``, ``critical``, ``single`` and dynamic-schedule claims from a remote member are requests
  the proxy carries out on the board on the member's behalf, so they are team-wide across hosts.
  Memory written by a remote member becomes visible to the others at the join, not at a barrier.
- A member proves it knows the team's key with granny's handshake (transport/handshake.py: a fresh
  nonce from each side, bound to the team and the member's thread) before anything is unpickled;
  a wrong key is refused with a clear AuthError on the member's side.
- Messages are pickle frames (:mod:`granny.serde`): protocol 5, numpy buffers out of band.
"""

from __future__ import annotations

import pickle
import socket
import threading
import traceback
from collections.abc import Callable
from typing import Any

import numpy as np

from .. import serde
from ..errors import AuthError, ProtocolError
from ..memory.diff import Diff, apply, encode
from ..memory.merge import MergeOp, merge_diff
from ..memory.pages import snapshot
from ..memory.segments import SharedArray
from ..transport import handshake
from ..tunables import MAX_TEAM_MESSAGE as MAX_MESSAGE
from ..tunables import TEAM_HANDSHAKE_TIMEOUT as HANDSHAKE_TIMEOUT
from .board import EXIT, Board
from .context import Context
from .region import Region, identity, run_share


# --- framing ------------------------------------------------------------------------------------
class Channel:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sent = self.received = 0

    def send(self, obj: Any) -> None:
        parts = serde.pickle_parts(obj)
        head = serde.frame_head(parts)
        self.sock.sendall(head + parts[0])  # one write for a request (a claim, a barrier), not two
        for p in parts[1:]:
            self.sock.sendall(p)  # arrays: straight from their memory
        self.sent += len(head) + sum(memoryview(p).nbytes for p in parts)

    def recv(self) -> Any:
        parts = serde.read_frame(self._exact, MAX_MESSAGE)
        self.received += serde.head_size(len(parts)) + sum(map(len, parts))
        return serde.loads(parts)

    def _exact(self, n: int) -> bytearray:
        buf = bytearray(n)
        view, got = memoryview(buf), 0
        while got < n:
            k = self.sock.recv_into(view[got:])
            if k == 0:
                raise ConnectionError("the other end of the team channel closed")
            got += k
        return buf

    def close(self) -> None:
        self.sock.close()


def _context(team_id: str) -> bytes:
    return b"granny-team:" + team_id.encode()


# --- master side ----------------------------------------------------------------------------------
class Listener:
    """Accepts remote members and starts a proxy thread for each (runs in the master's process)."""

    def __init__(self, board_path: str, team_id: str, key: bytes, ip: str) -> None:
        self.board_path, self.team_id, self.key = board_path, team_id, key
        self.sock = socket.create_server(("0.0.0.0", 0))
        self.address = (ip, self.sock.getsockname()[1])
        self.proxies: list[threading.Thread] = []
        # Joins of remote members, merged by the caller's thread once every thread of the region is done:
        # a merge rewrites whole pages, so it must not race local threads (or other merges) on a page.
        self._merges: list[Callable[[], None]] = []
        self._merges_lock = threading.Lock()
        self.channels: list[Channel] = []
        self._closed = False
        threading.Thread(target=self._accept, name=f"team-{team_id}-accept", daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                sock, _ = self.sock.accept()
            except OSError:
                return
            # The handshake runs on a thread of its own: a stranger that stalls delays no member.
            threading.Thread(target=self._admit, args=(sock,), name=f"team-{self.team_id}-admit", daemon=True).start()

    def _admit(self, sock: socket.socket) -> None:
        try:
            sock.settimeout(HANDSHAKE_TIMEOUT)
            thread = handshake.accept(sock, self.key, _context(self.team_id), "a team member")
            sock.settimeout(None)
        except (OSError, ProtocolError):  # AuthError too: a stranger or a broken member; keep serving
            sock.close()
            return
        chan = Channel(sock)
        self.channels.append(chan)
        t = threading.Thread(target=_proxy, args=(chan, self.board_path, self.team_id, thread, self._defer),
                             name=f"team-{self.team_id}-proxy-{thread}", daemon=True)
        self.proxies.append(t)
        t.start()

    def _defer(self, merge: Callable[[], None]) -> None:
        with self._merges_lock:
            self._merges.append(merge)

    def merge_joins(self) -> None:
        """Fold the remote members' diffs into the shared arrays (the caller, after every thread is done)."""
        with self._merges_lock:
            merges, self._merges = self._merges, []
        for merge in merges:
            merge()

    def bytes_shipped(self) -> tuple[int, int]:
        return sum(c.sent for c in self.channels), sum(c.received for c in self.channels)

    def close(self) -> None:
        self._closed = True
        self.sock.close()


def _proxy(chan: Channel, path: str, team_id: str, thread: int, defer: Callable[[Callable[[], None]], None]) -> None:
    board = Board(path, team_id, thread, create=False)
    arrays: dict[str, SharedArray] = {}
    pushed: dict[str, np.ndarray] = {}  # per array: the replica's contents as this member has them
    seen = 0
    board.set_present()
    try:
        while True:
            board.wait_until(board.moved_since(seen))
            gen = seen = board.generation
            command, region = board.descriptor()
            if command == EXIT or board.retired():
                chan.send(("exit",))
                return
            assert isinstance(region, Region)
            board.nthreads = region.nthreads
            updates: dict[str, Diff] = {}
            for name, (seg, shape, dtype, offset) in region.shared.items():
                arr = arrays.get(seg)
                if arr is None:
                    arr = arrays[seg] = SharedArray.attach(seg, shape, dtype, offset)
                base = pushed.get(seg)
                if base is None:
                    base = pushed[seg] = np.zeros(arr.nbytes, dtype=np.uint8)
                updates[name] = encode(arr.array, base)
                apply(updates[name], base.view(arr.dtype).reshape(arr.shape))  # now what the member will hold
            chan.send(("fork", gen, region, updates))
            join = _serve(chan, board, thread, region.nthreads)
            _, diffs, partials, error = join
            for name, diff in diffs.items():
                seg = region.shared[name][0]
                arr = arrays[seg]
                base_view = pushed[seg].view(arr.dtype).reshape(arr.shape)
                defer(_merge_later(arr, diff, base_view))
            for name, partial in partials.items():
                op, segs, shape, dtype = region.reduce[name]
                SharedArray.attach(segs[thread], shape, dtype).array[...] = partial
            if error is not None:
                exc, text = error
                board.set_error_text(exc, text)
            board.set_done(gen)
            if board.sleeping(0):
                board.ring(0)
    except (ConnectionError, OSError, EOFError):
        return  # the member is gone: its granule's exit fails the team's lease, which the master sees
    finally:
        chan.close()
        board.close()


def _merge_later(arr: SharedArray, diff: Diff, base: np.ndarray) -> Callable[[], None]:
    def merge() -> None:
        merge_diff(arr.array, diff, MergeOp.OVERWRITE, snapshot=base)  # only the bytes the member changed
        apply(diff, base)  # the proxy's record of the member's replica, for the next push

    return merge


def _serve(chan: Channel, board: Board, thread: int, nthreads: int) -> Any:
    """Carry out the member's team requests until its join arrives; returns the join."""
    ctx = Context(board, thread, nthreads)
    while True:
        msg = chan.recv()
        kind = msg[0]
        if kind == "join":
            return msg
        if kind == "claim":
            chan.send(board.next_chunk())
        elif kind == "barrier":
            board.barrier()
            chan.send(True)
        elif kind == "lock":
            board.lock()
            chan.send(True)
        elif kind == "unlock":
            board.unlock()
            chan.send(True)
        elif kind == "single":
            chan.send(ctx.single())
        else:
            raise ConnectionError(f"unexpected team request {kind!r}")


# --- member side ----------------------------------------------------------------------------------
class RemoteContext:
    """``team`` for a member on another host: every coordination call is a request to its proxy."""

    def __init__(self, chan: Channel, thread: int, nthreads: int) -> None:
        self._chan, self.thread_num, self.num_threads = chan, thread, nthreads

    def _call(self, kind: str) -> Any:
        self._chan.send((kind,))
        return self._chan.recv()

    def barrier(self) -> None:
        self._call("barrier")

    def claim(self) -> int:
        return int(self._call("claim"))

    def critical(self) -> Any:
        ctx = self

        class _Critical:
            def __enter__(self) -> None:
                ctx._call("lock")

            def __exit__(self, *exc: object) -> None:
                ctx._call("unlock")

        return _Critical()

    def single(self) -> bool:
        return bool(self._call("single"))

    def master(self) -> bool:
        return False


def remote_member(team_id: str, thread: int, address: tuple[str, int], key: bytes) -> int:
    sock = socket.create_connection(address, timeout=HANDSHAKE_TIMEOUT)
    try:
        handshake.dial(sock, key, _context(team_id), thread, f"the master of team {team_id}")
    except AuthError as exc:
        sock.close()
        raise AuthError(f"team member {thread}: {exc}") from None
    except BaseException:
        sock.close()
        raise
    sock.settimeout(None)
    chan = Channel(sock)
    replicas: dict[str, np.ndarray] = {}
    fns: dict[str, Callable[..., Any]] = {}
    regions = 0
    try:
        while True:
            msg = chan.recv()
            if msg[0] == "exit":
                return regions
            _, gen, region, updates = msg
            for name, diff in updates.items():
                seg, shape, dtype, _ = region.shared[name]
                rep = replicas.get(seg)
                if rep is None:
                    rep = replicas[seg] = np.zeros(shape, dtype=dtype)
                apply(diff, rep)
            if thread >= region.nthreads:
                chan.send(("join", {}, {}, None))
                continue
            regions += 1
            views: dict[str, Any] = {name: replicas[spec[0]] for name, spec in region.shared.items()}
            snaps = {name: snapshot(views[name]) for name in region.shared}
            for name, (op, _segs, shape, dtype) in region.reduce.items():
                views[name] = np.full(shape, identity(op, np.dtype(dtype)), dtype=dtype)
            error = None
            try:
                fn = fns.get(region.fn_key)
                if fn is None:
                    fn = fns[region.fn_key] = pickle.loads(region.fn)
                ctx = RemoteContext(chan, thread, region.nthreads)
                run_share(region, fn, thread, views, ctx, ctx.claim)
            except BaseException as exc:  # reported to the master, raised at the join
                error = (exc, "".join(traceback.format_exception(exc)))
                try:
                    pickle.dumps(exc)
                except Exception:
                    error = (RuntimeError(f"{type(exc).__name__}: {exc}"), error[1])
            diffs = {name: encode(views[name], snaps[name]) for name in region.shared}
            partials = {name: views[name] for name in region.reduce}
            chan.send(("join", diffs, partials, error))
    finally:
        chan.close()
