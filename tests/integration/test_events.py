"""Planner events on a real cluster: ``GET /v1/events`` (a JSON list and a live SSE stream), ``granny events``
(and ``--follow``), the journal's retention bound, and the event counters in ``/metrics``."""

from __future__ import annotations

import asyncio
import json
import queue
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import httpx

from granny.cluster import LocalCluster
from granny.config import Config
from granny.planner.events import Happened
from granny.planner.server import PlannerServer

from ..polling import wait_for
from .test_cli import clean_env, script
from .test_cli import granny as granny_cli


def api(cluster: LocalCluster) -> httpx.Client:
    return httpx.Client(base_url=f"http://{cluster.http_address}", timeout=30,
                        headers={"Authorization": f"Bearer {cluster.token}"})


def listed(cluster: LocalCluster, since: int = 0, **params: str) -> list[dict[str, Any]]:
    with api(cluster) as http:
        resp = http.get("/v1/events", params={"since": since, **params})
    assert resp.status_code == 200, resp.text
    return list(resp.json())


def read_sse(resp: httpx.Response, out: queue.Queue[dict[str, Any]]) -> None:
    try:
        for line in resp.iter_lines():
            if line.startswith("data: "):
                out.put(json.loads(line[6:]))
    except (httpx.ReadError, httpx.StreamClosed):  # the test is done with it and closed it
        pass


def test_events_are_listed_and_streamed_live(cluster: LocalCluster, tmp_path: Path) -> None:
    joined = wait_for(lambda: [e for e in listed(cluster) if e["kind"] == "host.joined"], what="host.joined")
    assert joined[0]["host_id"] == "local" and joined[0]["data"]["slots"] == cluster.slots
    last = listed(cluster)[-1]["id"]
    assert listed(cluster, since=last) == []

    got: queue.Queue[dict[str, Any]] = queue.Queue()
    with api(cluster) as http, http.stream("GET", "/v1/events", params={"since": last},
                                           headers={"Accept": "text/event-stream"}) as resp:
        assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/event-stream")
        threading.Thread(target=read_sse, args=(resp, got), daemon=True).start()
        world = script(tmp_path, "print('hi')\n")
        proc = granny_cli("run", "-n", "2", str(world), env=clean_env(GRANNY_ADDRESS=cluster.address,
                                                                     GRANNY_TOKEN=cluster.token))
        assert proc.returncode == 0, proc.stderr
        seen: list[str] = []
        while "app.finished" not in seen:
            ev = got.get(timeout=30)
            assert ev["id"] > last
            seen.append(ev["kind"])
    assert seen == ["app.queued", "app.placed", "app.finished"]
    assert [e["kind"] for e in listed(cluster, since=last)] == seen  # the same ids, from the list
    assert [e["kind"] for e in listed(cluster, kind="app.placed,host.joined")] == ["host.joined", "app.placed"]
    finished = listed(cluster)[-1]["id"]
    # A reconnecting EventSource sends the last id it saw: the stream replays what came after it.
    with api(cluster) as http, http.stream("GET", "/v1/events", headers={"Accept": "text/event-stream",
                                                                        "Last-Event-ID": str(finished - 1)}) as resp:
        replay = next(line for line in resp.iter_lines() if line.startswith("id: "))
    assert replay == f"id: {finished}"


def test_granny_events_lists_and_follows(cluster: LocalCluster) -> None:
    env = clean_env(GRANNY_ADDRESS=cluster.address, GRANNY_TOKEN=cluster.token)
    wait_for(lambda: listed(cluster), what="a first event")
    proc = granny_cli("events", "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert rows[0]["kind"] == "host.joined" and rows[0]["host_id"] == "local"
    last = rows[-1]["id"]

    follow = subprocess.Popen([sys.executable, "-m", "granny", "events", "--follow", "--since", str(last)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines: queue.Queue[str] = queue.Queue()
        reader = threading.Thread(target=lambda: [lines.put(x) for x in follow.stdout or []], daemon=True)
        reader.start()
        with api(cluster) as http:
            assert http.post("/v1/hosts/local/evict", json={"grace": 600}).status_code == 200
            assert http.post("/v1/hosts/local/restore").status_code == 200
        first, second = lines.get(timeout=30), lines.get(timeout=30)
        assert "host.evicting" in first and "eviction notice" in first and f"{last + 1:>6}" in first
        assert "host.restored" in second
    finally:
        follow.terminate()
        follow.wait(timeout=30)
        reader.join(timeout=30)  # at EOF: the pipes can be closed
        for pipe in (follow.stdout, follow.stderr):
            if pipe is not None:
                pipe.close()

    metrics = httpx.get(f"http://{cluster.http_address}/metrics", headers={"Authorization": f"Bearer {cluster.token}"})
    assert 'granny_events_total{kind="host.evicting"} 1.0' in metrics.text
    assert "granny_journal_commit_seconds_count" in metrics.text and "granny_evictions_total 0.0" in metrics.text


def test_the_journal_keeps_at_most_events_max_events(tmp_path: Path) -> None:
    async def main() -> tuple[int, list[int], list[int]]:
        p = PlannerServer(Config(data_dir=tmp_path, events_max=5), "secret", "token")
        try:
            for i in range(40):
                p.state.events.add(Happened("host.joined", f"event {i}", host_id=f"h{i}"))
                p.feed.flush()
            await p.committed()
            rows = p.journal.query("SELECT id FROM events ORDER BY id")
            return len(rows), [r[0] for r in rows], [e["id"] for e in await p.feed.since(0)]
        finally:
            p.close()

    count, ids, listed_ids = asyncio.run(main())
    assert ids[-1] == 40 and count <= 10  # a pass every events_max events: never more than twice the bound
    assert listed_ids[-5:] == list(range(36, 41))  # the newest are still listed
