"""How a migration reads in events and in `granny status`: "ranks 4-7 moved h2 -> h1" (pure text)."""

from __future__ import annotations

from typing import Any

from .policies.base import GranuleMove


def describe(moves: tuple[GranuleMove, ...]) -> str:
    """"ranks 4-7 moved h2 -> h1": one clause per (source, target) pair, ranks as ranges."""
    groups: dict[tuple[str, str], list[int]] = {}
    for mv in moves:
        groups.setdefault((mv.source, mv.target), []).append(mv.index)
    parts = []
    for (src, dst), ranks in groups.items():
        label = "rank" if len(ranks) == 1 else "ranks"
        parts.append(f"{label} {_ranges(sorted(ranks))} moved {src} -> {dst}")
    return ", ".join(parts)


def _ranges(ranks: list[int]) -> str:
    out: list[str] = []
    start = prev = ranks[0]
    for r in [*ranks[1:], -1]:  # -1 closes the last range
        if r == prev + 1:
            prev = r
            continue
        out.append(str(start) if start == prev else f"{start}-{prev}")
        start = prev = r
    return ",".join(out)


def rows(moves: tuple[GranuleMove, ...]) -> list[dict[str, Any]]:
    return [{"index": mv.index, "source": mv.source, "target": mv.target} for mv in moves]
