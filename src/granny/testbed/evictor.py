"""The eviction runner: `up` starts it when the topology has an ``evictions`` section, `down` kills it.

It carries out the plan of :mod:`.evictions` on the wall clock, counted from ``started_at``: an eviction
notice through the planner's HTTP API (``POST /v1/hosts/{id}/evict``), and, when the host is due back,
``POST /v1/hosts/{id}/restore`` and a new worker in the host's namespace (the planner stopped the old
one at the end of the notice). Each step it took is a line in ``logs/evictor.log``. It runs until the
testbed is gone.

A host away for a while (``for`` longer than the notice) gets its new worker as soon as it is taken
back, as a cloud boots a replacement spot VM meanwhile: the process starts, imports and starts its
zygote while the host is away, and registers (``--register-at``) when the host is due back. So the
host is away for ``for``, not for that plus a Python start (0.3-3 s on a loaded machine).

    python -m granny.testbed.evictor --state-dir /run/granny-testbed
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from . import lifecycle, state
from .evictions import Step, steps
from .netns import Layout
from .procs import alive, spawn, stop
from .state import State


def run(state_dir: str, poll: float = 0.2) -> int:
    done = 0
    booted: dict[Step, int] = {}  # a restore whose worker was started ahead -> its pid
    while True:
        st = state.load(state_dir)
        if st is None or st.topology.evictions is None:
            return 0
        now = time.time() - st.started_at
        plan = st.topology.evictions
        ahead = plan.away  # a restore comes that long after the deadline, when the host was taken back
        due = steps(plan, st.topology.hosts, now)
        for step in due[done:]:
            try:
                _take(st, step, now, booted.pop(step, 0))
            except (OSError, ValueError) as exc:  # the planner is restarting, say: the next round tries again
                print(f"t={step.at:g}s {step.action} {step.host} failed: {exc}", file=sys.stderr, flush=True)
        done = len(due)
        if ahead > 0:
            for step in steps(plan, st.topology.hosts, now + ahead)[done:]:
                # (_boot gives 0 while the old worker is still stopping: it is tried again next time)
                if step.action == "restore" and step not in booted and step.at - ahead <= now and (pid := _boot(st, step, now)):
                    booted[step] = pid
        time.sleep(poll)  # re-read the state now and then: `down` removes it


def _boot(st: State, step: Step, now: float) -> int:
    """Start the host's new worker now, registering at ``step`` (its restore); 0 if the old one is still there."""
    name = f"worker-{step.host}"
    with state.locked(st.state_dir):
        current = state.load(st.state_dir)
        if current is None:
            return 0
        old = current.proc(name)
        if old is not None and alive(old.pid):
            return 0  # not taken back yet (told to stop a moment ago): started at its restore instead
        log = Path(st.state_dir) / "logs" / f"{name}.log"
        argv = lifecycle.worker_argv(current, step.host) + ["--register-at", f"{current.started_at + step.at:.3f}"]
        new = spawn(name, argv, log, current.state_dir, ns=Layout(current.prefix, current.net).ns(step.host))
        current.procs = [p for p in current.procs if p.name != name] + [new]
        state.save(current)
    print(f"t={now:.1f}s boot {step.host}: a new worker started ahead as pid {new.pid}; it registers at "
          f"t={step.at:g}s", flush=True)
    return new.pid


def _take(st: State, step: Step, now: float, booted: int = 0) -> None:
    plan = st.topology.evictions
    assert plan is not None
    late = f"{(now - step.at) * 1e3:.0f} ms late"
    if step.action == "evict":
        body = {} if plan.grace is None else {"grace": plan.grace}
        row = _post(st, f"/v1/hosts/{step.host}/evict", body)
        print(f"t={step.at:g}s evict {step.host}: evicting in {row['evicting_in']:.1f}s ({late})", flush=True)
        return
    row = _post(st, f"/v1/hosts/{step.host}/restore", {})
    if booted and alive(booted):
        print(f"t={step.at:g}s restore {step.host}: notice lifted; its worker pid {booted} was started ahead "
              f"({late})", flush=True)
        return
    if row["alive"]:  # it was not taken back (the planner was away at the deadline, say)
        print(f"t={step.at:g}s restore {step.host}: notice lifted; the host was not taken back", flush=True)
        return
    name = f"worker-{step.host}"
    with state.locked(st.state_dir):
        current = state.load(st.state_dir)
        if current is None:
            return
        old = current.proc(name)
        deadline = time.monotonic() + 10
        while old is not None and alive(old.pid) and time.monotonic() < deadline:
            time.sleep(0.05)  # it was told to stop a moment ago
        if old is not None and alive(old.pid):
            stop([old.pid])  # it missed the order; the planner refuses it anyway (eviction.refused)
        log = Path(st.state_dir) / "logs" / f"{name}.log"
        new = spawn(name, lifecycle.worker_argv(current, step.host), log, current.state_dir,
                    ns=Layout(current.prefix, current.net).ns(step.host))
        current.procs = [p for p in current.procs if p.name != name] + [new]
        state.save(current)
    print(f"t={step.at:g}s restore {step.host}: notice lifted, worker restarted as pid {new.pid} ({late})",
          flush=True)


def _post(st: State, path: str, body: dict[str, float]) -> dict[str, object]:
    info = json.loads((Path(st.data_dir) / "planner.json").read_text())
    req = urllib.request.Request(f"http://{info['http']}{path}", data=json.dumps(body).encode(), method="POST",
                                 headers={"Authorization": f"Bearer {st.token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return dict(json.loads(resp.read()))
    except urllib.error.HTTPError as exc:
        raise ValueError(f"HTTP {exc.code}: {exc.read()[:200]!r}") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="granny.testbed.evictor")
    parser.add_argument("--state-dir", default=str(state.DEFAULT_STATE_DIR))
    args = parser.parse_args(argv)
    print("READY evictor", flush=True)
    return run(args.state_dir)


if __name__ == "__main__":
    sys.exit(main())
