"""The size check of CI (scripts/sizes.py): it finds an oversized module or function, and passes on granny."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "sizes.py"


def load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("granny_sizes", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_it_finds_a_long_module_and_a_long_function(tmp_path: Path) -> None:
    sizes = load()
    (tmp_path / "small.py").write_text("def f():\n    return 1\n")
    (tmp_path / "long.py").write_text("x = 1\n" * 601)
    body = "".join(f"    y{i} = {i}\n" for i in range(80))
    (tmp_path / "fn.py").write_text(f"def g():\n{body}")
    found = sizes.oversized(tmp_path)
    assert [f.split(":")[0] for f in found] == ["fn.py", "long.py"], found


def test_granny_is_within_the_limits() -> None:
    assert load().oversized() == []
