"""What a region's body sees as ``team`` wherever the board is mapped: the master, members on its host, and the
proxy that serves a member on another host (remote.py). A leaf: team, member and remote all use it."""

from __future__ import annotations

from contextlib import AbstractContextManager

from .board import Board, Word


class Context:
    """What a region's body sees as ``team``: its thread number, and barrier/critical/single/master."""

    def __init__(self, board: Board, thread: int, nthreads: int) -> None:
        self._board, self.thread_num, self.num_threads = board, thread, nthreads
        self._singles = 0

    def barrier(self) -> None:
        self._board.barrier()

    def critical(self) -> AbstractContextManager[None]:
        """``with team.critical():`` one thread of the team at a time (a kernel lock on the board)."""
        board = self._board

        class _Critical:
            def __enter__(self) -> None:
                board.lock()

            def __exit__(self, *exc: object) -> None:
                board.unlock()

        return _Critical()

    def single(self) -> bool:
        """True in exactly one thread (the first to get here); as OpenMP ``single nowait``."""
        self._singles += 1
        words = self._board.words
        self._board.lock()
        try:
            if words[Word.SINGLES] < self._singles:
                words[Word.SINGLES] = self._singles
                return True
            return False
        finally:
            self._board.unlock()

    def master(self) -> bool:
        return self.thread_num == 0
