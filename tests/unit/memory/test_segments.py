"""Shared arrays: real processes see each other's writes, pickling is by reference, nothing leaks."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator

import numpy as np
import pytest

from granny.memory import (
    SharedArray,
    attach,
    create,
    list_segments,
    remove_segments_of,
    remove_segments_of_app,
)
from granny.memory.segments import SHM_DIR, parse_name


@pytest.fixture
def app_id() -> Iterator[str]:
    app = f"test-{uuid.uuid4().hex[:8]}"
    yield app
    remove_segments_of_app(app)


def _run(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], capture_output=True, text=True,
                          timeout=60, check=True)


def test_another_process_sees_writes_both_ways(app_id: str) -> None:
    a = create((1000,), "i8", fill=7, app_id=app_id)
    a[3] = 42
    out = _run("""
        import sys
        import numpy as np
        from granny.memory import attach
        b = attach(sys.argv[1], (1000,), "i8")
        print(int(b[3]), int(b.array.sum()))
        b[10:20] = -1  # seen by the parent with no copy back
        b.close()
    """, a.name)
    assert out.stdout.split() == ["42", str(7 * 999 + 42)]
    assert (a.array[10:20] == -1).all()
    a.close()
    a.unlink()
    assert not list_segments(app_id=app_id)


def test_forked_child_writes_through(app_id: str) -> None:
    a = create(4096, np.float64, app_id=app_id)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            a.array[:] = np.arange(4096)
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    assert np.array_equal(a.array, np.arange(4096.0))
    a.unlink()


def test_pickle_is_by_reference(app_id: str) -> None:
    a = create((64, 1024), "f4", fill=1.5, app_id=app_id)
    blob = pickle.dumps(a)
    assert len(blob) < 500  # name, shape and dtype: not 256 KiB of data
    b = pickle.loads(blob)
    assert isinstance(b, SharedArray) and b.name == a.name and b.shape == (64, 1024) and b.dtype == np.float32
    b[5, 5] = 9.0
    assert a[5, 5] == 9.0  # the same pages
    assert np.asarray(b) is b.array
    b.close()
    a.unlink()
    with pytest.raises(FileNotFoundError, match="is gone"):
        pickle.loads(blob)


def test_pickle_round_trip_in_another_process(app_id: str) -> None:
    a = create(100, "u2", app_id=app_id)
    out = _run("""
        import pickle, sys
        b = pickle.loads(bytes.fromhex(sys.argv[1]))
        b[:] = 3
        print(b.name)
    """, pickle.dumps(a).hex())
    assert out.stdout.strip() == a.name
    assert (a.array == 3).all()
    a.unlink()


def test_unlink_leaves_nothing_and_close_is_safe_with_live_views(app_id: str) -> None:
    arrays = [create(n, "u1", app_id=app_id) for n in (0, 1, 5000)]
    assert len(list_segments(app_id=app_id)) == 3
    view = arrays[2].array[10:]
    for a in arrays:
        a.close()
        a.unlink()
        a.unlink()  # twice is fine
    view[0] = 1  # still mapped: closing waited for the view
    assert not list_segments(app_id=app_id)
    assert not [n for n in os.listdir(SHM_DIR) if app_id in n]
    with pytest.raises(ValueError, match="closed"):
        _ = arrays[0].array


def test_segments_of_a_killed_creator_are_reaped(app_id: str) -> None:
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent("""
        import sys, time
        from granny.memory import create
        arrays = [create(1 << 16, "f8", fill=1.0, app_id=sys.argv[1]) for _ in range(3)]
        print("ready", flush=True)
        time.sleep(60)
    """), app_id], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        names = list_segments(app_id=app_id)
        assert len(names) == 3 and all(parse_name(n) == (app_id, proc.pid) for n in names)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    assert list_segments(pid=proc.pid) == names  # a SIGKILL skips every finally: the files stay
    assert remove_segments_of(proc.pid) == 3
    assert not list_segments(app_id=app_id)


def test_remove_segments_of_app_only_touches_that_app(app_id: str) -> None:
    other = create(10, app_id=app_id + "-x")  # an app id that extends this one's
    mine = create(10, app_id=app_id)
    assert remove_segments_of_app(app_id) == 1
    assert list_segments(app_id=app_id + "-x") == [other.name]
    remove_segments_of_app(app_id + "-x")
    mine.close()
    other.close()


def test_bad_arguments(app_id: str) -> None:
    with pytest.raises(TypeError, match="object"):
        create(3, object, app_id=app_id)
    with pytest.raises(ValueError, match="app id"):
        create(3, app_id="../etc")
    with pytest.raises(ValueError, match="not a granny"):
        attach("../../etc/passwd", 3, "u1")
    a = create(10, "u1", app_id=app_id)
    with pytest.raises(ValueError, match="does not fit"):
        attach(a.name, 11, "u1")
    b = attach(a.name, 4, "u1", offset=6)  # a sub-range of the segment
    b[0] = 5
    assert a[6] == 5 and pickle.loads(pickle.dumps(b)).offset == 6
    with pytest.raises(ValueError):
        create(-1, app_id=app_id)
    a.unlink()
