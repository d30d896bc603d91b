"""Shared machinery for the peer-comparison benchmarks (not a test suite).

Theory of operation
-------------------
A benchmark has a *driver* and *children*. The driver launches every system under test in its own
fresh child process (``python <bench>.py --child SYSTEM --out FILE``), REPS times, interleaved
round-robin with a rotating order so that slow drift and background noise spread evenly over the
systems. A child measures one system and writes a JSON object ``{metric: {"median": ...}, "_meta":
{...}}``; it rewrites the file after every metric so a crash still leaves the earlier figures.

Each child runs with a unique ``GRANNY_BENCH_TAG`` in its environment. Every process it starts
(Ray's raylet and GCS, Dask's nanny/workers, granny's planner/workers) inherits the tag, so after the
child exits the driver can find stragglers by that tag, and ends them by pid before the next system
starts: no system is measured while another one's daemons are still running.

The driver aggregates the **median of the per-launch medians** (and min/max over launches); ratios
are formed from those aggregates, and paired per-launch ratios (same rep) are kept for the spread.
"""

from __future__ import annotations

import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

now = time.perf_counter
TAG_ENV = "GRANNY_BENCH_TAG"


# --------------------------------------------------------------------------------------------- child side
def stats(samples: Iterable[float]) -> dict[str, float]:
    a = sorted(float(x) for x in samples)
    if not a:
        raise ValueError("no samples")
    return {
        "median": statistics.median(a),
        "p10": a[int(0.1 * (len(a) - 1))],
        "p90": a[int(0.9 * (len(a) - 1))],
        "min": a[0],
        "n": len(a),
    }


def timed(
    fn: Callable[[], object], *, iters: int, warm: int, budget_s: float, min_iters: int = 10
) -> dict[str, float]:
    """Median-oriented timing of ``fn()``: ``warm`` untimed calls, then up to ``iters`` timed calls,
    stopping early once ``budget_s`` has passed and at least ``min_iters`` samples exist (so a 10 ms
    system and a 0.1 ms system both finish in bounded time)."""
    for _ in range(warm):
        fn()
    out: list[float] = []
    start = now()
    while len(out) < iters and (len(out) < min_iters or now() - start < budget_s):
        t0 = now()
        fn()
        out.append(now() - t0)
    return stats(out)


def single(value: float) -> dict[str, float]:
    return {"median": float(value), "n": 1}


class ChildResult:
    """Accumulates one launch's metrics and rewrites ``path`` after each one (crash-tolerant)."""

    def __init__(self, path: str | None, system: str) -> None:
        self.path = path
        self.data: dict[str, Any] = {"_meta": {"system": system, "pid": os.getpid()}}

    def put(self, key: str, value: dict[str, Any]) -> None:
        self.data[key] = value
        self.flush()

    def meta(self, **kw: Any) -> None:
        self.data["_meta"].update(kw)
        self.flush()

    def flush(self) -> None:
        if self.path:
            tmp = self.path + ".part"
            with open(tmp, "w") as f:
                json.dump(self.data, f, indent=1)
            os.replace(tmp, self.path)


# -------------------------------------------------------------------------------------------- driver side
@dataclass
class Launch:
    system: str
    rep: int
    rc: int | None
    wall_s: float
    data: dict[str, Any]
    error: str | None = None
    stragglers: list[str] = field(default_factory=list)


def _tagged_pids(tag: str) -> list[tuple[int, str]]:
    """Processes (other than us) whose environment carries ``tag``; /proc only, no psutil needed."""
    found = []
    needle = f"{TAG_ENV}={tag}".encode()
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == os.getpid():
            continue
        try:
            with open(f"/proc/{d}/environ", "rb") as f:
                if needle not in f.read().split(b"\0"):
                    continue
            with open(f"/proc/{d}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        found.append((int(d), cmd[:120]))
    return found


def reap_tagged(tag: str, grace_s: float = 10.0) -> list[str]:
    """Wait up to ``grace_s`` for the tagged processes to exit on their own; then SIGTERM, then
    SIGKILL the remaining ones, each by pid. Returns descriptions of the ones we had to end."""
    deadline = now() + grace_s
    left = _tagged_pids(tag)
    while left and now() < deadline:
        time.sleep(0.1)
        left = _tagged_pids(tag)
    ended = []
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid, cmd in left:
            try:
                os.kill(pid, sig)
                if sig == signal.SIGTERM:
                    ended.append(f"{pid} {cmd}")
            except ProcessLookupError:
                pass
        t_end = now() + 3.0
        while left and now() < t_end:
            time.sleep(0.1)
            left = _tagged_pids(tag)
        if not left:
            break
    return ended


def run_child(
    script: Path,
    system: str,
    rep: int,
    workdir: Path,
    timeout_s: float,
    extra_args: list[str],
    env_extra: dict[str, str] | None = None,
) -> Launch:
    """Run one launch of ``system`` in a fresh interpreter whose cwd is a fresh scratch folder."""
    out = workdir / f"{system}.rep{rep}.json"
    log = workdir / f"{system}.rep{rep}.log"
    cwd = workdir / f"{system}.rep{rep}.cwd"
    cwd.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex
    env = dict(os.environ, **(env_extra or {}))
    env[TAG_ENV] = tag
    cmd = [sys.executable, str(script), "--child", system, "--out", str(out), *extra_args]
    t0 = now()
    rc: int | None
    error = None
    with open(log, "w") as lf:
        proc = subprocess.Popen(
            cmd, stdout=lf, stderr=subprocess.STDOUT, env=env, cwd=str(cwd), start_new_session=True
        )
        try:
            rc = proc.wait(timeout=timeout_s)
        except KeyboardInterrupt:
            # The child runs in its own session (so Ray/Dask daemons cannot signal our group):
            # forward the interrupt, then make sure nothing of it survives us.
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
            reap_tagged(tag, grace_s=2.0)
            raise
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            rc = None
            error = f"timed out after {timeout_s:.0f} s"
    wall = now() - t0
    stragglers = reap_tagged(tag)
    data: dict[str, Any] = {}
    if out.exists():
        try:
            data = json.loads(out.read_text())
        except ValueError as e:
            error = error or f"unreadable result file: {e}"
    if rc not in (0, None) and error is None:
        error = f"exit code {rc}"
    if error:
        tail = log.read_text(errors="replace").strip().splitlines()[-6:]
        error += ": " + " | ".join(line.strip() for line in tail)[-600:]
    return Launch(system, rep, rc, wall, data, error, stragglers)


def rotate(seq: list[str], k: int) -> list[str]:
    if not seq:
        return seq
    k %= len(seq)
    return seq[k:] + seq[:k]


def aggregate(launches: list[Launch], system: str, metric: str) -> dict[str, Any] | None:
    vals = [
        (ln.rep, float(ln.data[metric]["median"]))
        for ln in launches
        if ln.system == system and isinstance(ln.data.get(metric), dict) and "median" in ln.data[metric]
    ]
    if not vals:
        return None
    v = [x for _, x in vals]
    return {
        "median": statistics.median(v),
        "min": min(v),
        "max": max(v),
        "n": len(v),
        "per_launch": dict(vals),
    }


def paired_ratios(a: dict[str, Any] | None, b: dict[str, Any] | None) -> list[float]:
    if not a or not b:
        return []
    pa, pb = a["per_launch"], b["per_launch"]
    return [pa[r] / pb[r] for r in sorted(pa) if r in pb and pb[r]]


# ------------------------------------------------------------------------------------------- formatting
def fmt_time(s: float | None) -> str:
    if s is None:
        return "–"
    if s < 1e-3:
        return f"{s * 1e6:.3g} µs"
    if s < 1:
        return f"{s * 1e3:.3g} ms"
    return f"{s:.3g} s"


def fmt_rate(r: float | None) -> str:
    if r is None:
        return "–"
    if r >= 1e6:
        return f"{r / 1e6:.3g} M/s"
    if r >= 1e3:
        return f"{r / 1e3:.3g} k/s"
    return f"{r:.3g}/s"


def fmt_ratio(x: float | None) -> str:
    if x is None:
        return "–"
    if x >= 100:
        return f"{x:.0f}×"
    if x >= 10:
        return f"{x:.1f}×"
    return f"{x:.2g}×" if x < 1 else f"{x:.2f}×"


def fmt_range(f: Callable[[float], str], lo: float, hi: float) -> str:
    """``f(lo)–f(hi)``, with a unit shared by both written once: "1.3–1.7 ms"."""
    a, b = f(lo), f(hi)
    ua, ub = a.lstrip("0123456789.-"), b.lstrip("0123456789.-")
    return f"{a[: len(a) - len(ua)].rstrip()}–{b}" if ua == ub and ua else f"{a}–{b}"


def md_table(header: list[str], rows: list[list[str]], align: str | None = None) -> str:
    align = align or ("l" + "r" * (len(header) - 1))
    sep = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(sep) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def machine_info() -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gib = round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu_model": cpu,
        "mem_gib": mem_gib,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def git_rev(repo: Path) -> str:
    try:
        rev = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
        return (rev or "no-commit") + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "?"


def replace_between_markers(path: Path, begin: str, end: str, body: str) -> bool:
    """Replace the text between two marker lines in ``path``; False if the markers are absent."""
    if not path.exists():
        return False
    text = path.read_text()
    i, j = text.find(begin), text.find(end)
    if i < 0 or j < i:
        return False
    path.write_text(text[: i + len(begin)] + "\n" + body.rstrip() + "\n" + text[j:])
    return True
