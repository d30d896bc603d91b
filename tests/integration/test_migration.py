"""Migration points on real processes: two worker hosts on this machine, MPI worlds that start split and
consolidate at their migration points; the output equals a run that did not move."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import granny
from granny.cluster import LocalCluster

from ..polling import wait_for

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "mpi" / "migrate.py"
HOSTS = ("local1", "local2")


@pytest.fixture(scope="module")
def two_hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    c = LocalCluster(workers=2, slots=4, data_dir=tmp_path_factory.mktemp("migration") / "data", granule_user="same")
    try:
        with granny.connect(c.address, c.token) as probe:
            wait_for(lambda: sorted(h.host_id for h in probe.hosts() if h.idle_granules == 4) == list(HOSTS),
                     timeout=60, what="two hosts with 4 warm granules each")
        yield c
    finally:
        c.stop()


@pytest.fixture
def client(two_hosts: LocalCluster) -> Iterator[granny.Client]:
    with granny.connect(two_hosts.address, two_hosts.token) as c:
        wait_for(lambda: all(h.idle_granules == 4 for h in c.hosts()), timeout=60, what="every granule idle again")
        yield c


def run_script(client: Any, path: Path, n: int, argv: list[str], app_id: str = "",
               **options: Any) -> tuple[list[Any], str, str, str]:
    """(results, stdout, stderr, the planner's lines) of a script run as `granny run` runs it."""
    out: dict[str, list[str]] = {"stdout": [], "stderr": [], "granny": []}
    results = client.options(**options).run_script(str(path), n, argv, mpi=True, app_id=app_id,
                                                    on_log=lambda m: out[m.stream].append(m.data))
    return results, "".join(out["stdout"]), "".join(out["stderr"]), "".join(out["granny"])


def test_a_split_world_consolidates_and_computes_the_same(client: granny.Client) -> None:
    args = ["20", "5"]
    still, out_still, err_still, news_still = run_script(client, EXAMPLE, 4, args, hosts="local1:2,local2:2",
                                                          migrate=False)
    assert [r.status.value for r in still] == ["ok"] * 4, [r.message for r in still]
    assert "ended on hosts ['local1', 'local2']" in err_still and news_still == ""
    moved, out_moved, err_moved, news = run_script(client, EXAMPLE, 4, args, "app-consolidates",
                                                   hosts="local1:2,local2:2")
    assert [r.status.value for r in moved] == ["ok"] * 4, [r.message for r in moved]
    assert out_moved == out_still and out_moved.startswith("checksum ")
    assert "ranks 0-1 moved local1 -> local2 in" in news or "ranks 2-3 moved local2 -> local1 in" in news, news
    assert news.count("moved") == 1  # once together, it stays together
    assert "ended on hosts ['local2']" in err_moved or "ended on hosts ['local1']" in err_moved
    app = client.query("app", "app-consolidates")
    assert any("moved" in m["text"] and m["seconds"] > 0 for m in app["migrations"]), app["migrations"]
    counters = client.query("counters")["migration"]
    assert counters["completed"] >= 1 and counters["granules_moved"] >= 2


DERIVED = '''
import os, sys
import numpy as np
from mpi4py import MPI
import granny

def after(comm, half, cart, step, arr):
    world = MPI.COMM_WORLD
    r = world.Get_rank()
    a = world.allreduce(r)                     # COMM_WORLD
    b = half.allreduce(r)                      # Split
    c = comm.allreduce(r * 10)                 # Dup
    src, dst = cart.Shift(0, 1)                # Create_cart
    got = cart.sendrecv(r, dest=dst, source=src)
    buf = np.empty_like(arr)
    world.Sendrecv(arr, dest=(r + 1) % 4, recvbuf=buf, source=(r - 1) % 4)   # buffers across hosts
    new = comm.Split(color=r % 2, key=-r).allgather(r)   # a communicator made after the move
    print(f"rank {r} step {step} world {a} half {half.Get_size()}:{b} dup {c} cart {src}->{dst}:{got} "
          f"ring {int(buf[0])} new {new} arr {arr.sum():.1f} host {os.environ['GRANNY_HOST_ID']}", file=sys.stderr)
    print(f"rank {r} step {step} world {a} half {half.Get_size()}:{b} dup {c} cart {src}->{dst}:{got} "
          f"ring {int(buf[0])} new {new} arr {arr.sum():.1f}")

world = MPI.COMM_WORLD
r = world.Get_rank()
dup = world.Dup()
half = world.Split(color=r // 2, key=r)
cart = world.Create_cart([4], periods=[True])
arr = np.arange(1_000_000, dtype=np.float64) + r
after(dup, half, cart, 0, arr)
granny.migration_point(after, dup, half, cart, 1, arr)
after(dup, half, cart, 1, arr)
'''


def test_derived_communicators_and_arrays_work_after_a_move(client: granny.Client, tmp_path: Path) -> None:
    script = tmp_path / "derived.py"
    script.write_text(DERIVED)
    results, out, err, news = run_script(client, script, 4, [], hosts="local1:2,local2:2")
    assert [r.status.value for r in results] == ["ok"] * 4, (err, [r.message for r in results])
    assert news.count("moved") == 1, news
    lines = sorted(out.splitlines())
    before = [line for line in lines if " step 0 " in line]
    after = [line for line in lines if " step 1 " in line]
    assert len(before) == len(after) == 4
    for b, a in zip(before, after, strict=True):
        assert a == b.replace(" step 0 ", " step 1 ")  # the moved ranks see the same world as before
    assert "new [" in after[0] and "cart 3->1" in after[0]
    hosts_after = {line.rsplit("host ", 1)[1] for line in err.splitlines() if " step 1 " in line}
    assert len(hosts_after) == 1, err  # one host now


PENDING = '''
import os, sys
import numpy as np
from mpi4py import MPI
import granny

world = MPI.COMM_WORLD
r = world.Get_rank()
buf = np.empty(4)
req = world.Irecv(buf, source=(r - 1) % 4, tag=3)       # pending across the point: no move
granny.migration_point(print, "never")
world.Send(np.full(4, float(r)), dest=(r + 1) % 4, tag=3)
req.Wait()
hosts = world.gather(os.environ["GRANNY_HOST_ID"], root=0)
if r == 0:
    print("hosts", sorted(set(hosts)), "got", buf[0])
'''


def test_a_rank_with_a_pending_request_refuses_the_move(client: granny.Client, tmp_path: Path) -> None:
    script = tmp_path / "pending.py"
    script.write_text(PENDING)
    results, out, err, news = run_script(client, script, 4, [], "app-pending", hosts="local1:2,local2:2")
    assert [r.status.value for r in results] == ["ok"] * 4, (err, [r.message for r in results])
    assert out == "hosts ['local1', 'local2'] got 3.0\n" and news == ""
    rows = client.query("app", "app-pending")
    assert rows["migrations"] == []
    assert client.query("counters")["migration"]["refused"] >= 1


REPEAT = '''
import os, sys
from mpi4py import MPI
import granny

flag = sys.argv[1]

def loop(step):
    world = MPI.COMM_WORLD
    while True:
        done = world.bcast(os.path.exists(flag), root=0)
        if done:
            break
        granny.migration_point(loop, step + 1)
        step += 1
    hosts = world.gather(os.environ["GRANNY_HOST_ID"], root=0)
    total = world.allreduce(world.Get_rank())
    if world.Get_rank() == 0:
        print("total", total, "hosts", sorted(set(hosts)))

loop(0)
'''


def test_an_app_migrates_again_when_its_host_is_evicted(client: granny.Client, tmp_path: Path) -> None:
    script, flag = tmp_path / "repeat.py", tmp_path / "stop"
    script.write_text(REPEAT)
    lines: list[str] = []
    news: list[str] = []
    outcome: list[Any] = []

    def run() -> None:
        outcome.extend(client.options(hosts="local1:2,local2:2").run_script(
            str(script), 4, [str(flag)], mpi=True, on_log=lambda m: (news if m.stream == "granny" else lines).append(m.data)))

    runner = threading.Thread(target=run)
    runner.start()
    first = ""
    try:
        wait_for(lambda: len(news) == 1, timeout=60, what="the first migration")
        first = news[0].split(" -> ")[1].split()[0]  # the host the world consolidated on
        client.query("set-policy", "spot")
        assert client.query("evict", first)["evicting_in"] > 0  # the planner's default grace (60 s)
        wait_for(lambda: len(news) == 2, timeout=60, what="the second migration, off the evicted host")
        assert f"moved {first} -> " in news[1] and news[1].startswith("ranks 0-3 "), news
    finally:
        flag.write_text("stop")
        runner.join(timeout=60)
        client.query("set-policy", "bin-pack")
        if first:
            client.query("evict", f"{first}:off")
    assert [r.status.value for r in outcome] == ["ok"] * 4, [r.message for r in outcome]
    other = "local1" if first == "local2" else "local2"
    assert lines == [f"total 6 hosts ['{other}']\n"]


def test_a_one_rank_world_moves_again_and_again(client: granny.Client, tmp_path: Path) -> None:
    # A world of one rank needs no peer's address, but its new generation must still join the rendezvous:
    # that is how the planner learns the move is over (it used to wait forever, refusing every later move).
    script, flag = tmp_path / "repeat.py", tmp_path / "stop"
    script.write_text(REPEAT)
    lines: list[str] = []
    news: list[str] = []
    outcome: list[Any] = []
    runner = threading.Thread(target=lambda: outcome.extend(client.options(hosts="local1:1").run_script(
        str(script), 1, [str(flag)], mpi=True, on_log=lambda m: (news if m.stream == "granny" else lines).append(m.data))))
    client.query("set-policy", "spot")
    asks = client.query("counters")["migration"].get("asks", 0)  # earlier tests' asks count too
    runner.start()
    try:
        # Its own first point: a notice given before the world is placed would keep it off its pinned host.
        wait_for(lambda: client.query("counters")["migration"].get("asks", 0) > asks, timeout=60,
                 what="the world's first point")
        client.query("evict", "local1:5m")  # long: a failing test must not take the host away from the next ones
        wait_for(lambda: len(news) == 1, timeout=60, what="the move off local1")
        client.query("restore", "local1")
        client.query("evict", "local2:5m")
        wait_for(lambda: len(news) == 2, timeout=60, what="the move back off local2")
        assert news[0].startswith("rank 0 moved local1 -> local2") and news[1].startswith("rank 0 moved local2 -> local1")
    finally:
        flag.write_text("stop")
        runner.join(timeout=60)
        client.query("set-policy", "bin-pack")
        client.query("restore", "local1")
        client.query("restore", "local2")
    assert [r.status.value for r in outcome] == ["ok"], [r.message for r in outcome]
    assert lines == ["total 0 hosts ['local1']\n"]


def test_granny_run_prints_the_move_and_status_lists_it(two_hosts: LocalCluster) -> None:
    env = dict(os.environ, GRANNY_ADDRESS=two_hosts.address, GRANNY_TOKEN=two_hosts.token)
    base = [sys.executable, "-m", "granny", "run", "-n", "4", "--hosts", "local1:2,local2:2"]
    moved = subprocess.run([*base, str(EXAMPLE), "20", "5"], env=env, capture_output=True, text=True, timeout=120)
    still = subprocess.run([*base, "--no-migrate", str(EXAMPLE), "20", "5"], env=env, capture_output=True, text=True,
                           timeout=120)
    assert moved.returncode == 0 and still.returncode == 0, moved.stderr + still.stderr
    assert moved.stdout == still.stdout and moved.stdout.startswith("checksum")
    assert "granny: ranks " in moved.stderr and " moved local" in moved.stderr, moved.stderr
    assert "granny:" not in still.stderr


FAILING = '''
import sys, threading
from mpi4py import MPI
import granny

def resume(what):
    if what == "raise":
        raise ValueError("resumed and failed")
    print("resumed", MPI.COMM_WORLD.Get_rank())

arg = threading.Lock() if sys.argv[1] == "unpicklable" else sys.argv[1]
granny.migration_point(resume, arg)
MPI.COMM_WORLD.Barrier()
'''


@pytest.mark.parametrize("mode", ["unpicklable", "raise"])
def test_a_move_that_cannot_resume_fails_the_job_with_the_reason(client: granny.Client, tmp_path: Path,
                                                                  mode: str) -> None:
    script = tmp_path / "failing.py"
    script.write_text(FAILING)
    results, out, err, news = run_script(client, script, 4, [mode], hosts="local1:2,local2:2")
    failed = [r for r in results if r.status.value != "ok"]
    assert failed, (out, err)
    if mode == "unpicklable":
        assert "cannot be pickled" in err and "lock" in err, err
    else:
        assert "ValueError: resumed and failed" in err and news.count("moved") == 1, (err, news)
        assert {r.exit_code for r in failed} >= {1}


HOLD = '''
import os, sys, time
while not os.path.exists(sys.argv[1]):
    time.sleep(0.01)
'''


def test_a_world_with_no_room_left_freezes_and_thaws_when_room_appears(client: granny.Client, two_hosts: LocalCluster,
                                                                      tmp_path: Path) -> None:
    script, flag, hold, release = tmp_path / "repeat.py", tmp_path / "stop", tmp_path / "hold.py", tmp_path / "go"
    script.write_text(REPEAT)
    hold.write_text(HOLD)
    lines: list[str] = []
    news: list[str] = []
    outcome: list[Any] = []
    blocked: list[Any] = []
    blocker = threading.Thread(target=lambda: blocked.extend(client.options(hosts="local2:4").run_script(
        str(hold), 4, [str(release)])))
    blocker.start()
    wait_for(lambda: any(h.host_id == "local2" and h.used == 4 for h in client.hosts()), timeout=60,
             what="the blocker holding local2")
    asks = client.query("counters")["migration"].get("asks", 0)
    runner = threading.Thread(target=lambda: outcome.extend(client.options(hosts="local1:4").run_script(
        str(script), 4, [str(flag)], mpi=True, app_id="app-frozen",
        on_log=lambda m: (news if m.stream == "granny" else lines).append(m.data))))
    runner.start()
    try:
        wait_for(lambda: client.query("counters")["migration"].get("asks", 0) > asks, timeout=60,
                 what="the world's first migration point")
        client.query("set-policy", "spot")
        client.query("evict", "local1:5s")  # it freezes at its last point before the deadline
        wait_for(lambda: any(n.startswith("frozen") for n in news), timeout=60, what="the world frozen")
        assert client.query("app", "app-frozen")["state"] == "frozen"
        stored = list((two_hosts.data_dir / "state").rglob("*.state"))
        assert len(stored) == 4, stored
        wait_for(lambda: all(h.used == 0 for h in client.hosts() if h.host_id == "local1"), timeout=60,
                 what="the frozen ranks' slots given back")
        release.write_text("go")  # the blocker ends: local2 has room for the whole world
        wait_for(lambda: any(n.startswith("thawed") for n in news), timeout=60, what="the world thawed")
        assert client.query("app", "app-frozen")["state"] == "running"
    finally:
        release.write_text("go")
        flag.write_text("stop")
        runner.join(timeout=60)
        blocker.join(timeout=60)
        client.query("set-policy", "bin-pack")
        client.query("evict", "local1:off")
        # The world froze near the end of the notice; if the notice ran out meanwhile (a loaded machine), the
        # planner stopped local1's worker: start it again for the module's later tests.
        two_hosts.revive(client.query("hosts"))
    assert [r.status.value for r in outcome] == ["ok"] * 4, [r.message for r in outcome]
    assert lines == ["total 6 hosts ['local2']\n"]
    wait_for(lambda: not list((two_hosts.data_dir / "state").rglob("*.state")), timeout=30,
             what="the stored state deleted once thawed")


def test_a_frozen_world_survives_a_planner_kill9_and_thaws_after(tmp_path: Path) -> None:
    from .test_recovery import restart_planner

    cluster = LocalCluster(workers=2, slots=4, data_dir=tmp_path / "data", granule_user="same")
    script, flag, hold, release = tmp_path / "repeat.py", tmp_path / "stop", tmp_path / "hold.py", tmp_path / "go"
    script.write_text(REPEAT)
    hold.write_text(HOLD)
    lines: list[str] = []
    news: list[str] = []
    outcome: list[Any] = []
    try:
        with granny.connect(cluster.address, cluster.token) as client:
            wait_for(lambda: sorted(h.host_id for h in client.hosts() if h.idle_granules == 4) == list(HOSTS),
                     timeout=60, what="two warm hosts")
            blocker = threading.Thread(target=lambda: client.options(hosts="local2:4").run_script(
                str(hold), 4, [str(release)]), daemon=True)
            blocker.start()
            wait_for(lambda: any(h.host_id == "local2" and h.used == 4 for h in client.hosts()), timeout=60,
                     what="the blocker holding local2")
            runner = threading.Thread(target=lambda: outcome.extend(client.options(hosts="local1:4").run_script(
                str(script), 4, [str(flag)], mpi=True, app_id="app-durable",
                on_log=lambda m: (news if m.stream == "granny" else lines).append(m.data))), daemon=True)
            runner.start()
            wait_for(lambda: client.query("counters")["migration"].get("asks", 0) > 0, timeout=60,
                     what="the world's first migration point")
            client.query("set-policy", "spot")
            client.query("evict", "local1:5s")
            wait_for(lambda: any(n.startswith("frozen") for n in news), timeout=60, what="the world frozen")
            wait_for(lambda: not any(h.used for h in client.hosts() if h.host_id == "local1"), timeout=60,
                     what="the frozen ranks gone")
            restart_planner(cluster, True, "--restart-grace", "1")  # kill -9
            # local1 is still under its (journaled) notice, or was taken back: room comes with the blocker's end.
            # (Only if the notice ran out while no planner ran is it forgotten, and the world thaws on local1.)
            release.write_text("go")
            wait_for(lambda: any(n.startswith("thawed") for n in news), timeout=60,
                     what="the world thawed by the new planner")
            flag.write_text("stop")
            runner.join(timeout=60)
            assert [r.status.value for r in outcome] == ["ok"] * 4, [r.message for r in outcome]
            assert lines in (["total 6 hosts ['local2']\n"], ["total 6 hosts ['local1']\n"]), lines
    finally:
        flag.write_text("stop")
        release.write_text("go")
        cluster.stop()


def test_status_lists_a_move_as_soon_as_the_run_returns(client: granny.Client, tmp_path: Path) -> None:
    script = tmp_path / "short.py"
    script.write_text("from mpi4py import MPI\nimport granny\ngranny.migration_point(print, 'moved')\n")
    for attempt in range(5):  # the journal commits in batches: the answer must not depend on that
        app_id = f"app-short-{attempt}"
        results, out, _, news = run_script(client, script, 2, [], app_id, hosts="local1:1,local2:1")
        assert [r.status.value for r in results] == ["ok"] * 2 and out == "moved\n" and "moved" in news
        moves = client.query("app", app_id)["migrations"]
        assert len(moves) == 1 and moves[0]["text"] in news, (moves, news)
