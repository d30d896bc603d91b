"""Bring a testbed up, change its links while it runs, and tear it down.

``up`` order: clean leftovers; start the planner early (its imports take the longest); build the
namespaces; start the delay stage and install the shaping; once the delay stage is READY start one
worker per host; wait for every READY line; record the state; start the scheduler if the topology
has a schedule.  Any failure tears down what was made so far.  ``teardown`` works from the state
file when there is one and from the name prefix and process marker when there is not.
"""

from __future__ import annotations

import copy
import json
import shutil
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from ..config import ENV_GRANULE_USER, env
from ..errors import TestbedError
from . import delay, state
from .netns import Layout, build, destroy, namespaces, pids_in
from .procs import Proc, marked, spawn, stop, wait_ready
from .shaping import apply_shaping
from .state import State
from .topology import Event

Log = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


def up(st: State, *, port: int = 0, heartbeat_timeout: float | None = None, ready_timeout: float = 60.0,
       wipe_data: bool = False, log: Log = _quiet) -> State:
    """Build everything described by st (whose procs/address/token are filled in) and save it.
    wipe_data: empty the planner's data directory first (a fresh secret, token and journal)."""
    t0 = time.monotonic()
    layout = Layout(st.prefix, st.net)
    teardown(st.state_dir, st.prefix, log=log)
    with state.locked(st.state_dir):
        logs = Path(st.state_dir) / "logs"
        shutil.rmtree(logs, ignore_errors=True)
        if wipe_data and st.data_dir:
            shutil.rmtree(st.data_dir, ignore_errors=True)
        try:
            _up_locked(st, layout, logs, port, heartbeat_timeout, ready_timeout, log)
        except BaseException:
            log("up failed; removing what was made")
            _teardown_locked(st.state_dir, st.prefix, st)
            raise
    log(f"testbed up in {time.monotonic() - t0:.2f}s: {len(st.topology.hosts)} hosts, state in {st.state_dir}")
    return st


def _up_locked(st: State, layout: Layout, logs: Path, port: int, heartbeat_timeout: float | None,
               ready_timeout: float, log: Log) -> None:
    topo, mark = st.topology, st.state_dir
    delay.binary()  # compile (first use only) before anything starts
    planner: Proc | None = None
    if st.granny:
        data = Path(st.data_dir)
        data.mkdir(parents=True, exist_ok=True)
        (data / "planner.json").unlink(missing_ok=True)
        argv = [sys.executable, "-m", "granny", "planner", "--bind", "0.0.0.0", "--port", str(port),
                "--http-port", "0", "--data-dir", str(data)]
        if heartbeat_timeout is not None:
            argv += ["--heartbeat-timeout", f"{heartbeat_timeout:g}"]
        planner = spawn("planner", argv, logs / "planner.log", mark)
        st.procs.append(planner)
    state.save(st)  # from here on a crash leaves a state file that `down` can use
    build(layout, topo.hosts)
    dproc = delay.start(st.state_dir, layout, topo, mark)
    st.procs.append(dproc)
    state.save(st)
    apply_shaping(layout, None, topo)
    wait_ready([dproc], 10.0)
    log(f"network ready: router {layout.router_ns}, hosts {', '.join(layout.ns(h) for h in topo.hosts)}")
    if planner is not None:
        wait_ready([planner], ready_timeout)
        data = Path(st.data_dir)
        try:
            info = json.loads((data / "planner.json").read_text())
            planner_port = int(str(info["address"]).rsplit(":", 1)[1])
            st.token = (data / "token").read_text().strip()
        except (OSError, ValueError, KeyError, IndexError) as exc:
            raise TestbedError(f"the planner is READY but {data}/planner.json or token is unusable: {exc}") from None
        st.address = f"{layout.ip('planner', topo.hosts)}:{planner_port}"
        workers = [spawn(f"worker-{h}", worker_argv(st, h), logs / f"worker-{h}.log", mark, ns=layout.ns(h))
                   for h in topo.hosts]
        st.procs += workers
        state.save(st)
        wait_ready(workers, ready_timeout)
        _wait_warm(str(info.get("http", "")), st.token, topo.hosts, topo.slots, ready_timeout)
        log(f"planner at {st.address}; {len(workers)} workers registered, their granules warm")
    st.started_at = time.time()
    if topo.schedule:
        argv = [sys.executable, "-m", "granny.testbed.scheduler", "--state-dir", st.state_dir]
        st.procs.append(spawn("scheduler", argv, logs / "scheduler.log", mark))
    if topo.evictions is not None and planner is not None:
        argv = [sys.executable, "-m", "granny.testbed.evictor", "--state-dir", st.state_dir]
        st.procs.append(spawn("evictor", argv, logs / "evictor.log", mark))
    state.save(st)


def worker_argv(st: State, host: str) -> list[str]:
    """The command of ``host``'s worker (run in its namespace); the evictor restarts it with this too."""
    return [sys.executable, "-m", "granny", "worker", "--planner", st.address, "--slots", str(st.topology.slots),
            "--host-id", host, "--secret-file", str(Path(st.data_dir) / "secret"),
            # an emulated cluster of one machine: its granules keep the testbed's user
            "--granule-user", env(ENV_GRANULE_USER, "same")]


def _wait_warm(http: str, token: str, hosts: list[str], slots: int, timeout: float) -> None:
    """Wait until the planner (HTTP API) sees every host with all its warm granules connected.

    A worker prints READY once registered; its pre-forked granules connect a moment later, and until
    then the planner sees less room on that host (and places work elsewhere).  No HTTP API: skip."""
    if not http:
        return
    req = urllib.request.Request(f"http://{http}/v1/hosts", headers={"Authorization": f"Bearer {token}"})
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                seen = {h["host_id"]: h for h in json.loads(resp.read())}
            if set(hosts) <= set(seen) and all(
                    seen[h].get("alive", True) and seen[h].get("idle_granules", slots) >= slots for h in hosts):
                return
        except (OSError, ValueError, KeyError, TypeError):
            pass
        if time.monotonic() > deadline:
            raise TestbedError(f"the workers registered but their granules were not all connected after {timeout:.0f}s")
        time.sleep(0.02)


def teardown(state_dir: str, prefix: str = "gty", log: Log = _quiet) -> list[str]:
    """Remove every process, namespace and link of the testbed; idempotent. Returns what it removed."""
    with state.locked(state_dir):
        return _teardown_locked(state_dir, prefix, state.load(state_dir), log)


def _teardown_locked(state_dir: str, prefix: str, st: State | None, log: Log = _quiet) -> list[str]:
    prefixes = {prefix} | ({st.prefix} if st is not None else set())
    pids = [p.pid for p in st.procs] if st is not None else []
    pids += marked(state_dir)
    names = [ns for pre in prefixes for ns in namespaces(pre)]
    pids += pids_in(names)
    stop(pids)
    removed = []
    for pre in prefixes:
        removed += destroy(Layout(pre, st.net if st is not None else "10.77.0"))
    state.remove(state_dir)
    if removed:
        log(f"removed {', '.join(removed)}")
    return removed


def change(state_dir: str, event: Event) -> State:
    """Apply one change (a schedule event, `granny testbed set`) to the running testbed."""
    with state.locked(state_dir):
        st = state.load(state_dir)
        if st is None:
            raise TestbedError(f"no testbed is up (no state in {state_dir})")
        st.topology.check_target(event.target, "change")
        push(st, event)
        state.save(st)
        return st


def push(st: State, event: Event) -> None:
    """Apply event to st.topology and to the kernel and delay stage (caller holds the lock)."""
    old = copy.deepcopy(st.topology)
    st.topology.apply(event)
    layout = Layout(st.prefix, st.net)
    apply_shaping(layout, old, st.topology)
    proc = st.proc("delayd")
    if proc is None:
        raise TestbedError("the state file has no delay stage; run `granny testbed down` and `up` again")
    delay.reload(st.state_dir, layout, st.topology, proc.pid)
