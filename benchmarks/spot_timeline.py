"""Where the spot trace's time goes: per-job timelines and the cluster's idle slots, from one run's events.

    .venv/bin/python benchmarks/spot_timeline.py DIR/granny-calm.json DIR/granny-evict.json

The files are what ``spot_trace.py --events-dir DIR`` writes: the planner's events of a run (``granny events
--json``), which request is which job, when the client submitted each and got its result. For each run this
prints every job's timeline (queued, placed, moved, frozen, thawed, finished: seconds from the first submit)
and accounts for the slot-seconds: used by running jobs, free on hosts that take work while work waits
(split by why it waits: a frozen world, or a new job, at the head of the FIFO queue), free on hosts under
notice (they take no new work), and missing while a taken-back host is away (down, then its worker
re-registering). With two runs it compares them job by job.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any


def load(path: Path) -> dict[str, Any]:
    d: dict[str, Any] = json.loads(path.read_text())
    t0 = d["t0_wall"]
    for e in d["events"]:
        e["t"] = e["at"] - t0
    return d


def timelines(d: dict[str, Any]) -> dict[int, dict[str, Any]]:
    job_of = {req: v[0] for req, v in d["jobs"].items()}
    trace = d["trace"]
    out: dict[int, dict[str, Any]] = {}
    for req, (i, at) in d["jobs"].items():
        out.setdefault(i, {"job": i, "size": trace[i][1], "nominal": trace[i][2] * 0.25, "submit": at,
                           "placed": None, "frozen": [], "moves": 0, "move_s": 0.0, "stays": 0, "finished": None,
                           "events": []})
    for e in d["events"]:
        i = job_of.get(e["req_id"])
        if i is None:
            continue
        j, k = out[i], e["kind"]
        j["events"].append((round(e["t"], 2), k.split(".")[-1]))
        if k == "app.placed" and j["placed"] is None:
            j["placed"] = e["t"]
        elif k == "migration.frozen":
            j["frozen"].append([e["t"], None])
        elif k == "migration.thawed":
            j["frozen"][-1][1] = e["t"]
        elif k == "migration.moved":
            j["moves"] += 1
            j["move_s"] += float(e["data"].get("seconds", 0.0))
        elif k == "app.finished":
            j["finished"] = e["t"]
    for i, t in d["done"].items():
        out[int(i)]["done"] = t
    return out


def slots(d: dict[str, Any], slots_per_host: int = 8) -> dict[str, float]:
    """Integrate the cluster's slots over the run, from the first submit to the last result."""
    job_of = {req: v[0] for req, v in d["jobs"].items()}
    trace = d["trace"]
    end = max(d["done"].values())
    alive = {e["host_id"] for e in d["events"] if e["kind"] == "host.joined" and e["t"] <= 0}
    evicting: set[str] = set()
    on: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))  # job -> host -> ranks
    queued: dict[int, str] = {}  # job -> "new" or "frozen"
    acc: dict[str, float] = defaultdict(float)
    submits = sorted((at, i) for i, at in d["jobs"].values())
    events = sorted([(e["t"], 1, e) for e in d["events"] if 0 <= e["t"] <= end]
                    + [(at, 0, {"kind": "submit", "job": i}) for at, i in submits], key=lambda x: (x[0], x[1]))
    last = 0.0
    for t, _, e in events + [(end, 2, {"kind": "end"})]:
        dt = t - last
        if dt > 0:
            used = defaultdict(int)
            for hosts in on.values():
                for h, c in hosts.items():
                    used[h] += c
            safe_free = sum(slots_per_host - used[h] for h in alive if h not in evicting)
            acc["used"] += dt * sum(used.values())
            acc["notice_free"] += dt * sum(slots_per_host - used[h] for h in alive if h in evicting)
            acc["away"] += dt * slots_per_host * (4 - len(alive))
            if queued:
                head = min(queued, key=lambda i: (queued[i] != "frozen", i))
                why = "frozen_head" if queued[head] == "frozen" else "new_head"
                acc[f"idle_waiting_{why}"] += dt * safe_free
            else:
                acc["idle_nothing_waiting"] += dt * safe_free
        last = t
        k = e["kind"]
        if k == "submit":
            queued[e["job"]] = "new"
            continue
        if k == "end":
            break
        i = job_of.get(e.get("req_id") or "")
        if k == "host.joined":
            alive.add(e["host_id"])
        elif k == "host.evicting":
            evicting.add(e["host_id"])
        elif k == "host.evicted":
            evicting.discard(e["host_id"])
            alive.discard(e["host_id"])
        elif k == "host.restored":
            evicting.discard(e["host_id"])
        elif i is None:
            continue
        elif k == "app.placed":
            queued.pop(i, None)
            on[i] = defaultdict(int, {h: int(c) for h, c in e["data"]["hosts"].items()})
        elif k == "migration.moved":
            for mv in e["data"]["moves"]:
                on[i][mv["source"]] -= 1
                on[i][mv["target"]] += 1
        elif k == "migration.frozen":
            on.pop(i, None)
            queued[i] = "frozen"
        elif k == "app.finished":
            on.pop(i, None)
    acc["total"] = end * 4 * slots_per_host
    acc["work"] = sum(trace[i][1] * trace[i][2] * 0.25 for i in range(len(trace)))
    return dict(acc)


def report(path: Path) -> tuple[dict[int, dict[str, Any]], dict[str, float], float]:
    d = load(path)
    jobs = timelines(d)
    acc = slots(d)
    end = max(d["done"].values())
    print(f"## {path.name}: makespan {end:.1f} s")
    print("job size nominal | submit placed wait | frozen(s) moves move_s | finished span overhead(span-nominal-frozen)")
    for i in sorted(jobs):
        j = jobs[i]
        frozen = sum((b if b is not None else j["finished"]) - a for a, b in j["frozen"])
        span = j["finished"] - j["placed"]
        j["wait"], j["frozen_s"], j["span"] = j["placed"] - j["submit"], frozen, span
        print(f"{i:3d} {j['size']:3d} {j['nominal']:6.1f} | {j['submit']:5.1f} {j['placed']:5.1f} {j['wait']:5.1f} | "
              f"{frozen:5.1f} {j['moves']:2d} {j['move_s']:4.2f} | {j['finished']:5.1f} {span:5.1f} "
              f"{span - j['nominal'] - frozen:5.2f}")
    print("slot-seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in sorted(acc.items())))
    return jobs, acc, end


def main() -> int:
    runs = [report(Path(p)) for p in sys.argv[1:]]
    if len(runs) == 2:
        (a, sa, ea), (b, sb, eb) = runs
        print(f"## evicted - calm: makespan {eb - ea:+.1f} s ({eb / ea:.2f}×)")
        for k in sorted(set(sa) | set(sb)):
            print(f"  {k}: {sb.get(k, 0) - sa.get(k, 0):+.0f} slot-s")
        print("job: wait delta, frozen, span overhead delta, finish delta")
        for i in sorted(a):
            print(f"{i:3d}: {b[i]['wait'] - a[i]['wait']:+5.1f} {b[i]['frozen_s']:5.1f} "
                  f"{(b[i]['span'] - b[i]['frozen_s']) - a[i]['span']:+5.2f} {b[i]['finished'] - a[i]['finished']:+5.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
