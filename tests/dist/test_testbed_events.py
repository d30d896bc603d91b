"""Events and the dashboard on the namespace testbed: a host cut off past the heartbeat timeout is
``host.died`` in ``GET /v1/events`` and struck through in the dashboard's grid (headless Chromium); when
the network heals it is ``host.joined`` again (a new incarnation) and alive in the grid."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from granny.testbed import Testbed

from ..integration.test_dashboard import CHROMIUM, CHROMIUM_ARGS
from .conftest import wait_for


def events(http: str, token: str, since: int = 0) -> list[dict[str, Any]]:
    resp = httpx.get(f"http://{http}/v1/events", params={"since": since}, timeout=30,
                     headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 200, resp.text
    return list(resp.json())


@pytest.mark.testbed(hosts=2, slots=2, heartbeat_timeout=2.0)
def test_a_host_cut_off_is_an_event_and_marked_dead_on_the_dashboard(testbed: Testbed) -> None:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no {CHROMIUM}: apt-get install chromium chromium-driver")
    from playwright.sync_api import expect, sync_playwright

    http = json.loads((Path(testbed.state.data_dir) / "planner.json").read_text())["http"]
    joined = {e["host_id"] for e in events(http, testbed.token) if e["kind"] == "host.joined"}
    assert joined == {"h1", "h2"}
    last = events(http, testbed.token)[-1]["id"]

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(f"http://{http}/ui/")
            page.fill("#token", testbed.token)
            page.click("button[type=submit]")
            expect(page.locator("body[data-ready='1']")).to_have_count(1, timeout=30_000)
            expect(page.locator(".host:not(.dead)")).to_have_count(2)
            testbed.cut("h1")
            try:
                died = wait_for(lambda: [e for e in events(http, testbed.token, last) if e["kind"] == "host.died"],
                                timeout=30, what="h1 declared dead")
                assert died[0]["host_id"] == "h1" and "heartbeats" in died[0]["text"]
                expect(page.locator(".host.dead[data-host='h1']")).to_have_count(1, timeout=10_000)
                expect(page.locator("#event-list li[data-kind='host.died']")).to_have_count(1)
            finally:
                testbed.restore("h1")
            back = wait_for(lambda: [e for e in events(http, testbed.token, died[0]["id"])
                                     if e["kind"] == "host.joined"], timeout=60, what="h1 registered again")
            assert back[0]["host_id"] == "h1" and back[0]["data"]["incarnation"] == 2
            expect(page.locator(".host.dead")).to_have_count(0, timeout=10_000)
        finally:
            browser.close()
