"""Lists which ``mpi4py.MPI`` names mpi4py's test suite touches, and when: for an implementer.

Run with the REAL mpi4py (the peer venv), under mpirun, e.g.::

    mpirun -n 2 ~/.cache/granny/peers-mpi/bin/python scripts/_conformance_trace.py \\
        --suite ~/.cache/granny/mpi4py-4.1.2/test --out /tmp/trace.json test_p2p_obj test_comm ...

``mpi4py.MPI`` is replaced (in ``sys.modules`` and as ``mpi4py.MPI``) by a proxy module that records
every module-level name read through it, per phase:

* ``helpers``: importing the suite's ``mpitestutil``, ``mpiunittest``, ``arrayimpl`` (``dlpackimpl``)
* ``main``:    what the suite's ``main.py`` touches itself (its set-up and its banner)
* ``import:MODULE`` / ``run:MODULE``: importing / running one test module

and, for each module, the methods/properties of ``mpi4py.MPI`` classes that its source names
(static: ``.name`` in the source that is defined on an MPI class, e.g. ``Comm.Send``; a superset,
since a name defined on several classes is listed for each).
Rank 0 writes the JSON to ``--out`` and prints a summary.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import types
import unittest


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--suite", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("modules", nargs="+")
    args = ap.parse_args()
    suite = os.path.abspath(args.suite)
    sys.path.insert(0, suite)
    sys.dont_write_bytecode = True

    import mpi4py
    from mpi4py import MPI as real

    phase = ["helpers"]
    seen: dict[str, set[str]] = {}
    calls: dict[str, set[str]] = {}

    class Proxy(types.ModuleType):
        def __getattr__(self, name: str):  # only called for names not in the proxy's own __dict__
            seen.setdefault(phase[0], set()).add(name)
            return getattr(real, name)

    proxy = Proxy("mpi4py.MPI")
    proxy.__file__ = real.__file__
    sys.modules["mpi4py.MPI"] = proxy
    mpi4py.MPI = proxy

    for mod in ("mpitestutil", "mpiunittest", "arrayimpl", "dlpackimpl"):
        __import__(mod)
    phase[0] = "main"
    import main as suite_main

    suite_main.getprocessorinfo()
    suite_main.getlibraryinfo()
    suite_main.getpackageinfo("mpi4py")
    suite_main.setup_modules(argparse.Namespace(cupy=False, numba=False, numpy=True, array=True, threads=None,
                                                thread_level=None))

    def static_api(mod: str) -> list[str]:
        """Names used as ``.name`` in the module's source that are methods/properties of an MPI class."""
        import re

        with open(os.path.join(suite, mod + ".py")) as fh:
            src = fh.read()
        used = set(re.findall(r"\.([A-Za-z_]\w*)", src))
        found = set()
        for cname in dir(real):
            cls = getattr(real, cname)
            if isinstance(cls, type) and cls.__module__ == "mpi4py.MPI" and not issubclass(cls, BaseException):
                for name in used & set(vars(cls)):
                    if not name.startswith("__"):
                        found.add(f"{cname}.{name}")
        return sorted(found)

    results = {}
    for mod in args.modules:
        phase[0] = f"import:{mod}"
        m = __import__(mod)
        phase[0] = f"run:{mod}"
        tests = unittest.defaultTestLoader.loadTestsFromModule(m)
        with open(os.devnull, "w") as null:
            r = unittest.TextTestRunner(stream=null, verbosity=0).run(tests)
        calls[f"run:{mod}"] = set(static_api(mod))
        results[mod] = {"run": r.testsRun, "fail": len(r.failures), "error": len(r.errors), "skip": len(r.skipped)}

    if real.COMM_WORLD.Get_rank() == 0:
        out = {"names": {k: sorted(v) for k, v in seen.items()}, "calls": {k: sorted(v) for k, v in calls.items()},
               "results": results}
        with open(args.out, "w") as f:
            json.dump(out, f, indent=1)
        for k, v in out["names"].items():
            print(f"{k}: {' '.join(v)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
