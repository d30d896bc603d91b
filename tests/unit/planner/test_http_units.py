"""The HTTP API's parts that need no cluster: the recent-results cache, the compile child, the flags."""

from __future__ import annotations

import asyncio

import pytest

from granny.cli import build_parser, planner_config
from granny.config import DEFAULT_HTTP_MAX_BODY, DEFAULT_RECENT_BYTES, Config
from granny.errors import ConfigError
from granny.planner.compiler import RECYCLE_ABOVE, SourceChecker
from granny.planner.recent import ENTRY_OVERHEAD, RecentResults
from granny.wire import Result, Status


def result(req_id: str, message: str = "") -> Result:
    return Result(req_id=req_id, index=0, status=Status.OK, message=message)


# --- RecentResults --------------------------------------------------------------------------------
def test_recent_results_are_bounded_in_bytes_oldest_out_first() -> None:
    cache = RecentResults(max_bytes=3 * (1000 + ENTRY_OVERHEAD))
    for i in range(5):
        assert cache.put((f"r{i}", 0), result(f"r{i}"), b"x" * 1000)
    assert [k for k in ("r0", "r1", "r2", "r3", "r4") if (k, 0) in cache] == ["r2", "r3", "r4"]
    assert cache.nbytes == 3 * (1000 + ENTRY_OVERHEAD) and len(cache) == 3
    hit = cache.get(("r4", 0))
    assert hit is not None and hit[1] == b"x" * 1000


def test_a_result_larger_than_the_bound_is_not_cached_and_evicts_nothing() -> None:
    cache = RecentResults(max_bytes=10_000)
    cache.put(("small", 0), result("small"), b"y")
    assert not cache.put(("big", 0), result("big"), b"x" * 10_000)
    assert ("big", 0) not in cache and ("small", 0) in cache


def test_error_text_counts_and_replacing_a_key_does_not_leak() -> None:
    cache = RecentResults(max_bytes=1 << 20)
    cache.put(("r", 0), result("r", message="m" * 500), b"")
    assert cache.nbytes == 500 + ENTRY_OVERHEAD
    cache.put(("r", 0), result("r"), b"abc")
    assert cache.nbytes == 3 + ENTRY_OVERHEAD and len(cache) == 1
    assert [p for _, p in cache.for_request("r")] == [b"abc"]


def test_recent_results_entry_bound() -> None:
    cache = RecentResults(max_bytes=1 << 30, max_entries=2)
    for i in range(3):
        cache.put((f"r{i}", 0), result(f"r{i}"), b"")
    assert len(cache) == 2 and ("r0", 0) not in cache


# --- SourceChecker ------------------------------------------------------------------------------------
def test_the_compile_child_reports_problems_and_survives_them() -> None:
    async def main() -> None:
        checker = SourceChecker()
        try:
            assert await checker.check("<f>", "def main(x):\n    return x\n") is None
            problem = await checker.check("<f>", "x = 1\ny = (\n")
            assert problem is not None and problem.kind == "SyntaxError" and problem.lineno == 2
            assert "line 2" in str(problem)
            # A coding cookie must not change how the text is read (the granule compiles a str too).
            assert await checker.check("<f>", "# -*- coding: latin-1 -*-\ns = 'caf\u00e9'\n") is None
            problem = await checker.check("<f>", "x = " + "-" * 200_000 + "1")
            assert problem is not None and problem.kind in ("RecursionError", "MemoryError", "SyntaxError")
            assert checker.children == 1
            # The child that compiled a source above RECYCLE_ABOVE was replaced (its memory freed).
            assert await checker.check("<f>", "a = 1\n") is None
            assert checker.children == 2 and checker.compiled == 5
        finally:
            await checker.close()

    assert RECYCLE_ABOVE < 200_000
    asyncio.run(main())


def test_a_compile_that_takes_too_long_is_a_problem_not_a_hang() -> None:
    async def main() -> None:
        checker = SourceChecker(timeout=0.001)
        try:
            problem = await checker.check("<f>", "a=1\n" * 200_000)
            assert problem is not None and problem.kind == "TimeoutError"
        finally:
            await checker.close()

    asyncio.run(main())


def test_the_compile_child_dying_is_a_problem_not_a_crash() -> None:
    async def main() -> None:
        checker = SourceChecker(memory=64 << 20)  # too little for the interpreter to compile much
        try:
            problem = await checker.check("<f>", "def f(a):\n    return a + 1\n" * 30_000)
            assert problem is not None and problem.kind == "MemoryError"
            assert await checker.check("<f>", "x = 1") is None  # a new child
        finally:
            await checker.close()

    asyncio.run(main())


# --- flags --------------------------------------------------------------------------------------------
def test_planner_size_flags() -> None:
    args = build_parser().parse_args(["planner", "--http-max-body", "8MiB", "--http-max-source", "100KiB",
                                      "--recent-bytes", "0"])
    config = planner_config(args)
    assert (config.http_max_body, config.http_max_source, config.recent_bytes) == (8 << 20, 100 << 10, 0)
    default = planner_config(build_parser().parse_args(["planner"]))
    assert default.http_max_body == DEFAULT_HTTP_MAX_BODY and default.recent_bytes == DEFAULT_RECENT_BYTES
    with pytest.raises(ConfigError, match="http_max_body"):
        planner_config(build_parser().parse_args(["planner", "--http-max-body", "0"]))
    with pytest.raises(ConfigError):
        Config(recent_bytes=-1)
