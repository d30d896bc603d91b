"""Fit the testbed's contention model on the measurements of ``calibrate_testbed.py --contention``.

    .venv/bin/python benchmarks/fit_contention.py [--raw benchmarks/results/calibrate_contention.json]
                                                  [--out src/granny/sim/calibration/testbed.json]

Model (``granny.sim.contention``): a job of kernel K whose solo runtime is T (the solo fit in
testbed.json, for its split) takes T x slowdown while ``busy`` slots run ranks beside ``background``
runnable processes of other work (measured during each batch by ``granny.experiment.loadprobe``):

    slowdown = 1 + share[K] * max(0, background + per_slot * busy - free) / cores

Each batch of the raw file (k identical jobs at once, 0, 2 or 4 CPU-bound processes beside them) is
one point: its jobs' mean seconds over T. ``per_slot`` and ``free`` are found on a grid; for each
pair, ``share`` per kernel is the least-squares fit through the origin (clipped at 0); the pair with
the smallest squared error wins. Writes the ``contention`` entry of testbed.json (keeping its
measurements and the release the calibration measured) and prints the errors with and without the model.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path
from typing import Any

from granny.experiment.calibration import TESTBED, load_model

RAW = Path(__file__).resolve().parent / "results" / "calibrate_contention.json"


def points(raw: dict[str, Any], testbed: Path) -> list[dict[str, Any]]:
    model = load_model(testbed)
    out = []
    for r in raw["runs"]:
        solo = model.runtime(r["kernel"], r["split"])
        out.append({"kernel": r["kernel"], "busy": r["busy"], "background": r["background"],
                    "ratio": statistics.mean(r["seconds"]) / solo})
    return out


def shares(pts: list[dict[str, Any]], per_slot: float, free: float, cores: int) -> tuple[dict[str, float], float]:
    """Per kernel the least-squares share for this (per_slot, free), and the total squared error."""
    by: dict[str, list[tuple[float, float]]] = {}
    for p in pts:
        x = max(0.0, p["background"] + per_slot * p["busy"] - free) / cores
        by.setdefault(p["kernel"], []).append((x, p["ratio"] - 1.0))
    fitted, sse = {}, 0.0
    for kernel, xy in by.items():
        sxx = sum(x * x for x, _ in xy)
        share = max(0.0, sum(x * y for x, y in xy) / sxx) if sxx else 0.0
        fitted[kernel] = share
        sse += sum((y - share * x) ** 2 for x, y in xy)
    return fitted, sse


def fit(pts: list[dict[str, Any]], cores: int) -> dict[str, Any]:
    best: tuple[float, float, float, dict[str, float]] | None = None
    for i in range(0, 31):  # per_slot 0 .. 1.5
        per_slot = i * 0.05
        for j in range(0, 41):  # free 0 .. 10
            free = j * 0.25
            share, sse = shares(pts, per_slot, free, cores)
            if best is None or sse < best[0] - 1e-12:
                best = (sse, per_slot, free, share)
    assert best is not None
    sse, per_slot, free, share = best
    return {"per_slot": per_slot, "free": free, "share": share, "sse": sse}


def errors(pts: list[dict[str, Any]], f: dict[str, Any], cores: int) -> dict[str, float]:
    """Relative error of the predicted runtime, without the model (ratio 1) and with it."""
    def predicted(p: dict[str, Any]) -> float:
        x = max(0.0, p["background"] + f["per_slot"] * p["busy"] - f["free"]) / cores
        return 1.0 + f["share"].get(p["kernel"], 0.0) * x

    solo = [abs(1.0 / p["ratio"] - 1.0) for p in pts]
    model = [abs(predicted(p) / p["ratio"] - 1.0) for p in pts]
    return {"solo_median": statistics.median(solo), "solo_max": max(solo),
            "model_median": statistics.median(model), "model_max": max(model),
            "rms_solo": math.sqrt(statistics.fmean(e * e for e in solo)),
            "rms_model": math.sqrt(statistics.fmean(e * e for e in model))}


def fit_moves(path: Path) -> dict[str, Any] | None:
    """A move's cost as a line in the background: least squares on the moves of calibrate_testbed.py --only-moves."""
    if not path.exists():
        return None
    raw = json.loads(path.read_text())
    pts = [(m["background"], m["cost"]) for m in raw["moves"] if m.get("cost") is not None]
    if len(pts) < 2:
        return None
    mx, my = statistics.fmean(x for x, _ in pts), statistics.fmean(y for _, y in pts)
    sxx = sum((x - mx) ** 2 for x, _ in pts)
    slope = max(0.0, sum((x - mx) * (y - my) for x, y in pts) / sxx) if sxx else 0.0
    return {"move": [round(my - slope * mx, 4), round(slope, 4)],
            "move_source": (f"benchmarks/fit_contention.py: least squares on {len(pts)} moves of a 2-rank world "
                            f"(calibrate_testbed.py --only-moves, beside 0/2/4 CPU-bound processes; background "
                            f"{min(x for x, _ in pts):.1f}-{max(x for x, _ in pts):.1f}; each: its runtime less the "
                            f"solo model's; {raw['when']})"),
            "move_costs": [[round(x, 3), round(y, 3)] for x, y in pts]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--raw", default=str(RAW))
    ap.add_argument("--out", default=str(TESTBED))
    args = ap.parse_args()
    raw = json.loads(Path(args.raw).read_text())
    cores = int(raw["cores"])
    pts = points(raw, Path(args.out))
    f = fit(pts, cores)
    err = errors(pts, f, cores)
    data = json.loads(Path(args.out).read_text())
    entry = data.get("contention", {})
    hogs = sorted({r.get("hogs", 0) for r in raw["runs"]})
    backgrounds = [r["background"] for r in raw["runs"]]
    entry.update({
        "model": "slowdown = 1 + share[kind] * max(0, background + per_slot * busy - free) / cores",
        "cores": cores, "share": {k: round(v, 4) for k, v in sorted(f["share"].items())},
        "per_slot": f["per_slot"], "free": f["free"], "release": raw.get("release", entry.get("release", 0.0)),
        "fit": {k: round(v, 4) for k, v in err.items()},
        "source": (f"benchmarks/fit_contention.py on {len(pts)} batches of benchmarks/results/calibrate_contention.json "
                   f"(calibrate_testbed.py --contention --hogs {','.join(map(str, hogs))}: k = 1..4 concurrent jobs beside "
                   f"{'/'.join(map(str, hogs))} CPU-bound processes, background {min(backgrounds):.1f}-{max(backgrounds):.1f} "
                   f"runnable; {raw['when']}); release: {raw.get('release_source', 'journal: last result -> next placement')}"),
    })
    moves = fit_moves(Path(args.raw).with_name("calibrate_moves.json"))
    if moves is not None:
        entry.update(moves)
    data["contention"] = entry
    Path(args.out).write_text(json.dumps(data, indent=2) + "\n")
    print(json.dumps({k: v for k, v in entry.items() if k not in ("measurements", "move_costs")}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
