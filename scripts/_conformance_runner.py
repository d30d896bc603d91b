"""Runs modules of mpi4py's own unittest suite, unmodified, and writes a JSON summary per rank.

Launched by ``scripts/conformance`` as every rank of a job, under either implementation::

    granny run -n K      /abs/scripts/_conformance_runner.py --suite DIR --out PREFIX [-v] MODULE ...
    mpirun -n K PEER_PY  /abs/scripts/_conformance_runner.py --suite DIR --out PREFIX [-v] MODULE ...

It drives the suite exactly as the suite's own ``test/main.py`` does (its ``TestProgram``: the same
argument parser, module set-up, banner and loader), and only swaps in a test runner whose result class
records every test. The standard unittest output still goes to stderr. Each rank writes
``PREFIX.rank<R>.json``::

    {"rank": R, "size": K, "done": bool, "current": TEST_ID|null, "counts": {...},
     "tests": {TEST_ID: {"status": "pass|fail|error|skip|xfail|xpass", "msg": FIRST_LINE, "s": SECONDS}}}

The file is rewritten when each test starts and ends (at most a few times a second), so after a hang
or a kill it still names the test that never finished (``current``) and the results before it.
Under granny this file runs as ``__main__`` inside a granule via ``exec`` with the worker's cwd:
every path given to it must be absolute.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
import unittest


def _env_rank() -> int:
    for var in ("GRANNY_INDEX", "OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK"):
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var])
    return 0


def _first_line(err: tuple) -> str:
    etype, value, _tb = err
    text = "".join(traceback.format_exception_only(etype, value)).strip()
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return (lines[-1] if lines else etype.__name__)[:400]


class Recorder:
    """Per-rank JSON state, flushed atomically."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.rank = _env_rank()
        self.size = None
        self.data = {"rank": self.rank, "size": None, "pid": os.getpid(), "done": False, "current": None,
                     "counts": {}, "tests": {}, "fatal": None, "started": time.time()}
        self.last_flush = 0.0

    def mpi_identity(self) -> None:
        mpi = sys.modules.get("mpi4py.MPI")
        try:
            if mpi is not None:
                self.rank = mpi.COMM_WORLD.Get_rank()
                self.size = mpi.COMM_WORLD.Get_size()
        except Exception:  # noqa: BLE001 - keep the environment's guess
            pass
        self.data.update(rank=self.rank, size=self.size)

    @property
    def path(self) -> str:
        return f"{self.prefix}.rank{self.rank}.json"

    def flush(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last_flush < 0.2:
            return
        self.last_flush = now
        counts: dict[str, int] = {}
        for t in self.data["tests"].values():
            counts[t["status"]] = counts.get(t["status"], 0) + 1
        self.data["counts"] = counts
        tmp = self.path + ".part"
        with open(tmp, "w") as f:
            json.dump(self.data, f, indent=1)
        os.replace(tmp, self.path)


REC: Recorder | None = None


class JsonResult(unittest.TextTestResult):
    """TextTestResult that also records each test's outcome in ``REC``."""

    def _put(self, test: unittest.TestCase, status: str, msg: str = "") -> None:
        assert REC is not None
        tid = test.id()
        t0 = getattr(self, "_t0", None)
        entry = REC.data["tests"].get(tid)
        # subTest failures: keep the first failing one per test id, never downgrade a failure to a pass
        if entry and entry["status"] in ("fail", "error") and status == "pass":
            return
        if entry and entry["status"] in ("fail", "error") and status in ("fail", "error"):
            entry.setdefault("more", 0)
            entry["more"] += 1
            return
        REC.data["tests"][tid] = {"status": status, "msg": msg,
                                  "s": round(time.monotonic() - t0, 4) if t0 else None}
        REC.flush()

    def startTest(self, test: unittest.TestCase) -> None:  # noqa: N802
        self._t0 = time.monotonic()
        assert REC is not None
        REC.data["current"] = test.id()
        REC.flush(force=True)  # never throttled: after a hang this names the test that never finished
        super().startTest(test)

    def stopTest(self, test: unittest.TestCase) -> None:  # noqa: N802
        super().stopTest(test)
        assert REC is not None
        REC.data["current"] = None
        REC.flush()

    def addSuccess(self, test: unittest.TestCase) -> None:  # noqa: N802
        super().addSuccess(test)
        self._put(test, "pass")  # _put never downgrades a failed subtest to a pass

    def addFailure(self, test, err) -> None:  # noqa: N802
        super().addFailure(test, err)
        self._put(test, "fail", _first_line(err))

    def addError(self, test, err) -> None:  # noqa: N802
        super().addError(test, err)
        self._put(test, "error", _first_line(err))

    def addSkip(self, test, reason) -> None:  # noqa: N802
        super().addSkip(test, reason)
        self._put(test, "skip", str(reason)[:200])

    def addExpectedFailure(self, test, err) -> None:  # noqa: N802
        super().addExpectedFailure(test, err)
        self._put(test, "xfail", _first_line(err))

    def addUnexpectedSuccess(self, test) -> None:  # noqa: N802
        super().addUnexpectedSuccess(test)
        self._put(test, "xpass")

    def addSubTest(self, test, subtest, err) -> None:  # noqa: N802
        super().addSubTest(test, subtest, err)
        if err is not None:
            status = "fail" if issubclass(err[0], test.failureException) else "error"
            self._put(test, status, f"{subtest._subDescription()}: {_first_line(err)}")


class JsonRunner(unittest.TextTestRunner):
    resultclass = JsonResult

    def __init__(self, *args, **kwargs) -> None:  # main.TestProgram instantiates the class itself
        kwargs.setdefault("stream", sys.stderr)
        super().__init__(*args, **kwargs)

    def run(self, test):  # type: ignore[no-untyped-def]
        assert REC is not None
        REC.mpi_identity()  # main.py's set-up has imported mpi4py.MPI by now
        REC.flush(force=True)
        return super().run(test)


def main() -> int:
    global REC
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--suite", required=True, help="absolute path of mpi4py's test/ folder")
    ap.add_argument("--out", required=True, help="absolute path prefix of the per-rank JSON files")
    ap.add_argument("-v", "--verbose", action="store_true")
    ap.add_argument("-x", dest="exclude", action="append", default=[],
                    help="passed on to main.py's -x (skip tests matching a substring)")
    ap.add_argument("modules", nargs="+")
    args = ap.parse_args()
    suite = os.path.abspath(args.suite)
    REC = Recorder(os.path.abspath(args.out))
    REC.data["modules"] = args.modules
    REC.flush(force=True)
    if suite not in sys.path:
        sys.path.insert(0, suite)
    sys.dont_write_bytecode = True  # as the suite's own main.py does: leave the cached suite untouched
    code = 0
    try:
        import main as suite_main  # the suite's test/main.py

        argv = [os.path.join(suite, "main.py"), "--no-builddir"] + (["-v"] if args.verbose else [])
        for pat in args.exclude:
            argv += ["-x", pat]
        argv += args.modules
        try:
            suite_main.TestProgram(module=None, argv=argv, testRunner=JsonRunner, exit=False)
        except SystemExit as exc:  # main.py's runTests always ends with sys.exit(not success)
            code = exc.code if isinstance(exc.code, int) else 1
    except BaseException as exc:  # noqa: BLE001 - an import-time failure is the result to report
        REC.data["fatal"] = _first_line(sys.exc_info())
        traceback.print_exc()
        code = 3
        if isinstance(exc, KeyboardInterrupt):
            raise
    finally:
        REC.mpi_identity()
        REC.data["done"] = REC.data["fatal"] is None
        REC.data["exit"] = code
        REC.data["ended"] = time.time()
        REC.flush(force=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
