"""Configuration lives in one place: every GRANNY_* variable is named and read in granny/config.py, and
docs/configuration.md lists every Config field and every variable in its one table. Every internal
tunable (a timeout, an interval, a spin length, a cap) is a named default in granny/tunables.py (which
config.py re-exports), listed in the docs' table of internal constants; a numeric module-level constant
anywhere else must be a protocol constant on the list below."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from granny import config, tunables
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


def _tables() -> list[list[str]]:
    """The lines of each table in docs/configuration.md, in order."""
    tables: list[list[str]] = [[]]
    for line in DOCS.read_text().splitlines():
        if line.startswith("|"):
            tables[-1].append(line)
        elif tables[-1]:
            tables.append([])
    return [t for t in tables if t]


def _table(index: int = 0, titles: tuple[str, ...] = ("name", "flag", "environment", "default", "meaning"),
           ) -> list[dict[str, str]]:
    """The rows of a table in docs/configuration.md (0: the settings, 1: the internal constants), by column title."""
    cells = [[c.strip() for c in line.strip().strip("|").split("|")] for line in _tables()[index]]
    got = tuple(t.lower() for t in cells[0])
    assert got == titles, got
    titles = got
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


# --- every tunable in config.py/tunables.py -----------------------------------------------------------
# Numeric module-level constants that are not settings: changing one changes a protocol. Anything else
# numeric at module level outside config.py and tunables.py fails test_every_tunable_is_in_tunables.
PROTOCOL_MODULES = {"mpi/constants.py", "mpi/rma_constants.py"}  # MPI's own values (mpi4py's numbers)
PROTOCOL: dict[str, set[str]] = {
    # MPI's values, re-stated beside their user: error codes, comparison results, kinds, registry sizes.
    "mpi/comm.py": {"IDENT", "CONGRUENT", "SIMILAR", "UNEQUAL"},
    "mpi/comm_env.py": {"UNDEFINED"},
    "mpi/group.py": {"UNDEFINED", "IDENT", "SIMILAR", "UNEQUAL"},
    "mpi/status.py": {"UNDEFINED"},
    "mpi/topo.py": {"CART"},
    "mpi/ops.py": {"MAX_USER_OPS"},
    "mpi/request.py": {"ERR_REQUEST"},
    "mpi/win_attrs.py": {"KEYVAL_INVALID", "ERR_KEYVAL"},
    "mpi/win_ops.py": {"ERR_RANK"},
    "mpi/shmhosts.py": {"ERR_TRUNCATE"},
    # Kinds, flags and tags of granny's own protocols (and MPI's wildcards beside them).
    "mpi/p2p.py": {"ANY_SOURCE", "ANY_TAG", "PROC_NULL", "K_BUF", "K_OBJ", "K_RTS_BUF", "K_RTS_OBJ", "K_ACK",
                   "F_SYNC", "ERR_TRUNCATE", "ERR_RANK", "ERR_TAG"},
    "mpi/collectives.py": {"SCAN_TAG", "ALLTOALL_TAG"},
    "mpi/execute.py": {"COLL_TAG"},
    "mpi/win.py": {"POST_TAG", "DONE_TAG"},
    "mpi/rma_apply.py": {"PUT", "GET", "ACC", "GACC", "CAS", "ERR_TYPE"},
    "mpi/rma_remote.py": {"LOCK", "UNLOCK", "FLUSH", "REPLY", "OK", "FAILED", "BUSY"},
    "mpi/shmcoll.py": {"OBJ_TAG", "ERR_TRUNCATE"},
    "migration/point.py": {"MARK_TAG"},
    "transport/handshake.py": {"NONCE_BYTES", "ACCEPTED", "WRONG_KEY", "UNEXPECTED"},
    "sim/engine.py": {"_RETURN", "_END", "_POINT", "_ARRIVE", "_BEAT", "_TAKE", "_EVICT", "_LATER"},  # event order
    # Wire and shared-memory layouts every end must agree on.
    "migration/ship.py": {"KEY_BYTES", "CLAIM"},
    "transport/macs.py": {"GRANULE_CREDENTIAL_BYTES"},
    "serde.py": {"MAX_PARTS"},
    "memory/diff.py": {"_VERSION"},
    "memory/pages.py": {"PAGE_SIZE"},
    "mpi/tcp.py": {"MAX_HEADER", "LARGE", "_BUF", "_BYE"},  # _BUF is sized from MAX_HEADER and LARGE
    "mpi/shm.py": {"CTRL", "RING_META", "RING_DATA", "ALIGN", "EAGER_LIMIT", "PAD"},  # a record fits the ring
    "mpi/shmregion.py": {"LINE", "DATA_OFF", "SLOT", "SETUP_TAG", "ACK_TAG"},
    "mpi/rma_shm.py": {"SLOT", "LOCK", "ACC", "ERR_RMA_RANGE", "ERR_WIN", "EBUSY"},
    "parallel/board.py": {"HEADER", "SLOT", "MAX_THREADS", "DESC_MAX", "ERR_MAX", "RUN", "EXIT"},
    # Bounds set by others: the OS, SQLite, the HTTP API's published schema, the testbed's tc classes.
    "worker/granule_user.py": {"_PR_SET_DUMPABLE"},
    "worker/procutil.py": {"_PR_SET_PDEATHSIG"},
    "planner/journal.py": {"ROWS_PER_INSERT", "_CHUNK"},
    "planner/events_http.py": {"MAX_ID"},
    "planner/openapi.py": {"MAX_LOG_ID"},
    "testbed/netns.py": {"CLONE_NEWNET", "DELAY_TABLE"},
    "testbed/shaping.py": {"UNLIMITED", "PARENT_CLASS", "DEFAULT_CLASS", "MAX_LIMIT"},
    # Not settings: an estimate, an algorithm's step, a display's size, the paper's figures.
    "planner/recent.py": {"ENTRY_OVERHEAD"},
    "worker/call_ctl.py": {"ASKS"},
    "testbed/status.py": {"MAX_PAIR_ROWS"},
    "experiment/kernels.py": {"ITEMS"},
    "planner/policies/binpack.py": {"RESERVE"},  # what the policy bin-pack-reserve is: the original harness's 5%
    "planner/hint_index.py": {"NEVER"},  # a sentinel need, larger than any host  # the workload's definition, as the calibration measured it
    "experiment/live.py": {"ORIGINAL_SLOTS"},
    "experiment/ranking.py": {"NOISE_FLOOR"},
    "experiment/spot.py": {"TOP"},
}


def _numeric(node: ast.AST) -> bool:
    if isinstance(node, ast.Constant):
        return isinstance(node.value, int | float) and not isinstance(node.value, bool)
    if isinstance(node, ast.UnaryOp):
        return _numeric(node.operand)
    return isinstance(node, ast.BinOp) and _numeric(node.left) and _numeric(node.right)


def numeric_constants(source: str) -> Iterator[str]:
    """The names of the module-level UPPER_CASE constants of ``source`` bound to a number (``1 << 20`` too)."""
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign):
            pairs = []
            for target in node.targets:
                if isinstance(target, ast.Tuple) and isinstance(node.value, ast.Tuple):
                    pairs += list(zip(target.elts, node.value.elts, strict=False))
                else:
                    pairs.append((target, node.value))
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            pairs = [(node.target, node.value)]
        else:
            continue
        for target, value in pairs:
            if isinstance(target, ast.Name) and target.id.lstrip("_").isupper() and _numeric(value):
                yield target.id


@pytest.mark.parametrize("source", [
    "TIMEOUT = 5.0", "_SPIN_NS = 30_000", "CAP: int = 1 << 20", "A, B = 1, 2", "GRACE = -1", "X = 64 * 1024",
])
def test_the_constant_check_sees_a_numeric_constant(source: str) -> None:
    assert list(numeric_constants(source))


@pytest.mark.parametrize("source", [
    "NAME = 'x'", "timeout = 5.0", "KINDS = (1, 2)", "def f():\n    TIMEOUT = 5.0", "X = Y", "FLAG = True",
])
def test_the_constant_check_ignores_what_is_no_numeric_constant(source: str) -> None:
    assert not list(numeric_constants(source))


def test_every_tunable_is_in_tunables() -> None:
    found = [f"{rel}:{name}" for path in sorted(SRC.rglob("*.py"))
             if (rel := path.relative_to(SRC).as_posix()) not in {"config.py", "tunables.py", *PROTOCOL_MODULES}
             for name in numeric_constants(path.read_text()) if name not in PROTOCOL.get(rel, set())]
    assert not found, ("move each tunable to granny/tunables.py (and docs/configuration.md), or list a protocol "
                       "constant in PROTOCOL here:\n" + "\n".join(found))


def test_the_protocol_list_names_only_constants_that_exist() -> None:
    stale = [f"{rel}:{name}" for rel, names in PROTOCOL.items()
             for name in names - set(numeric_constants((SRC / rel).read_text()))]
    assert not stale, f"no longer constants there: {stale}"


def test_tunables_imports_nothing() -> None:
    """The pure core reads it: it may not reach os (pyproject.toml's purity contract) through an import."""
    tree = ast.parse((SRC / "tunables.py").read_text())
    assert not [n for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom)]
    assert config.tunables is tunables


def test_the_docs_list_every_tunable() -> None:
    listed = [re.sub(r"[`\s]", "", row["name"]) for row in _table(1, ("name", "default", "used in", "meaning"))]
    names = [n for n in vars(tunables) if n.isupper()]
    assert sorted(listed) == sorted(names), (set(listed) ^ set(names))
