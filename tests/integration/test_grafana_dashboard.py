"""deploy/grafana/granny.json charts only metrics that a real planner's /metrics serves."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx

from granny.cluster import LocalCluster

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "granny.json"


def served_names(text: str) -> set[str]:
    """Every sample name in a Prometheus text exposition (histograms: _bucket, _sum, _count)."""
    names = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            names |= {name} | ({f"{name}_{s}" for s in ("bucket", "sum", "count")} if kind == "histogram" else set())
    return names


def test_every_panel_queries_metrics_the_planner_serves(cluster: LocalCluster) -> None:
    reply = httpx.get(f"http://{cluster.http_address}/metrics", headers={"Authorization": f"Bearer {cluster.token}"},
                      timeout=30)
    assert reply.status_code == 200, reply.text
    served = served_names(reply.text)
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert len(exprs) >= 10
    used = {name for e in exprs for name in re.findall(r"\bgranny_\w+", e)}
    assert used and used <= served, f"not served by /metrics: {sorted(used - served)}"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
