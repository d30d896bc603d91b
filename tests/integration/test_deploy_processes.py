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


def test_the_manifests_make_a_working_cluster(tmp_path: Path) -> None:
    docs = render(BASE)
    secret, token = os.urandom(16).hex(), os.urandom(16).hex()
    init = run_credentials_script(tmp_path, secret, token)  # the Secrets, mounted under tmp_path/etc
    assert init.returncode == 0, init.stderr
    procs: list[subprocess.Popen[str]] = []
    try:
        argv, env = command(container(one(docs, "StatefulSet", "granny-planner"), "planner"), tmp_path)
        planner = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        procs.append(planner)
        assert planner.stdout is not None
        ready = planner.stdout.readline()  # blocks until the planner listens (or exits)
        found = re.search(r"READY address=(\S+) http=(\S+)", ready)
        assert found, f"the planner did not start: {ready!r}"
        address = found[1]

        worker_c = container(one(docs, "DaemonSet", "granny-worker"), "worker")
        worker_c = dict(worker_c, args=[re.sub(r"^--planner=.*", f"--planner={address}", a) for a in worker_c["args"]])
        # Granules keep the worker's user here: this machine's Python is not readable by 'nobody', the image's
        # is (tests/integration/test_granule_user.py covers the privilege drop).
        argv, env = command(worker_c, tmp_path, NODE_NAME="node-1", GRANNY_GRANULE_USER="same")
        procs.append(subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True))

        client = granny.connect(address, token)  # the token Secret's value, as a user would take it
        try:
            hosts = wait_for(lambda: [h for h in client.hosts() if h.host_id == "node-1" and h.alive],
                             timeout=60, what="the worker to register as node-1")
            assert hosts[0].slots >= 1
            assert client.submit(pow, 2, 10).result(timeout=60) == 1024
        finally:
            client.close()
    finally:
        for proc in reversed(procs):
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
