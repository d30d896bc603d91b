"""The Kubernetes manifests' planner and worker command lines, run as real processes on this machine, make a
working cluster with the credentials as the manifests hand them over: the Secrets, copied by the planner's
init container, are what the planner uses, the worker registers with the mounted cluster secret, and a
client with the token runs a call. Only the addresses are changed (loopback, free ports, a temporary
directory for the volumes)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import granny

from ..polling import wait_for
from ..unit.test_deploy_kubernetes import BASE, container, one, render, run_credentials_script
from ..unit.test_deploy_systemd import INSTALLED, env_file, exec_argv

LOCAL = {"--bind": "127.0.0.1", "--port": "0", "--http-port": "0"}


def command(c: dict[str, Any], tmp_path: Path, **values: str) -> tuple[list[str], dict[str, str]]:
    """The container's argv (after the image's ``granny`` entrypoint) and environment, moved to this machine."""
    env = {e["name"]: e["value"] for e in c.get("env", []) if "value" in e} | values
    env["HOME"] = str(tmp_path)
    argv = []
    for arg in c["args"]:
        arg = re.sub(r"\$\((\w+)\)", lambda m: env[m[1]], arg)
        flag, eq, _ = arg.partition("=")
        if eq and flag in LOCAL:
            arg = f"{flag}={LOCAL[flag]}"
        argv.append(arg.replace("/var/lib/granny", f"{tmp_path}/var").replace("/etc/granny/", f"{tmp_path}/etc/"))
    base = {k: v for k, v in os.environ.items() if not k.startswith("GRANNY_")}
    return [sys.executable, "-m", "granny", *argv], base | env


def start_planner(argv: list[str], env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    planner = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert planner.stdout is not None
    ready = planner.stdout.readline()  # blocks until the planner listens (or exits)
    found = re.search(r"READY address=(\S+) http=(\S+)", ready)
    if not found:
        planner.kill()
        raise AssertionError(f"the planner did not start: {ready!r}")
    return planner, found[1]


def check_cluster(address: str, token: str, host_id: str) -> None:
    client = granny.connect(address, token)
    try:
        hosts = wait_for(lambda: [h for h in client.hosts() if h.host_id == host_id and h.alive],
                         timeout=60, what=f"the worker to register as {host_id}")
        assert hosts[0].slots >= 1
        assert client.submit(pow, 2, 10).result(timeout=60) == 1024
    finally:
        client.close()


def stop(procs: list[subprocess.Popen[str]]) -> None:
    for proc in reversed(procs):
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def test_the_manifests_make_a_working_cluster(tmp_path: Path) -> None:
    docs = render(BASE)
    secret, token = os.urandom(16).hex(), os.urandom(16).hex()
    init = run_credentials_script(tmp_path, secret, token)  # the Secrets, mounted under tmp_path/etc
    assert init.returncode == 0, init.stderr
    procs: list[subprocess.Popen[str]] = []
    try:
        argv, env = command(container(one(docs, "StatefulSet", "granny-planner"), "planner"), tmp_path)
        planner, address = start_planner(argv, env)
        procs.append(planner)
        worker_c = container(one(docs, "DaemonSet", "granny-worker"), "worker")
        worker_c = dict(worker_c, args=[re.sub(r"^--planner=.*", f"--planner={address}", a) for a in worker_c["args"]])
        # Granules keep the worker's user here: this machine's Python is not readable by 'nobody', the image's
        # is (tests/integration/test_granule_user.py covers the privilege drop).
        argv, env = command(worker_c, tmp_path, NODE_NAME="node-1", GRANNY_GRANULE_USER="same")
        procs.append(subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True))
        check_cluster(address, token, "node-1")  # the token Secret's value, as a user would take it
    finally:
        stop(procs)


def test_the_systemd_units_make_a_working_cluster(tmp_path: Path) -> None:
    """As docs/operations.md installs them: the planner makes its credentials; the worker's environment
    file gets the planner's secret; users get its token."""
    data = tmp_path / "state"
    base = {k: v for k, v in os.environ.items() if not k.startswith("GRANNY_")} | {"HOME": str(tmp_path)}

    def local(argv: list[str]) -> list[str]:
        assert argv[0] == INSTALLED
        moved = " ".join(argv[1:]).replace("--port 7400", "--port 0").replace("--http-port 7401", "--http-port 0")
        return [sys.executable, "-m", "granny", *moved.replace("/var/lib/granny", str(data)).split()]

    procs: list[subprocess.Popen[str]] = []
    try:
        planner_env = env_file("planner.env.example") | {"PLANNER_BIND": "127.0.0.1"}
        planner, address = start_planner(local(exec_argv("granny-planner.service", planner_env)),
                                         base | planner_env)
        procs.append(planner)
        worker_env = env_file("worker.env.example") | {
            "PLANNER_ADDRESS": address, "GRANNY_SECRET": (data / "secret").read_text().strip(),
            "WORKER_ARGS": "--host-id vm-7 --granule-user same"}  # same: see the test above
        procs.append(subprocess.Popen(local(exec_argv("granny-worker.service", worker_env)), env=base | worker_env,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True))
        check_cluster(address, (data / "token").read_text().strip(), "vm-7")
    finally:
        stop(procs)
