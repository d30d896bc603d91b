"""The board's words: each has its own index, inside its area, on a real board file in /dev/shm."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from granny.parallel.board import HEADER, SLOT, Board, ThreadWord, Word, board_path


@pytest.fixture
def board() -> Iterator[Board]:
    team = f"t{os.urandom(4).hex()}"
    b = Board(board_path(team, os.getpid()), team, 0, create=True)
    try:
        yield b
    finally:
        b.close()
        os.unlink(b.path)


def test_the_words_fit_their_areas() -> None:
    assert max(Word) < HEADER // 8
    assert max(ThreadWord) < SLOT // 8
    indexes = [Board.word(t, w) for t in range(3) for w in ThreadWord]
    assert len(set(indexes)) == len(indexes)
    assert min(indexes) == HEADER // 8


def test_publish_sets_the_header_and_resets_the_region_counters(board: Board) -> None:
    board.words[Word.NEXT_CHUNK] = 7
    board.words[Word.SINGLES] = 3
    gen = board.publish({"x": 1})
    assert (board.generation, board.words[Word.NEXT_CHUNK], board.words[Word.SINGLES]) == (gen, 0, 0)
    assert board.descriptor()[1] == {"x": 1}
    assert board.next_chunk() == 0 and board.next_chunk() == 1


def test_thread_words_are_the_threads_own(board: Board) -> None:
    board.retire(2)
    board.words[Board.word(1, ThreadWord.SLEEPING)] = 1
    assert board.sleeping(1) and not board.sleeping(2) and not board.present(2)
    assert board.words[Board.word(2, ThreadWord.RETIRED)] == 1
    board.set_present()
    assert board.present(0) and not board.retired()
