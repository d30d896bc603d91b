"""Granules of a root worker run as an unprivileged user by default, and everything still works.

Tests run as root. The worker here runs with its default ``--granule-user`` (``auto``: ``nobody``
under root). ``nobody`` must be able to read the Python installation its granules import from; when
this interpreter lives where it cannot (pyenv under a 0700 /root, say), the fixture builds a venv
from the system Python once (a pip install from the configured index) and runs the cluster there.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import re
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cloudpickle
import numpy as np
import pytest

import granny
from granny.cluster import LocalCluster
from granny.worker.granule_user import GranuleUser, can_read

SRC = Path(granny.__file__).resolve().parent.parent
PYPROJECT = SRC.parent / "pyproject.toml"

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # granules need not import this module (or pytest)


def _nobody() -> GranuleUser:
    e = pwd.getpwnam("nobody")
    return GranuleUser(e.pw_uid, e.pw_gid, e.pw_name, e.pw_dir)


def _readable_python() -> str:
    """An interpreter with granny's dependencies that ``nobody`` can read and run."""
    paths = sysconfig.get_paths()
    if all(can_read(_nobody(), Path(paths[k])) for k in ("stdlib", "purelib", "platlib")):
        return sys.executable
    base = Path("/usr/bin/python3")
    if not base.exists():
        pytest.skip("this Python is unreadable by nobody and there is no /usr/bin/python3 to build one from")
    deps = re.findall(r'^\s*"([A-Za-z0-9_.\-\[\]]+==[^"]+)",', PYPROJECT.read_text().split("[project.optional")[0],
                      re.M)
    venv = Path("/tmp") / f"granny-test-python-{hashlib.sha256(' '.join(deps).encode()).hexdigest()[:12]}"
    python = venv / "bin" / "python"
    if not python.exists():  # built aside and renamed into place: concurrent runs never see half a venv
        build = Path(f"{venv}.{os.getpid()}")
        try:
            subprocess.run([str(base), "-m", "venv", "--clear", str(build)], check=True, capture_output=True,
                           timeout=120)
            subprocess.run([str(build / "bin" / "python"), "-m", "pip", "install", "-q", *deps], check=True,
                           capture_output=True, timeout=600)
            os.rename(build, venv)
        except OSError:
            if not python.exists():
                raise
        except subprocess.SubprocessError as exc:
            pytest.skip(f"could not build a Python that nobody can read: {exc}")
        finally:
            subprocess.run(["rm", "-rf", str(build)], check=False)
    return str(python)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    python = _readable_python()
    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(SRC), *([saved] if saved else [])])
    os.environ.pop("GRANNY_GRANULE_USER", None)  # the worker's own default, as a user gets it
    try:
        c = LocalCluster(workers=1, slots=2, data_dir=tmp_path_factory.mktemp("granule-user") / "data",
                         heartbeat_timeout=5.0, python=python)
    finally:
        os.environ["PYTHONPATH"] = saved or ""
        if saved is None:
            del os.environ["PYTHONPATH"]
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture
def client(cluster: LocalCluster) -> Iterator[granny.Client]:
    with granny.connect(cluster.address, cluster.token) as c:
        yield c


def who(secret_path: str = "") -> dict[str, Any]:
    import os

    out: dict[str, Any] = {"euid": os.geteuid(), "uid": os.getuid(), "egid": os.getegid(), "groups": os.getgroups(),
                           "home": os.environ.get("HOME"), "cwd_ok": os.access(os.getcwd(), os.R_OK)}
    if secret_path:
        try:
            with open(secret_path) as fh:
                out["secret"] = fh.read()
        except OSError as exc:
            out["secret"] = type(exc).__name__
    return out


def test_a_root_workers_granule_runs_as_nobody(cluster: LocalCluster, client: granny.Client) -> None:
    nobody = _nobody()
    me = client.submit(who, str(cluster.data_dir / "secret")).result(timeout=60)
    assert me["euid"] == me["uid"] == nobody.uid != 0
    assert me["egid"] == nobody.gid and me["groups"] == []
    assert me["secret"] == "PermissionError"  # the data directory is not the granule's
    assert me["cwd_ok"]


def chain() -> tuple[int, int]:
    import os

    import granny

    return os.geteuid(), int(granny.submit(os.geteuid).result(timeout=60))


def test_chaining_works_as_nobody(client: granny.Client) -> None:
    uid = _nobody().uid
    assert client.submit(chain).result(timeout=60) == (uid, uid)


def ranks(comm: Any) -> tuple[int, float, int]:
    import os

    import numpy as np

    buf = np.full(1 << 16, comm.Get_rank() + 1.0)  # shared memory between the two ranks of this host
    out = np.empty_like(buf)
    comm.Allreduce(buf, out)
    return comm.Get_rank(), float(out[0]), os.geteuid()


def test_a_two_rank_mpi_run_works_as_nobody(client: granny.Client) -> None:
    uid = _nobody().uid
    assert client.run_mpi(ranks, 2, timeout=60) == [(0, 3.0, uid), (1, 3.0, uid)]


def windows(comm: Any) -> tuple[float, float]:
    import numpy as np
    from mpi4py import MPI

    # the segment is opened through /proc/<pid>/fd and Create windows are read with CMA: both need
    # the ranks to be dumpable, which nobody's MPI granules are
    win = MPI.Win.Allocate(8, 8, comm=comm)
    mine = np.zeros(1)
    user = MPI.Win.Create(mine, 8, comm=comm)
    for w in (win, user):
        w.Lock(1 - comm.Get_rank())
        w.Put(np.array([comm.Get_rank() + 5.0]), 1 - comm.Get_rank(), 0)
        w.Unlock(1 - comm.Get_rank())
    comm.Barrier()
    got = float(np.frombuffer(win.tomemory(), dtype=np.float64)[0]), float(mine[0])
    win.Free()
    user.Free()
    return got


def test_windows_work_as_nobody(client: granny.Client) -> None:
    assert client.run_mpi(windows, 2, timeout=60) == [(6.0, 6.0), (5.0, 5.0)]


def square(i: int, a: Any) -> None:
    a[i] = i * i


def test_a_root_clients_parallel_region_works_with_nobodys_granules(client: granny.Client,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Members cannot map a board root created: they work on snapshots over the wire instead."""
    from granny.parallel import api

    monkeypatch.setattr(granny.client, "_shared", client)
    arr = granny.shared_array((16,), "int64", fill=0)
    try:
        granny.parallel_for(16, square, shared={"a": arr}, num_threads=2)
        np.testing.assert_array_equal(arr.array, np.arange(16) ** 2)
    finally:
        api.close_teams()


def test_a_root_worker_refuses_a_granule_user_who_cannot_read_its_python(tmp_path: Path) -> None:
    """Failing closed: never fall back to root granules because the default user cannot run them."""
    paths = sysconfig.get_paths()
    if all(can_read(_nobody(), Path(paths[k])) for k in ("stdlib", "purelib", "platlib")):
        pytest.skip("nobody can read this Python: the default user works here")
    secret = tmp_path / "secret"
    secret.write_text("s")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRANNY_")}
    proc = subprocess.run([sys.executable, "-m", "granny", "worker", "--planner", "127.0.0.1:9", "--secret-file",
                           str(secret)], capture_output=True, text=True, env=env, timeout=60)
    said = " ".join(proc.stderr.split())
    assert proc.returncode == 2, said
    assert "nobody" in said and "cannot read" in said and "--granule-user same" in said
