"""Acks to granules: which of their numbered frames (Log, Done) the journal now holds.

Theory of operation: a granule keeps every numbered frame until it is acknowledged, and sends the
unacknowledged ones again after a reconnect (:mod:`granny.worker.outbox`). The planner acknowledges
only after the journal commit that holds the frame's effect, so a planner killed before that commit
gets the frame again from the granule instead of losing it. One Ack per granule per commit batch,
cumulative: the cost does not grow with the number of tasks. A granule that retires (its Done is its
last frame) is closed after its Ack, which tells it the Done is safe and it may exit.
"""

from __future__ import annotations

from typing import Protocol

from ..wire import Ack
from .journal import Journal


class Peer(Protocol):
    closed: bool

    def send(self, msg: Ack) -> None: ...

    def close(self) -> None: ...


class Acks:
    def __init__(self, journal: Journal) -> None:
        self._journal = journal
        self._batch = -1
        self._due: dict[Peer, tuple[int, bool]] = {}

    def note(self, peer: Peer, seq: int, close: bool = False) -> None:
        """Acknowledge ``seq`` (and close, if asked) once what was journaled so far is committed."""
        if not seq and not close:
            return  # an unnumbered frame (from an older granule): nothing to acknowledge
        if self._journal.batches != self._batch or not self._due:
            self._batch = self._journal.batches
            due: dict[Peer, tuple[int, bool]] = {}
            self._due = due
            self._journal.call_after_commit(self._send, due, hurry=False)
        old_seq, old_close = self._due.get(peer, (0, False))
        self._due[peer] = (max(seq, old_seq), close or old_close)

    def _send(self, due: dict[Peer, tuple[int, bool]]) -> None:
        if due is self._due:
            self._due = {}  # a note from now on needs a later commit
        for peer, (seq, close) in due.items():
            if peer.closed:
                continue
            if seq:
                peer.send(Ack(seq=seq))
            if close:
                peer.close()
