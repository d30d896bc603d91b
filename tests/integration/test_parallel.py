"""Parallel regions and shared arrays on a real cluster (planner + one worker with 2 slots).

A team of 2 threads is the caller (thread 0) plus one leased granule (thread 1), so it holds one of
the worker's two slots. Every test makes granny's default client the fixture's client, and closes the
process's cached teams afterwards. ``parallel`` is imported from ``granny.parallel``: see
test_granny_parallel_stays_the_context_manager for why ``granny.parallel(...)`` is not used throughout.
"""

from __future__ import annotations

import glob
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest

import granny
from granny.cluster import LocalCluster
from granny.parallel import close_teams, parallel
from granny.parallel import team as get_team
from granny.parallel.region import identity
from granny.parallel.team import TeamError

from ..polling import wait_for

N = 2  # threads per team: the caller plus one granule


@pytest.fixture
def gclient(client: granny.Client) -> Iterator[granny.Client]:
    """The fixture's client as granny's default one, so parallel regions lease from that cluster."""
    granny.client._shared = client
    try:
        yield client
    finally:
        close_teams()
        granny.client._shared = None


def shm_files() -> set[str]:
    return set(glob.glob("/dev/shm/granny-*"))


def owner_pid(path: str) -> int:
    return int(path.rsplit("-p", 1)[1])


def tree_pids(cluster: LocalCluster) -> set[int]:
    """The pids of the cluster's processes and all their descendants (granules included)."""
    pids = {os.getpid()}
    for proc in cluster.procs:
        try:
            p = psutil.Process(proc.pid)
            pids.add(p.pid)
            pids.update(c.pid for c in p.children(recursive=True))
        except psutil.NoSuchProcess:
            pass
    return pids


# ------------------------------------------------------------------------------------------ parallel_for
def set_square(i: int, a: Any) -> None:
    a[i] = i * i


@pytest.mark.parametrize("schedule,chunk", [("static", None), ("static", 3), ("dynamic", None), ("dynamic", 2)])
def test_parallel_for_matches_serial(gclient: granny.Client, schedule: str, chunk: int | None) -> None:
    n = 101
    a = granny.shared_array((n,), "int64", fill=-1)
    count = granny.shared_array((n,), "int64")

    def body(i: int, a: Any, count: Any) -> None:
        a[i] = i * i
        count[i] += 1

    granny.parallel_for(n, body, shared={"a": a, "count": count}, schedule=schedule, chunk=chunk,
                        num_threads=N)
    assert np.array_equal(a.array, np.arange(n) ** 2)
    assert np.array_equal(count.array, np.ones(n, dtype=np.int64)), "every index runs exactly once"


def test_static_schedule_splits_the_range_between_caller_and_granule(gclient: granny.Client) -> None:
    n = 10
    owner = granny.shared_array((n,), "int64")

    def body(i: int, owner: Any) -> None:
        owner[i] = os.getpid()

    granny.parallel_for(n, body, shared={"owner": owner}, num_threads=N)
    # OpenMP's static schedule: one contiguous block per thread, thread 0 (the caller) first.
    assert (owner.array[:5] == os.getpid()).all()
    member = set(owner.array[5:].tolist())
    assert len(member) == 1 and os.getpid() not in member and 0 not in member


@pytest.mark.parametrize("schedule,chunk", [("static", None), ("static", 3), ("dynamic", 4), ("dynamic", None)])
def test_chunked_body_receives_ranges(gclient: granny.Client, schedule: str, chunk: int | None) -> None:
    space = range(5, 200, 3)
    a = granny.shared_array((200,), "float64")
    count = granny.shared_array((200,), "int64")
    sizes = granny.shared_array((len(space),), "int64")  # sizes[k]: length of the chunk starting at space[k]

    def body(r: range, a: Any, count: Any, sizes: Any) -> None:
        assert isinstance(r, range) and r.step == 3
        idx = np.arange(r.start, r.stop, r.step)
        a[idx] = idx * 0.5
        count[idx] += 1
        sizes[(r.start - 5) // 3] = len(r)

    granny.parallel_for(space, body, shared={"a": a, "count": count, "sizes": sizes}, schedule=schedule,
                        chunk=chunk, chunked=True, num_threads=N)
    want = np.zeros(200)
    want[list(space)] = np.array(space) * 0.5
    assert np.array_equal(a.array, want)
    want_count = np.zeros(200, dtype=np.int64)
    want_count[list(space)] = 1
    assert np.array_equal(count.array, want_count)
    got = sizes.array[sizes.array > 0]
    assert got.sum() == len(space)
    if chunk:
        assert got.max() <= chunk
    if schedule == "static" and chunk is None:
        assert sorted(got.tolist()) == [32, 33]  # one contiguous block per thread


def test_range_with_start_and_step(gclient: granny.Client) -> None:
    a = granny.shared_array((60,), "int32")
    space = range(3, 57, 4)
    granny.parallel_for(space, set_square, shared={"a": a}, num_threads=N)
    want = np.zeros(60, dtype=np.int32)
    want[list(space)] = np.array(space) ** 2
    assert np.array_equal(a.array, want)
    a.array[:] = 0
    granny.parallel_for(range(50, 10, -7), set_square, shared={"a": a}, schedule="dynamic", num_threads=N)
    want[:] = 0
    want[list(range(50, 10, -7))] = np.array(range(50, 10, -7)) ** 2
    assert np.array_equal(a.array, want)


def test_empty_range_is_a_no_op(gclient: granny.Client) -> None:
    a = granny.shared_array((4,), "int64")
    granny.parallel_for(0, set_square, shared={"a": a}, num_threads=N)
    granny.parallel_for(range(3, 3), set_square, shared={"a": a}, schedule="dynamic", num_threads=N)
    assert not a.array.any()


# ------------------------------------------------------------------------------------------ reductions
UFUNC: dict[str, Callable[[Any, Any], Any]] = {
    "sum": np.add, "product": np.multiply, "max": np.maximum, "min": np.minimum, "xor": np.bitwise_xor,
    "band": np.bitwise_and, "bor": np.bitwise_or, "land": np.logical_and, "lor": np.logical_or,
}
INT_OPS = ["sum", "product", "max", "min", "xor", "band", "bor", "land", "lor"]
FLOAT_OPS = ["sum", "product", "max", "min", "land", "lor"]


def reduction_values(op: str, dtype: str, n: int) -> np.ndarray:
    """Per-index contributions (n x 3) that keep products finite and make every op non-trivial."""
    rng = np.random.default_rng(zlib.crc32(f"{op}/{dtype}".encode()))
    if op == "product":
        vals = rng.choice([1, 1, 1, -1, 2], size=(n, 3))
    elif op in ("land", "lor"):
        vals = (rng.random((n, 3)) < (0.9 if op == "land" else 0.05)).astype(int)
        vals[:, 0] = 1 if op == "land" else 0  # column 0 stays at the identity, column 1-2 may flip
    elif op in ("xor", "band", "bor"):
        vals = rng.integers(0, 1 << 20, size=(n, 3)) | (0xF0 if op == "band" else 0)
    else:
        vals = rng.integers(-1000, 1000, size=(n, 3))
    return vals.astype(dtype)


@pytest.mark.parametrize("dtype,op", [("int64", op) for op in INT_OPS] + [("float64", op) for op in FLOAT_OPS])
def test_reduction_matches_serial(gclient: granny.Client, dtype: str, op: str) -> None:
    n = 64
    vals = reduction_values(op, dtype, n)
    start = {"sum": 5, "product": 3, "max": -7, "min": 7, "xor": 0b1011, "band": -1, "bor": 0b100,
             "land": 1, "lor": 0}[op]
    acc = granny.shared_array((3,), dtype, fill=start)
    ufunc = UFUNC[op]

    def body(i: int, acc: Any) -> None:
        acc[...] = ufunc(acc, vals[i])

    granny.parallel_for(n, body, shared={"acc": acc}, reduce={"acc": op}, num_threads=N)
    want = np.full(3, start, dtype=dtype)
    for i in range(n):
        want[...] = ufunc(want, vals[i])
    if dtype.startswith("float"):
        np.testing.assert_allclose(acc.array, want, rtol=1e-12)
    else:
        assert np.array_equal(acc.array, want), (acc.array, want)


def test_reduction_into_plain_numpy_array_and_dynamic_schedule(gclient: granny.Client) -> None:
    total = np.array([10.0])  # a reduction target may be a plain array: it is only combined at the join
    hist = granny.shared_array((8,), "int64")

    def body(i: int, total: Any, hist: Any) -> None:
        total[0] += i
        hist[i % 8] += 1

    granny.parallel_for(1000, body, shared={"total": total, "hist": hist}, reduce={"total": "sum", "hist": "sum"},
                        schedule="dynamic", num_threads=N)
    assert total[0] == 10.0 + sum(range(1000))
    assert np.array_equal(hist.array, np.full(8, 125))


@pytest.mark.parametrize("op", INT_OPS)
def test_reduction_variable_starts_at_identity_in_every_thread(gclient: granny.Client, op: str) -> None:
    acc = granny.shared_array((2,), "int32", fill=42)
    seen = granny.shared_array((N, 2), "int32", fill=99)

    def body(team: Any, acc: Any, seen: Any) -> None:
        seen[team.thread_num] = acc

    with parallel(num_threads=N) as team:
        team.run(body, shared={"acc": acc, "seen": seen}, reduce={"acc": op})
    ident = identity(op, np.dtype("int32"))
    assert np.array_equal(seen.array, np.full((N, 2), ident, dtype="int32")), seen.array
    # The caller's value is kept and combined once with each thread's untouched identity: unchanged,
    # except for the logical ops, which turn any non-zero value into 1.
    assert acc.array.tolist() == ([1, 1] if op in ("land", "lor") else [42, 42])


def test_reductions_repeat_across_regions(gclient: granny.Client) -> None:
    acc = granny.shared_array((1,), "int64")

    def body(i: int, acc: Any) -> None:
        acc[0] += i

    for k in range(1, 21):
        granny.parallel_for(k, body, shared={"acc": acc}, reduce={"acc": "sum"}, num_threads=N)
    assert acc[0] == sum(k * (k - 1) // 2 for k in range(1, 21))


# ------------------------------------------------------------------------------------------ team.run
def test_thread_num_num_threads_master(gclient: granny.Client) -> None:
    info = granny.shared_array((N, 4), "int64", fill=-1)

    def body(team: Any, info: Any) -> None:
        info[team.thread_num] = [team.thread_num, team.num_threads, int(team.master()), os.getpid()]

    with parallel(num_threads=N) as team:
        assert team.num_threads == N and team.thread_num == 0
        team.run(body, shared={"info": info})
    got = info.array
    assert got[:, 0].tolist() == [0, 1]
    assert got[:, 1].tolist() == [N, N]
    assert got[:, 2].tolist() == [1, 0]
    assert got[0, 3] == os.getpid() and got[1, 3] not in (os.getpid(), -1)


def test_barrier_orders_writes_and_reads(gclient: granny.Client) -> None:
    rounds = 50
    x = granny.shared_array((N,), "int64")
    y = granny.shared_array((rounds, N), "int64", fill=-1)

    def body(team: Any, x: Any, y: Any) -> None:
        t = team.thread_num
        for k in range(rounds):
            x[t] = 1000 * k + t
            team.barrier()  # every thread has written round k
            y[k, t] = x[1 - t]
            team.barrier()  # every thread has read before anyone writes round k + 1

    with parallel(num_threads=N) as team:
        team.run(body, shared={"x": x, "y": y})
    want = np.array([[1000 * k + 1, 1000 * k] for k in range(rounds)])
    assert np.array_equal(y.array, want)


def test_critical_serialises_read_modify_write(gclient: granny.Client) -> None:
    per_thread = 2000
    counter = granny.shared_array((1,), "int64")

    def body(team: Any, counter: Any) -> None:
        for _ in range(per_thread):
            with team.critical():
                v = int(counter[0])
                counter[0] = v + 1

    with parallel(num_threads=N) as team:
        team.run(body, shared={"counter": counter})
    assert counter[0] == per_thread * N


def test_single_is_true_in_exactly_one_thread(gclient: granny.Client) -> None:
    k = 5
    hits = granny.shared_array((k, N), "int64")

    def body(team: Any, hits: Any) -> None:
        for j in range(k):
            hits[j, team.thread_num] = int(team.single())
        team.barrier()

    with parallel(num_threads=N) as team:
        team.run(body, shared={"hits": hits})
    assert hits.array.sum(axis=1).tolist() == [1] * k


def test_single_in_every_region_of_a_team(gclient: granny.Client) -> None:
    """Each region's first ``single()`` must elect a thread, not only the team's first region's."""
    regions = 4
    hits = granny.shared_array((regions, N), "int64")
    region = granny.shared_array((1,), "int64")

    def body(team: Any, hits: Any, region: Any) -> None:
        r = int(region[0])
        hits[r, team.thread_num] = int(team.single())

    with parallel(num_threads=N) as team:
        for r in range(regions):
            region[0] = r
            team.run(body, shared={"hits": hits, "region": region})
    assert hits.array.sum(axis=1).tolist() == [1] * regions, hits.array


def test_team_parallel_for(gclient: granny.Client) -> None:
    a = granny.shared_array((30,), "int64")
    with parallel(num_threads=N) as team:
        team.parallel_for(30, set_square, shared={"a": a})
        team.parallel_for(range(0, 30, 2), set_square, shared={"a": a}, schedule="dynamic")
    assert np.array_equal(a.array, np.arange(30) ** 2)


# ------------------------------------------------------------------------------------------ team reuse
def test_many_regions_reuse_one_lease(gclient: granny.Client) -> None:
    a = granny.shared_array((N,), "int64")

    def body(i: int, a: Any) -> None:
        a[i] += 1

    granny.parallel_for(N, body, shared={"a": a}, num_threads=N)
    t = get_team(N)
    lease = t.leases[0][0]
    assert lease is not None
    host = gclient.hosts()[0]
    assert host.used == N - 1, "the team's granule holds one slot between regions"
    for _ in range(199):
        granny.parallel_for(N, body, shared={"a": a}, num_threads=N)
    assert a.array.tolist() == [200] * N
    assert get_team(N) is t and t.leases[0][0] is lease and not lease.done()
    assert gclient.hosts()[0].used == N - 1
    close_teams()
    assert lease.result(timeout=30) == [200], "the member ran every region, then exited"
    wait_for(lambda: gclient.hosts()[0].used == 0, what="the lease's slot to be freed")


# ------------------------------------------------------------------------------------------ failures
def raise_on_seven(i: int, a: Any) -> None:
    if i == 7:
        raise KeyError(f"boom at {i}")
    a[i] = 1


def test_member_exception_fails_region_with_remote_traceback(gclient: granny.Client) -> None:
    a = granny.shared_array((10,), "int64")
    with pytest.raises(KeyError, match="boom at 7") as info:
        granny.parallel_for(10, raise_on_seven, shared={"a": a}, num_threads=N)  # 7 is thread 1's
    notes = "\n".join(getattr(info.value, "__notes__", []))
    assert "thread 1 of 2" in notes
    assert "Remote traceback" in notes and "raise_on_seven" in notes and "KeyError" in notes
    t = get_team(N)
    assert not t._closed
    granny.parallel_for(10, set_square, shared={"a": a}, num_threads=N)
    assert np.array_equal(a.array, np.arange(10) ** 2)
    assert get_team(N) is t, "a raising body does not cost the team"


def test_master_exception_fails_region_and_team_goes_on(gclient: granny.Client) -> None:
    a = granny.shared_array((10,), "int64")

    def body(i: int, a: Any) -> None:
        if i == 2:
            raise ZeroDivisionError("in the caller's share")
        a[i] = 1

    with pytest.raises(ZeroDivisionError):
        granny.parallel_for(10, body, shared={"a": a}, num_threads=N)
    assert a.array[5:].tolist() == [1] * 5, "thread 1 finished its share before the join raised"
    granny.parallel_for(10, set_square, shared={"a": a}, num_threads=N)
    assert np.array_equal(a.array, np.arange(10) ** 2)


def raise_everywhere(i: int) -> None:
    raise ValueError(f"old failure at {i}")


def noop(i: int) -> None:
    pass


def test_failed_region_does_not_poison_the_next_one(gclient: granny.Client) -> None:
    """Every thread raises (the caller too): the region reports one failure, and the errors the other
    threads left on the board are not raised again by the regions after it (issue 10, defect 8)."""
    with pytest.raises(ValueError, match="old failure"):
        granny.parallel_for(4, raise_everywhere, num_threads=N)
    granny.parallel_for(2, noop, num_threads=N)
    granny.parallel_for(4, noop, num_threads=N)
    with pytest.raises(KeyError, match="boom at 7"):  # a new failure is still reported, by its region
        granny.parallel_for(10, raise_on_seven, shared={"a": granny.shared_array((10,), "int64")}, num_threads=N)
    granny.parallel_for(4, noop, num_threads=N)


def exit_in_member(i: int, a: Any) -> None:
    if i >= 5:
        os._exit(3)
    a[i] = 1


def test_killed_member_fails_region_and_next_region_gets_new_team(gclient: granny.Client) -> None:
    a = granny.shared_array((10,), "int64")
    granny.parallel_for(10, set_square, shared={"a": a}, num_threads=N)
    old = get_team(N)
    with pytest.raises(TeamError, match="stopped during the parallel region") as info:
        granny.parallel_for(10, exit_in_member, shared={"a": a}, num_threads=N)
    assert "code 3" in str(info.value)
    granny.parallel_for(10, set_square, shared={"a": a}, num_threads=N)
    assert np.array_equal(a.array, np.arange(10) ** 2)
    new = get_team(N)
    assert new is not old and old._closed and not old.leases  # the broken team was released


def test_killed_member_team_leaves_no_board_behind(gclient: granny.Client) -> None:
    """A team that lost a member is replaced; closing the teams must still unlink the dead one's board."""
    before = shm_files()
    a = granny.shared_array((10,), "int64")
    with pytest.raises(TeamError):
        granny.parallel_for(10, exit_in_member, shared={"a": a}, num_threads=N)
    granny.parallel_for(10, set_square, shared={"a": a}, num_threads=N)
    close_teams()
    a.unlink()
    left = {p for p in shm_files() - before if owner_pid(p) == os.getpid()}
    assert not left, f"left behind: {sorted(left)}"


def test_plain_numpy_array_in_shared_is_rejected(gclient: granny.Client) -> None:
    with pytest.raises(TypeError, match=r"granny\.shared_array"):
        granny.parallel_for(4, set_square, shared={"a": np.zeros(4)}, num_threads=N)
    with pytest.raises(TypeError, match=r"granny\.shared_array"), parallel(num_threads=N) as team:
        team.run(lambda team, a: None, shared={"a": np.zeros(4)})


def test_bad_reductions_are_rejected(gclient: granny.Client) -> None:
    acc = granny.shared_array((1,), "int64")
    with pytest.raises(ValueError, match="unknown op"):
        granny.parallel_for(4, set_square, shared={"acc": acc}, reduce={"acc": "average"}, num_threads=N)
    with pytest.raises(ValueError, match="not in shared"):
        granny.parallel_for(4, set_square, shared={"a": acc}, reduce={"acc": "sum"}, num_threads=N)
    with pytest.raises(ValueError, match="schedule"):
        granny.parallel_for(4, set_square, shared={"a": acc}, schedule="guided", num_threads=N)
    # None of these published a region: the team still works.
    a = granny.shared_array((4,), "int64")
    granny.parallel_for(4, set_square, shared={"a": a}, num_threads=N)
    assert a.array.tolist() == [0, 1, 4, 9]


# ------------------------------------------------------------------------------------------ shared arrays
def fill_and_sum(arr: Any, value: float) -> float:
    arr[...] = value
    return float(arr.array.sum())


def test_shared_array_passed_to_submit_by_reference(gclient: granny.Client) -> None:
    arr = granny.shared_array((1 << 20,), "float64")  # 8 MiB
    assert len(pickle.dumps(arr)) < 1000, "pickled by reference, without its data"
    assert gclient.submit(fill_and_sum, arr, 2.5).result(timeout=60) == 2.5 * (1 << 20)
    assert (arr.array == 2.5).all(), "the granule wrote the caller's pages"
    arr.array[:] = 1.0
    assert gclient.submit(fill_and_sum, arr, 3.0).result(timeout=60) == 3.0 * (1 << 20)
    assert (arr.array == 3.0).all()


def test_no_segments_left_after_unlink_and_close(gclient: granny.Client, cluster: LocalCluster) -> None:
    before = shm_files()
    a = granny.shared_array((1000,), "float64")
    acc = granny.shared_array((4,), "int64")

    def body(i: int, a: Any, acc: Any) -> None:
        a[i] = i
        acc[i % 4] += 1

    granny.parallel_for(1000, body, shared={"a": a, "acc": acc}, reduce={"acc": "sum"}, num_threads=N)
    assert gclient.submit(fill_and_sum, a, 1.0).result(timeout=60) == 1000.0
    ours = tree_pids(cluster)
    created = {p for p in shm_files() - before if owner_pid(p) in ours}
    assert {a.path, acc.path} <= created
    assert any("granny-team-" in p for p in created), "the team's board"
    a.unlink()
    acc.unlink()
    close_teams()
    left = {p for p in created if os.path.exists(p)}
    assert not left, f"left behind: {sorted(left)}"


def make_segment_and_die(note: str) -> None:
    """In a granule: leave a shared array behind, then die the way nothing can clean up after."""
    a = granny.shared_array((1000,), "int64", fill=7)
    Path(note).write_text(a.path)
    os.kill(os.getpid(), signal.SIGKILL)


def test_reaper_removes_what_its_killed_granule_left(gclient: granny.Client, tmp_path: Path) -> None:
    """A granule's segments carry its worker's tag, and the worker's sweep removes what a killed
    granule left behind. That the sweep leaves every other stale segment alone (another worker's, a
    client's, a look-alike) is tests/unit/worker/test_reaper.py's: on this shared machine other clusters'
    workers sweep /dev/shm too, so a foreign file's fate here would not say what *this* worker did."""
    note = tmp_path / "segment"
    with pytest.raises(granny.GrannyError):
        gclient.submit(make_segment_and_die, str(note)).result(60)
    mine = note.read_text()
    assert "-w" in mine.rsplit("-p", 1)[0], f"{mine} does not carry its worker's tag"
    # Nothing of the killed granule ran (no atexit): only the worker's reaper can remove it.
    wait_for(lambda: not os.path.exists(mine), timeout=30, what=f"the reaper to remove {mine}")


def test_embedded_cluster_process_exits_promptly_without_close_teams(tmp_path: Path) -> None:
    """A script that ends after a region, without close_teams(), must not hang at exit.

    The deadline is far above a normal exit (under a second) and well under the 30 s that
    ``Team.close`` waits for a lease whose cluster is already gone."""
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent("""
        import granny
        a = granny.shared_array((10,), "float64")
        granny.parallel_for(10, lambda i, a: a.__setitem__(i, i), shared={"a": a}, num_threads=2)
        print("sum", a.array.sum(), flush=True)
    """))
    env = {k: v for k, v in os.environ.items() if k not in ("GRANNY_ADDRESS", "GRANNY_TOKEN")}
    env.update(GRANNY_SLOTS="2", GRANNY_DATA_DIR=str(tmp_path / "data"))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env=env, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"the script did not exit within 15 s after its last region: {out.decode()[-2000:]}")
    assert proc.returncode == 0, out.decode()
    assert b"sum 45.0" in out


def test_granny_parallel_stays_the_context_manager(gclient: granny.Client) -> None:
    """``with granny.parallel(num_threads=...)`` is the documented API; it must keep working once the
    ``granny.parallel`` subpackage has been imported (by granny itself on the first ``parallel_for``)."""
    a = granny.shared_array((4,), "int64")
    granny.parallel_for(4, set_square, shared={"a": a}, num_threads=N)

    def body(team: Any, a: Any) -> None:
        a[team.thread_num] = 10 + team.thread_num

    with granny.parallel(num_threads=N) as team:
        team.run(body, shared={"a": a})
    assert a.array.tolist() == [10, 11, 4, 9]


# --- elastic teams ----------------------------------------------------------------------------------
def add_one_rows(r: range, a: np.ndarray) -> None:
    a[r.start:r.stop] += 1


def test_elastic_team_grows_to_free_slots_and_gives_them_back(gclient: granny.Client) -> None:
    a = granny.shared_array((1000,), "int64")
    shared = {"a": a}
    took_part: list[int] = []  # threads in each fork's region
    leased: list[int] = []  # threads leased at each fork (joined or not)

    def fork() -> int:
        granny.parallel_for(1000, add_one_rows, shared=shared, chunked=True, elastic=True)
        t = get_team(1, elastic=True)
        took_part.append(t.board.nthreads)
        leased.append(t.size)
        return t.num_threads

    # The team starts as the caller alone and grows, at later forks, to the cluster's 2 free slots.
    wait_for(lambda: fork() == 3, timeout=30, what="the elastic team to grow to 3 threads")
    # Someone else needs a slot: the planner asks the lease for it, and the team gives it back at a
    # fork. That fork's region runs without the thread: the call cannot run before it, so some fork
    # between the submission and the call's end ran on fewer threads (whatever the timing).
    call = gclient.submit(pow, 2, 10)
    since = len(took_part)
    wait_for(lambda: fork() > 0 and call.done(), timeout=30, what="the team to give a slot back")
    assert call.result() == 1024
    assert min(took_part[since:]) < 3, took_part
    # The slot is free again: the team takes it back, under the same thread number.
    wait_for(lambda: fork() == 3, timeout=30, what="the team to grow again")
    assert max(leased) <= 3, leased  # never more threads leased than the 2 slots and the caller
    assert a.array.min() == a.array.max() == len(took_part)  # every fork covered every index exactly once
    a.unlink()


def sum_between_barriers(team: Any, x: Any, y: Any) -> None:
    """Each round: every thread writes its cell, then (after a barrier) reads the sum of all of them."""
    t, n = team.thread_num, team.num_threads
    for k in range(y.shape[0]):
        x[t] = 1000 * k + t
        team.barrier()  # every thread has written round k
        y[k, t] = int(x[:n].sum())
        team.barrier()  # every thread has read before anyone writes round k + 1


def test_barriers_complete_in_an_elastic_team_that_has_grown(gclient: granny.Client) -> None:
    # The team runs regions with barriers alone first (the caller's barrier count moves on), then grows
    # into the cluster's free slots: the threads that join late must meet the caller at its barriers.
    rounds = 5
    x = granny.shared_array((3,), "int64")
    sizes: list[int] = []

    def fork() -> int:
        t = get_team(1, elastic=True)
        y = granny.shared_array((rounds, 3), "int64", fill=-1)
        t.fork("run", sum_between_barriers, {"x": x, "y": y}, {}, t.size)
        n = t.board.nthreads
        sizes.append(n)
        want = [[sum(1000 * k + s for s in range(n))] * n + [-1] * (3 - n) for k in range(rounds)]
        assert y.array.tolist() == want, (n, y.array.tolist())
        y.unlink()
        return n

    wait_for(lambda: fork() == 3, timeout=60, what="a region with barriers on the grown team's 3 threads")
    assert sizes[0] == 1, sizes  # the team did grow while running barrier regions
    for _ in range(3):  # and keeps meeting at barriers, region after region
        assert fork() == 3
    x.unlink()


def square_or_die(i: int, a: np.ndarray, tot: np.ndarray) -> None:
    if os.environ.get("GRANNY_INDEX") is not None and i == 9:  # dies only inside a team member granule
        os._exit(4)
    a[i] = i * i
    tot[0] += i


def test_retry_reruns_the_chunks_of_a_member_that_died(gclient: granny.Client) -> None:
    a = granny.shared_array((10,), "int64")
    tot = np.zeros(1, dtype=np.int64)
    granny.parallel_for(10, square_or_die, shared={"a": a, "tot": tot}, reduce={"tot": "sum"}, num_threads=N,
                        retry=True)
    assert a.array.tolist() == [i * i for i in range(10)]
    assert tot[0] == sum(range(10))  # the lost thread's partial was recomputed, not counted twice
    with pytest.raises(ValueError, match="schedule='static'"):
        granny.parallel_for(10, square_or_die, shared={"a": a, "tot": tot}, reduce={"tot": "sum"},
                            schedule="dynamic", retry=True)
    a.unlink()


# ------------------------------------------------------------------------------------------ inside a task
def _region_in_a_task(n: int) -> int:
    """A function whose call runs a region: its granule leases a team for the call's app."""
    from granny.parallel import parallel_for

    seen = granny.shared_array((n,), "int64", fill=0)
    parallel_for(n, set_square, shared={"a": seen}, num_threads=2)
    return int(seen.array.sum())


def test_a_calls_team_ends_with_the_call(client: granny.Client) -> None:
    """The granule runs other apps' calls next, so a call's team must not outlive it: the worker's task-end
    hook (worker/task_end.py, registered by parallel/api.py) releases the team's leased granule."""
    assert client.submit(_region_in_a_task, 16).result(timeout=120) == sum(i * i for i in range(16))
    wait_for(lambda: all(h.used == 0 for h in client.hosts()), timeout=30,
             what="the call's team to give its leased granule back")
