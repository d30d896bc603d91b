"""``scripts/conformance`` (run by ``scripts/test``) writes its results under build/, not over the committed
ones in benchmarks/results/: a test run leaves the git tree clean (issue 16)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DRIVER = REPO / "scripts" / "_conformance.py"

# Just what scripts/_conformance_runner.py needs of mpi4py's test/main.py: a TestProgram to run modules with.
FAKE_MAIN = '''
import unittest

def TestProgram(module, argv, testRunner, exit):
    names = [a for a in argv[1:] if not a.startswith("-")]
    return unittest.main(module=None, argv=[argv[0], *names], testRunner=testRunner, exit=exit)
'''
FAKE_MODULE = '''
import unittest

class TestOne(unittest.TestCase):
    def test_passes(self):
        self.assertEqual(1 + 1, 2)
'''


def test_a_conformance_run_writes_under_build_not_over_committed_results(tmp_path: Path) -> None:
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "main.py").write_text(textwrap.dedent(FAKE_MAIN))
    (suite / "test_fake.py").write_text(textwrap.dedent(FAKE_MODULE))
    stem = f"conformance-selftest-{os.getpid()}"  # not the real stem: a parallel real run keeps its files
    written = [REPO / d / f"{stem}.{ext}" for d in ("build/conformance", "benchmarks/results") for ext in ("md", "json")]
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRANNY_")}
    try:
        proc = subprocess.run([sys.executable, str(DRIVER), "--suite", str(suite), "--ranks", "1", "--cluster",
                               "embedded", "--name", stem, "--timeout", "90", "test_fake"],
                              env=env, capture_output=True, text=True, timeout=180)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert not (REPO / "benchmarks" / "results" / f"{stem}.md").exists(), "wrote into the committed results"
        md = (REPO / "build" / "conformance" / f"{stem}.md").read_text()
        assert "test_fake" in md
        assert '"pass": 1' in (REPO / "build" / "conformance" / f"{stem}.json").read_text()
    finally:
        for path in written:
            path.unlink(missing_ok=True)


def test_build_is_ignored_by_git() -> None:
    """Where run outputs go must be out of git's sight, or the run would dirty the tree all the same."""
    if not (REPO / ".git").exists():
        return  # an unpacked source tree: there is no git tree to keep clean
    proc = subprocess.run(["git", "-C", str(REPO), "check-ignore", "-q", "build/conformance/conformance.md"])
    assert proc.returncode == 0
