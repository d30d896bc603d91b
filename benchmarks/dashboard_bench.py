"""The dashboard and /metrics at cluster size: 64 hosts × 8 slots and 1,000 apps.

Not a timed test: it prints figures (and, with ``--screenshots DIR``, saves the dashboard's main views).
``python benchmarks/dashboard_bench.py [--hosts 64] [--slots 8] [--apps 1000] [--screenshots docs/img]``

How the cluster is faked: an in-process planner (PlannerServer on uvloop, its real HTTP server, journal
and event feed) whose state is driven directly, as its frame handlers would drive it: 64 hosts register
and connect 8 warm granules each, MPI-style worlds (gangs of 2 to 16) are placed until about 90% of the
slots are busy, ~950 function apps run one call each and end (1 in 17 fails), and a few big worlds wait
in the queue. No worker or granule process exists: the actions the state returns are not carried out
(there is nobody to send them to), but everything the dashboard and /metrics read is real planner
state, and the events go through the real feed, journal and streams.

What is measured, with Debian's Chromium (headless, Playwright):
- first paint: from the navigation's start (the page is already signed in) to the dashboard fully
  rendered from its first snapshot (grid, apps table, queue, timelines), and the browser's
  first-contentful-paint for reference;
- update latency: the planner's state records an event (an eviction notice, then its lifting: the
  host is marked in the grid) at wall time t0; the page records the wall time at which it has shown
  the event (events list rendered) and the next grid render. Same machine, same clock;
- /metrics: the wall time of a scrape (HTTP round trip included), median and p95 of 50; the same for
  the dashboard's full snapshot (``/ui/api/snapshot``: what a page gets first).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from granny.config import Config
from granny.planner.event_feed import sample
from granny.planner.http import start_http
from granny.planner.server import PlannerServer
from granny.planner.state import Dispatch

TOKEN = "bench-token"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def populate(p: PlannerServer, hosts: int, slots: int, apps: int, seed: int = 1) -> dict[str, int]:
    st = p.state
    now = p.loop.time()
    for i in range(hosts):
        hid = f"h{i:02d}"
        st.register_host(hid, slots, now)
        for g in range(slots):
            st.granule_connected(hid, f"{hid}-g{g}", None)
    rng = random.Random(seed)
    worlds = used = 0
    while used < hosts * slots * 0.9 - 16:
        n = rng.choice([2, 4, 4, 8, 8, 16])
        st.submit(f"w{worlds}", f"mpi-{worlds:04d}", n, app_kind="script", name="lulesh.py", gang=True)
        worlds, used = worlds + 1, used + n
    queued, tolerant = 6, 3
    calls = apps - worlds - queued - tolerant
    for j in range(calls):
        rid, app = f"c{j}", f"fn-{j:04d}"
        (d,) = [a for a in st.submit(rid, app, 1, name="score") if isinstance(a, Dispatch)]
        st.task_done(d.granule_id, rid, 0, ok=j % 17 != 0)
        st.close_app(app)
    free = hosts * slots - used
    for q in range(queued):
        st.submit(f"q{q}", f"big-{q}", free + 8 * (q + 1), app_kind="script", name="cfd.py", gang=True)
    for k, tolerance in enumerate((40.0, 300.0, -1.0)):  # delay-tolerant calls wait behind the FIFO queue
        st.submit(f"d{k}", f"batch-{k}", 1, name="reindex", tolerance=tolerance, key="reindex", now=now)
    return {"worlds": worlds, "calls": calls, "queued": queued + tolerant, "busy": used}


def fake_history(p: PlannerServer) -> None:
    """An hour of timeline samples and a few marked events, for the screenshots only (synthetic)."""
    now = time.time()
    total = sum(h.slots for h in p.state.hosts.values())
    links = sample(p)["links"]
    p.feed.samples.clear()
    for i in range(720):
        t = now - 3600 + i * 5
        busy = int(total * (0.55 + 0.35 * math.sin(i / 90) ** 2))
        p.feed.samples.append({"t": t, "busy": busy, "idle": total - busy, "links": int(links * (0.7 + 0.3 * math.cos(i / 70))),
                               "queue": max(0, int(12 * math.sin(i / 50)))})
    marks = [(900, "host.evicting", "host h07: eviction notice, taken back in 60s"),
             (960, "migration.moved", "moved ranks 4-7 from h07 to h12 (spot)"),
             (1500, "migration.frozen", "frozen: the state of all 8 ranks is stored"),
             (1800, "migration.thawed", "thawed: all 8 ranks run again after 300.0 s frozen"),
             (2500, "host.died", "host h21 stopped sending heartbeats"),
             (2510, "migration.recovered", "recovered: all 16 ranks run again from checkpoint 3")]
    for ago, kind, text in marks:
        p.feed.last_id += 1
        p.feed.recent.append({"id": p.feed.last_id, "at": now - 3600 + ago, "kind": kind, "text": text, "app_id": "",
                              "req_id": "", "host_id": "", "data": {}})


class Planner(threading.Thread):
    def __init__(self, data: Path, hosts: int, slots: int, apps: int) -> None:
        super().__init__(daemon=True)
        self.data, self.size = data, (hosts, slots, apps)
        self.ready = threading.Event()
        self.port = 0
        self.shape: dict[str, int] = {}

    def run(self) -> None:
        import uvloop

        uvloop.run(self._main())

    async def _main(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.p = PlannerServer(Config(data_dir=self.data, heartbeat_timeout=3600.0), "secret", TOKEN)
        _, self.port = await start_http(self.p, "127.0.0.1", 0)
        self.shape = populate(self.p, *self.size)
        self.ready.set()
        await asyncio.Event().wait()

    def call(self, fn: Callable[[], Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(_call(fn), self.loop).result(timeout=60)


async def _call(fn: Callable[[], Any]) -> Any:
    return fn()


def measure(args: argparse.Namespace) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    planner = Planner(Path(tempfile.mkdtemp(prefix="granny-dash-")), args.hosts, args.slots, args.apps)
    planner.start()
    planner.ready.wait(120)
    base = f"http://127.0.0.1:{planner.port}"
    out: dict[str, Any] = {"hosts": args.hosts, "slots": args.slots, "apps": args.apps, **planner.shape}
    with httpx.Client(base_url=base, timeout=30, headers={"Authorization": f"Bearer {TOKEN}"}) as http:
        scrapes = []
        for _ in range(50):
            t = time.perf_counter()
            r = http.get("/metrics")
            scrapes.append((time.perf_counter() - t) * 1000)
            assert r.status_code == 200
        out["metrics_ms"] = {"median": round(statistics.median(scrapes), 2),
                             "p95": round(sorted(scrapes)[int(len(scrapes) * 0.95)], 2), "bytes": len(r.content)}
        snaps = []
        http.cookies.clear()
        login = http.post("/ui/login", data={"token": TOKEN})
        cookie = login.cookies["granny_session"]
        for _ in range(20):
            time.sleep(0.06)  # past ui.FRESH: each request builds the state anew (not a timing sync)
            t = time.perf_counter()
            r = http.get("/ui/api/snapshot", cookies={"granny_session": cookie})
            snaps.append((time.perf_counter() - t) * 1000)
        out["snapshot_ms"] = {"median": round(statistics.median(snaps), 2), "bytes": len(r.content)}

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS)
        # The probes below are evaluated scripts, which the dashboard's Content-Security-Policy refuses.
        ctx = browser.new_context(viewport={"width": 1400, "height": 1000}, bypass_csp=True)
        page = ctx.new_page()
        page.goto(f"{base}/ui/")
        page.fill("#token", TOKEN)
        page.click("button[type=submit]")
        page.wait_for_selector("body[data-ready='1']", timeout=60_000)
        paints = []
        fcps = []
        for _ in range(args.runs):
            page.reload()
            page.wait_for_selector("body[data-ready='1']", timeout=60_000)
            paints.append(page.evaluate("() => window.__granny.firstRender - performance.timeOrigin"))
            fcps.append(page.evaluate(
                "() => (performance.getEntriesByName('first-contentful-paint')[0] || {startTime: NaN}).startTime"))
        out["first_paint_ms"] = {"median": round(statistics.median(paints), 1), "max": round(max(paints), 1),
                                 "fcp_median": round(statistics.median(fcps), 1)}

        lat_events, lat_grid = [], []
        st = planner.p.state
        for i in range(args.runs * 2):
            host = f"h{(i // 2) % args.hosts:02d}"
            page.wait_for_timeout(300)  # apart, so that each update is its own push (not a timing sync)
            want = planner.call(lambda: planner.p.feed.last_id) + 1
            t0 = planner.call(lambda h=host, i=i: (time.time(), st.evict(h, planner.p.loop.time(), 600.0) if i % 2 == 0
                                                   else st.restore_host(h))[0]) * 1000
            page.wait_for_function(f"() => window.__granny.lastEventId >= {want}", timeout=30_000)
            shown = page.evaluate(f"() => window.__granny.events[{want}]")
            page.wait_for_function(f"() => window.__granny.renders.some(t => t >= {shown})", timeout=30_000)
            grid = page.evaluate(f"() => window.__granny.renders.find(t => t >= {shown})")
            lat_events.append(shown - t0)
            lat_grid.append(grid - t0)
        out["update_ms"] = {"event_median": round(statistics.median(lat_events), 1),
                            "event_max": round(max(lat_events), 1),
                            "grid_median": round(statistics.median(lat_grid), 1), "grid_max": round(max(lat_grid), 1)}

        if args.screenshots:
            shots = Path(args.screenshots)
            shots.mkdir(parents=True, exist_ok=True)
            planner.call(lambda: (fake_history(planner.p), st.evict("h07", planner.p.loop.time(), 45.0)))
            page.reload()
            page.wait_for_selector("body[data-ready='1']")
            page.screenshot(path=str(shots / "dashboard-overview.png"))
            page.uncheck("#filters input[value=done]")  # 900 ended apps: too long a picture
            page.locator("#apps").screenshot(path=str(shots / "dashboard-apps.png"))
            page.locator("#queue").screenshot(path=str(shots / "dashboard-queue.png"))
            page.click("#apps-body tr[data-app='mpi-0003']")
            page.wait_for_selector("#app-detail table")
            page.locator("#app-dialog").screenshot(path=str(shots / "dashboard-app.png"))
            login = browser.new_page(viewport={"width": 900, "height": 500})
            login.goto(f"{base}/ui/")
            login.screenshot(path=str(shots / "dashboard-login.png"))
        browser.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hosts", type=int, default=64)
    ap.add_argument("--slots", type=int, default=8)
    ap.add_argument("--apps", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    ap.add_argument("--screenshots", default="", metavar="DIR", help="save the main views there (PNG)")
    ap.add_argument("--json", default="", metavar="FILE", help="also write the figures there")
    args = ap.parse_args()
    out = measure(args)
    print(json.dumps(out, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
