"""The import-cycle check of CI (scripts/cycles.py): it finds cycles, and fails on a new one."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "cycles.py"


def load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("granny_cycles", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_no_import_cycle_is_new_and_none_grew() -> None:
    cycles = load()
    found = cycles.cycles()
    assert cycles.unknown(found) == [], found
    assert ["granny.client", "granny.futures"] in found  # it does see cycles (this one is still to break)


def test_a_new_cycle_or_a_grown_one_is_reported() -> None:
    cycles = load()
    assert cycles.unknown([["granny.config", "granny.errors"]]) == [["granny.config", "granny.errors"]]
    grown = ["granny.client", "granny.futures", "granny.serde"]
    assert cycles.unknown([grown]) == [grown]
    assert cycles.unknown([["granny.parallel.member", "granny.parallel.team"]]) == []  # a known one shrank
