"""``GET /metrics`` on a real planner: Prometheus text that a Prometheus parser reads, behind the token."""

from __future__ import annotations

import urllib.error
import urllib.request
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

import granny
from granny.cluster import LocalCluster

from ..polling import wait_for


def scrape(cluster: LocalCluster, token: str | None) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    req = urllib.request.Request(f"http://{cluster.http_address}/metrics", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_metrics_report_slots_calls_and_latency(cluster: LocalCluster, client: granny.Client) -> None:
    assert [client.submit(pow, 2, i).result(timeout=60) for i in range(5)] == [1, 2, 4, 8, 16]
    with pytest.raises(ZeroDivisionError):
        client.submit(divmod, 1, 0).result(timeout=60)

    def counted() -> dict[str, Any] | None:  # a result may reach the client (its lane) before the planner
        status, text = scrape(cluster, cluster.token)
        assert status == 200
        families = {f.name: f for f in text_string_to_metric_families(text)}
        done = [s for s in families["granny_call_latency_seconds"].samples if s.name.endswith("_count")]
        return families if done and done[0].value >= 6 else None

    families: dict[str, Any] = wait_for(counted, timeout=30, what="the six results counted")
    slots = {(s.labels["host"], s.labels["state"]): s.value for s in families["granny_host_slots"].samples}
    assert slots[("local", "total")] == cluster.slots
    calls = {s.labels["outcome"]: s.value for s in families["granny_calls"].samples if s.name == "granny_calls_total"}
    assert calls["submitted"] >= 6 and calls["succeeded"] >= 5 and calls["failed"] >= 1
    latency = {s.name: s for s in families["granny_call_latency_seconds"].samples}
    assert latency["granny_call_latency_seconds_count"].value >= 6
    assert "granny_migration_events" in families and "granny_queue_requests" in families
    for family in ("granny_migrations", "granny_freezes", "granny_evictions", "granny_recoveries", "granny_events"):
        assert family in families, family
    commits = {s.name: s.value for s in families["granny_journal_commit_seconds"].samples}
    assert commits["granny_journal_commit_seconds_count"] >= 1  # the calls' results were journaled
    assert scrape(cluster, None)[0] == 401 and scrape(cluster, "wrong")[0] == 401
