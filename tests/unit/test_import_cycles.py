"""The import-cycle check of CI (scripts/cycles.py): it finds cycles, and fails on a new one."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "cycles.py"


def load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("granny_cycles", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def knotted(tmp_path: Path) -> Iterator[str]:
    """A package whose cycles hide where the check must look: a function-local and a type-only import."""
    pkg = tmp_path / "knotted"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from . import b\n    return b\n")
    (pkg / "b.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import a\n")
    (pkg / "c.py").write_text("from . import a\n")  # imports into the cycle, is not part of it
    sys.path.insert(0, str(tmp_path))
    try:
        yield "knotted"
    finally:
        sys.path.remove(str(tmp_path))
        for name in [m for m in sys.modules if m == "knotted" or m.startswith("knotted.")]:
            del sys.modules[name]


def test_no_import_cycle_is_new_and_none_grew() -> None:
    cycles = load()
    found = cycles.cycles()
    assert cycles.unknown(found) == [], found


def test_granny_has_no_import_cycle_at_all() -> None:
    assert load().cycles() == []  # issue 17's target; KNOWN is empty


def test_function_local_and_type_only_imports_count(knotted: str) -> None:
    assert load().cycles(knotted) == [["knotted.a", "knotted.b"]]


BROKEN = [("granny.client", "granny.futures"), ("granny.parallel.member", "granny.parallel.remote"),
          ("granny.parallel.remote", "granny.parallel.team"), ("granny.parallel.member", "granny.parallel.team"),
          ("granny.sim.engine", "granny.sim.migrate"), ("granny.sim.engine", "granny.sim.spot"),
          ("granny.planner.batch", "granny.planner.state"), ("granny.planner.batch", "granny.planner.fusion"),
          ("granny.planner.batch", "granny.planner.pausing"), ("granny.planner.eviction", "granny.planner.state"),
          ("granny.planner.leases", "granny.planner.state"), ("granny.planner.migration", "granny.planner.state"),
          ("granny.planner.server", "granny.planner.views"), ("granny.planner.server", "granny.planner.metrics"),
          ("granny.planner.server", "granny.planner.event_feed"), ("granny.mpi.comm", "granny.mpi.api"),
          ("granny.mpi.comm", "granny.mpi.topo"), ("granny.mpi.buffers", "granny.mpi.datatypes"),
          ("granny.mpi.comm", "granny.mpi.datatypes"), ("granny.mpi.collectives", "granny.mpi.shmcoll"),
          ("granny.mpi.win", "granny.mpi.api")]  # issue 17: each cycle broken, never to come back


@pytest.mark.parametrize("pair", BROKEN)
def test_a_broken_cycle_is_no_longer_known(pair: tuple[str, str]) -> None:
    assert not any(set(pair) <= group for group in load().KNOWN)


def test_a_new_cycle_or_a_grown_one_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    cycles = load()
    monkeypatch.setattr(cycles, "KNOWN", (frozenset({"granny.x", "granny.y", "granny.z"}),))
    assert cycles.unknown([["granny.config", "granny.errors"]]) == [["granny.config", "granny.errors"]]
    grown = ["granny.x", "granny.y", "granny.z", "granny.serde"]
    assert cycles.unknown([grown]) == [grown]
    assert cycles.unknown([["granny.x", "granny.y"]]) == []  # a known one shrank
