"""The schedule runner: `up` starts it when the topology has a `schedule`, `down` kills it.

It applies event k at ``started_at + at`` (wall clock) and records ``schedule_done = k + 1`` in the
state file, so a restarted runner resumes where the last one stopped.  It exits when every event
has been applied or when the testbed is gone.

    python -m granny.testbed.scheduler --state-dir /run/granny-testbed
"""

from __future__ import annotations

import argparse
import sys
import time

from ..errors import TestbedError
from . import lifecycle, state


def run(state_dir: str, poll: float = 0.5) -> int:
    while True:
        st = state.load(state_dir)
        if st is None:
            return 0
        events = st.topology.schedule
        if st.schedule_done >= len(events):
            print(f"all {len(events)} events applied", flush=True)
            return 0
        k = st.schedule_done
        due = st.started_at + events[k].at
        remaining = due - time.time()
        if remaining > 0:
            time.sleep(min(remaining, poll))  # re-read the state now and then: `down` removes it
            continue
        with state.locked(state_dir):
            st = state.load(state_dir)
            if st is None or st.schedule_done != k:
                continue
            try:
                lifecycle.push(st, st.topology.schedule[k])
            except TestbedError as exc:
                print(f"event {k} failed: {exc}", file=sys.stderr, flush=True)
            st.schedule_done = k + 1
            state.save(st)
        ev = events[k]
        late = time.time() - due
        print(f"t={ev.at:g}s applied {ev.target or 'defaults'} {ev.spec.to_dict()} ({late * 1e3:.0f} ms late)",
              flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="granny.testbed.scheduler")
    parser.add_argument("--state-dir", default=str(state.DEFAULT_STATE_DIR))
    args = parser.parse_args(argv)
    print("READY scheduler", flush=True)
    return run(args.state_dir)


if __name__ == "__main__":
    sys.exit(main())
