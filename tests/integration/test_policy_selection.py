"""Choosing the placement policy on real processes: the flag, `granny policy`, PUT /v1/policy, the journal."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx

import granny
from granny.cluster import LocalCluster

from ..polling import wait_for
from .netprocs import PlannerProc


def granny_cli(planner: PlannerProc, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRANNY_")}
    env["GRANNY_TOKEN"] = planner.token
    return subprocess.run([sys.executable, "-m", "granny", *argv, "--address", planner.address], env=env,
                          capture_output=True, text=True, timeout=60)


def api(planner: PlannerProc) -> httpx.Client:
    return httpx.Client(base_url=f"http://{planner.http}", headers={"Authorization": f"Bearer {planner.token}"},
                        timeout=30)


def test_policy_is_chosen_changed_and_kept_across_restarts(tmp_path: Path) -> None:
    data = tmp_path / "planner"
    planner = PlannerProc(data, "--policy", "compact", http=True)
    try:
        shown = granny_cli(planner, "policy")
        assert shown.returncode == 0, shown.stderr
        assert shown.stdout.startswith("policy: compact"), shown.stdout
        changed = granny_cli(planner, "policy", "set", "spot")
        assert changed.returncode == 0, changed.stderr
        assert changed.stdout.startswith("policy: spot")
        with api(planner) as http:
            names = ["bin-pack", "compact", "spot", "spot-late", "first-fit", "whole-hosts", "bin-pack-reserve"]
            assert http.get("/v1/policy").json() == {"policy": "spot", "policies": names}
    finally:
        planner.stop()

    planner = PlannerProc(data, http=True)  # no --policy: the journal's choice
    try:
        with api(planner) as http:
            assert http.get("/v1/policy").json()["policy"] == "spot"
            put = http.put("/v1/policy", json={"name": "bin-pack"})
            assert put.status_code == 200 and put.json()["policy"] == "bin-pack"
        planner.proc.kill()  # a 200 means journaled: even kill -9 right after it keeps the choice
        planner.proc.wait()
    finally:
        planner.stop()

    planner = PlannerProc(data, http=True)
    try:
        with api(planner) as http:
            assert http.get("/v1/policy").json()["policy"] == "bin-pack"
    finally:
        planner.stop()

    planner = PlannerProc(data, "--policy", "compact", http=True)  # a flag overrides the journal
    try:
        with api(planner) as http:
            assert http.get("/v1/policy").json()["policy"] == "compact"
    finally:
        planner.stop()


def test_unknown_policy_is_a_clear_error(tmp_path: Path) -> None:
    planner = PlannerProc(tmp_path / "planner", http=True)
    try:
        bad = granny_cli(planner, "policy", "set", "round-robin")
        assert bad.returncode == 2
        assert "unknown policy 'round-robin'" in bad.stderr and "bin-pack, compact, spot" in bad.stderr, bad.stderr
        assert "Traceback" not in bad.stderr
        with api(planner) as http:
            put = http.put("/v1/policy", json={"name": "round-robin"})
            assert put.status_code == 400
            assert "unknown policy 'round-robin'" in put.json()["error"]
            assert http.put("/v1/policy", json={"name": 3}).status_code == 422
            assert http.put("/v1/policy", content=b"{").status_code == 400
            assert http.get("/v1/policy").json()["policy"] == "bin-pack"  # unchanged
    finally:
        planner.stop()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRANNY_")}
    flag = subprocess.run([sys.executable, "-m", "granny", "planner", "--policy", "round-robin", "--data-dir",
                           str(tmp_path / "other")], env=env, capture_output=True, text=True, timeout=60)
    assert flag.returncode == 2 and "invalid choice: 'round-robin'" in flag.stderr


def block_until(path: str) -> str:
    import os
    import time

    while not os.path.exists(path):
        time.sleep(0.01)
    return os.environ["GRANNY_HOST_ID"]


def test_a_policy_change_applies_to_the_next_placement(tmp_path: Path) -> None:
    """compact puts a new app on the fullest host that fits, whole-hosts on an empty host: switching
    at run time (RPC, then HTTP) changes where the next request goes."""
    cluster = LocalCluster(workers=2, slots=3, data_dir=tmp_path / "data", granule_user="same")
    release = str(tmp_path / "release")
    clients = [granny.connect(cluster.address, cluster.token) for _ in range(3)]  # three apps
    try:
        wait_for(lambda: all(h.idle_granules == 3 for h in clients[0].hosts()) and len(clients[0].hosts()) == 2,
                 timeout=60, what="two hosts with 3 warm granules each")

        def used() -> dict[str, int]:
            return {h.host_id: h.used for h in clients[0].hosts()}

        first = clients[0].submit(block_until, release)
        busy = wait_for(lambda: [h for h, n in used().items() if n == 1], what="the first app to start")[0]
        clients[0].query("set-policy", "compact")
        second = clients[1].submit(block_until, release)  # compact: the fullest host that fits
        wait_for(lambda: sum(used().values()) == 2, what="the second app to start")
        with httpx.Client(base_url=f"http://{cluster.http_address}", timeout=30,
                          headers={"Authorization": f"Bearer {cluster.token}"}) as http:
            assert http.put("/v1/policy", json={"name": "whole-hosts"}).status_code == 200
        third = clients[2].submit(block_until, release)  # whole-hosts: a host of its own
        wait_for(lambda: sum(used().values()) == 3, what="the third app to start")
        Path(release).touch()
        assert first.result(timeout=60) == busy
        assert second.result(timeout=60) == busy
        assert third.result(timeout=60) != busy
    finally:
        Path(release).touch()
        for c in clients:
            c.close()
        cluster.stop()


def test_code_in_a_granule_cannot_change_the_policy(client: granny.Client) -> None:
    def try_to_set() -> str:
        import granny
        from granny.errors import GrannyError

        inner = granny.connect()  # the granule's own credential, scoped to its app (close() would cancel it)
        try:
            inner.query("set-policy", "spot")
        except GrannyError as exc:
            return str(exc)
        return "changed"

    assert "refused" in client.submit(try_to_set).result(timeout=60)
    assert client.query("policy")["policy"] == "bin-pack"
