"""List granny's import cycles (issue 17) and fail on any that is not already known.

    .venv/bin/python scripts/cycles.py            # exit 1 when a cycle is new, or a known one grew

A cycle is a strongly connected component of the import graph of the ``granny`` package, counting every
import: at module level, inside functions, and under ``if TYPE_CHECKING`` (a type-only cycle still ties
the modules together for a reader). import-linter's contracts in pyproject.toml check layers; they do not
see cycles inside a layer, which is what this adds.

``KNOWN`` lists tolerated cycles; issue 17 broke every one that existed when this check came in, so it is
empty. The check lets a known cycle shrink (a module leaving it is fine) but not grow, and no new one may
appear. import-linter's contracts inside the packages (pyproject.toml) catch most new cycles too; this
catches the rest (across packages of one layer, or through a TYPE_CHECKING import).
"""

from __future__ import annotations

import sys

import grimp

# Empty since issue 17 broke the last two (the mpi knot and planner.server with its helpers): any cycle
# is new. Add one here only with a reason and an issue that breaks it.
KNOWN: tuple[frozenset[str], ...] = ()


def cycles(package: str = "granny") -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm, iterative)."""
    graph = grimp.build_graph(package, exclude_type_checking_imports=False)
    edges = {m: sorted(graph.find_modules_directly_imported_by(m)) for m in graph.modules}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            node, i = work.pop()
            if i == 0:
                index[node] = low[node] = len(index)
                stack.append(node)
                on_stack.add(node)
            targets = edges[node]
            if i < len(targets):
                work.append((node, i + 1))
                nxt = targets[i]
                if nxt not in index:
                    work.append((nxt, 0))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    found.append(sorted(group))
            if work:  # back in the caller's frame: carry the low-link up
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return sorted(found)


def unknown(found: list[list[str]]) -> list[list[str]]:
    """The cycles that are not inside one known cycle."""
    return [group for group in found if not any(set(group) <= known for known in KNOWN)]


def main() -> int:
    found = cycles()
    for group in found:
        print(f"{len(group)} modules: {', '.join(group)}")
    bad = unknown(found)
    for group in bad:
        print(f"NEW import cycle (or a known one grew): {', '.join(group)}", file=sys.stderr)
    print(f"{len(found)} import cycles, {len(bad)} not known")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
