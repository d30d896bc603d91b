"""Configuration lives in one place: every GRANNY_* variable is named and read in granny/config.py, and
docs/configuration.md lists every Config field and every variable in its one table."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from granny import config
from granny.config import ENV_DEFAULTS, Config, env

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src" / "granny"
DOCS = ROOT / "docs" / "configuration.md"
NAME = re.compile(r"GRANNY_[A-Z0-9_]+")
READS = {"get", "pop"}  # os.environ methods that read a value (setdefault, update and copies write or pass on)


def _is_environ(node: ast.AST) -> bool:
    return (isinstance(node, ast.Attribute) and node.attr == "environ" and isinstance(node.value, ast.Name)
            and node.value.id == "os") or (isinstance(node, ast.Name) and node.id == "environ")


def _allowed_key(key: ast.AST | None) -> bool:
    """A read is allowed outside config.py only for a literal name that is not granny's (COLUMNS, CC)."""
    return isinstance(key, ast.Constant) and isinstance(key.value, str) and not key.value.startswith("GRANNY_")


def violations(source: str) -> Iterator[tuple[int, str]]:
    """(line, what) for each environment read of a GRANNY_* (or unresolvable) name, and each GRANNY_* name."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and NAME.fullmatch(node.value):
            yield node.lineno, f"the name {node.value} (declare it in config.py)"
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            func = node.func
            reads = (func.attr in READS and _is_environ(func.value)) or (
                func.attr == "getenv" and isinstance(func.value, ast.Name) and func.value.id == "os")
            if reads and not _allowed_key(node.args[0] if node.args else None):
                yield node.lineno, f"an environment read ({ast.unparse(node)})"
        elif isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load) and _is_environ(node.value):
            if not _allowed_key(node.slice):
                yield node.lineno, f"an environment read ({ast.unparse(node)})"
        elif (isinstance(node, ast.Compare) and any(_is_environ(c) for c in node.comparators)
              and not _allowed_key(node.left)):
            yield node.lineno, f"an environment test ({ast.unparse(node)})"


def test_no_granny_variable_is_named_or_read_outside_config() -> None:
    found = [f"{path.relative_to(ROOT)}:{line}: {what}"
             for path in sorted(SRC.rglob("*.py")) if path != SRC / "config.py"
             for line, what in violations(path.read_text())]
    assert not found, "read GRANNY_* settings through granny.config (Config or env()):\n" + "\n".join(found)


@pytest.mark.parametrize("source", [
    "import os\nx = os.environ.get('GRANNY_SLOTS')",
    "import os\nx = os.environ[ENV_SLOTS]",
    "import os\nx = os.getenv(name)",
    "import os\nx = os.environ.pop(ENV_WATCH_FD, '')",
    "import os\nx = ENV_X in os.environ",
    "from os import environ\nx = environ.get(ENV_X, '')",
    "ENV_X = 'GRANNY_X'",
])
def test_the_check_sees_each_kind_of_read(source: str) -> None:
    assert list(violations(source))


@pytest.mark.parametrize("source", [
    "import os\nx = os.environ.get('COLUMNS')",
    "import os\nos.environ[ENV_X] = '1'",  # a write, for children to inherit
    "import os\nos.environ.update({ENV_X: '1'})",
    "import os\nchild = dict(os.environ)",
    "x = env(ENV_X)",
    "doc = 'set GRANNY_SLOTS to choose'",  # prose is not a name
])
def test_the_check_allows_writes_and_other_variables(source: str) -> None:
    assert not list(violations(source))


def _declared_variables() -> set[str]:
    return {value for name, value in vars(config).items()
            if name.startswith("ENV_") and isinstance(value, str) and NAME.fullmatch(value)}


def test_every_declared_variable_has_a_default() -> None:
    assert _declared_variables() == set(ENV_DEFAULTS)


def test_env_reads_declared_variables_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(config.ENV_MPI_SPIN_US, raising=False)
    assert env(config.ENV_MPI_SPIN_US) == ENV_DEFAULTS[config.ENV_MPI_SPIN_US]
    monkeypatch.setenv(config.ENV_MPI_SPIN_US, "7")
    assert env(config.ENV_MPI_SPIN_US) == "7"
    assert env(config.ENV_WATCH_FD, pop=True) == ""
    monkeypatch.setenv(config.ENV_WATCH_FD, "9")
    assert env(config.ENV_WATCH_FD, pop=True) == "9"
    assert env(config.ENV_WATCH_FD) == ""  # popped: a child does not inherit it
    with pytest.raises(KeyError):
        env("GRANNY_NOT_DECLARED")
    with pytest.raises(KeyError):
        env("GRANNY_NOT_DECLARED", "x")


def _table() -> list[dict[str, str]]:
    """The rows of the one table in docs/configuration.md, by column title."""
    lines = [line for line in DOCS.read_text().splitlines() if line.startswith("|")]
    cells = [[c.strip() for c in line.strip().strip("|").split("|")] for line in lines]
    titles = [t.lower() for t in cells[0]]
    assert titles == ["name", "flag", "environment", "default", "meaning"], titles
    assert all(set(c) <= set("-: ") for c in cells[1]), "the second line must be the header rule"
    rows = [dict(zip(titles, row, strict=True)) for row in cells[2:]]
    assert rows
    return rows


def test_the_docs_table_lists_every_config_field() -> None:
    names = {re.sub(r"[`\s]", "", row["name"]) for row in _table()}
    missing = [f for f in Config._FIELDS if f not in names]
    assert not missing, f"docs/configuration.md lacks the Config field(s) {missing}"


def test_the_docs_table_lists_every_variable() -> None:
    listed = {v for row in _table() for v in NAME.findall(row["environment"])}
    missing = sorted(_declared_variables() - listed)
    assert not missing, f"docs/configuration.md lacks the variable(s) {missing}"
