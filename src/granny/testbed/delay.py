"""Build and drive the C delay stage (delayd.c, shipped in this package, compiled on first use).

The binary is cached as ``<cache>/delayd-<hash of the source>`` (cache: $GRANNY_CACHE_DIR, else
$XDG_CACHE_HOME/granny, else ~/.cache/granny), so an edited source is rebuilt and concurrent first
uses race harmlessly (each compiles to a temporary name and renames).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import time
from importlib import resources
from pathlib import Path

from ..config import ENV_CACHE_DIR, env
from ..errors import TestbedError
from .netns import TUN, Layout
from .procs import Proc, signal_pid, spawn
from .shaping import delay_table
from .topology import Topology


def cache_dir() -> Path:
    if env(ENV_CACHE_DIR):
        return Path(env(ENV_CACHE_DIR))
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "granny"


def source() -> bytes:
    try:
        return resources.files("granny.testbed").joinpath("delayd.c").read_bytes()
    except (FileNotFoundError, OSError) as exc:
        raise TestbedError(f"delayd.c is missing from the granny.testbed package ({exc}); "
                           "reinstall granny with its package data") from None


def binary() -> Path:
    """Path of the compiled delay stage, compiling it if needed."""
    src = source()
    out = cache_dir() / f"delayd-{hashlib.sha256(src).hexdigest()[:16]}"
    if out.exists():
        return out
    cc = shutil.which(os.environ.get("CC", "gcc")) or shutil.which("cc")
    if cc is None:
        raise TestbedError("the testbed's delay stage needs a C compiler: apt-get install gcc")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".delayd-{os.getpid()}"
    tmp.with_suffix(".c").write_bytes(src)
    proc = subprocess.run([cc, "-O2", "-Wall", "-o", str(tmp), str(tmp.with_suffix(".c"))],
                          capture_output=True, text=True, check=False)
    tmp.with_suffix(".c").unlink(missing_ok=True)
    if proc.returncode != 0:
        raise TestbedError(f"compiling the delay stage failed:\n{proc.stderr}")
    os.replace(tmp, out)
    return out


def config_path(state_dir: str | Path) -> Path:
    return Path(state_dir) / "delay.conf"


def write_config(state_dir: str | Path, layout: Layout, topo: Topology) -> int:
    """Write the pair table; returns its generation number (the delay stage acknowledges it)."""
    path = config_path(state_dir)
    gen = time.time_ns()
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(delay_table(layout, topo, gen))
    os.replace(tmp, path)
    return gen


def acked(state_dir: str | Path) -> int:
    try:
        return int(Path(f"{config_path(state_dir)}.ack").read_text().strip() or 0)
    except (OSError, ValueError):
        return 0


def start(state_dir: str | Path, layout: Layout, topo: Topology, mark: str) -> Proc:
    """Write the pair table and start the delay stage inside the router namespace (not yet ready)."""
    write_config(state_dir, layout, topo)
    argv = [str(binary()), "--tun", TUN, "--config", str(config_path(state_dir)), "--gso", "1"]
    return spawn("delayd", argv, Path(state_dir) / "logs" / "delayd.log", mark, ns=layout.router_ns)


def reload(state_dir: str | Path, layout: Layout, topo: Topology, pid: int) -> None:
    """Install a new pair table in the running delay stage; returns once it is in force."""
    gen = write_config(state_dir, layout, topo)
    signal_pid(pid, signal.SIGHUP)
    deadline = time.monotonic() + 5.0
    while acked(state_dir) != gen:
        if time.monotonic() > deadline:
            raise TestbedError(f"the delay stage (pid {pid}) did not take its new settings within 5 s")
        time.sleep(0.001)
