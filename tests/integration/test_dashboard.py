"""The web dashboard on a real planner: the login and its cookie over plain HTTP, then in a real browser
(Debian's Chromium, headless, driven by Playwright): an app's slots turn coloured, then free again."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from granny.cluster import LocalCluster

from .test_cli import clean_env, granny, script

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
FREE = "rgb(228, 228, 224)"  # --free in style.css


def test_the_token_is_traded_once_for_an_http_only_session_cookie(cluster: LocalCluster) -> None:
    with httpx.Client(base_url=f"http://{cluster.http_address}", timeout=30) as http:
        page = http.get("/ui/")
        assert page.status_code == 200 and b'action="/ui/login"' in page.content and b'name="token"' in page.content
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert http.get("/ui/api/snapshot").status_code == 401
        wrong = http.post("/ui/login", data={"token": "not-it"})
        assert wrong.status_code == 401 and "set-cookie" not in wrong.headers

        ok = http.post("/ui/login", data={"token": cluster.token})
        assert ok.status_code == 303 and ok.headers["location"] == "/ui/"  # no token in any URL
        cookie = ok.headers["set-cookie"]
        assert re.match(r"granny_session=[\w-]{40,};", cookie) and cluster.token not in cookie
        assert all(part in cookie for part in ("HttpOnly", "SameSite=Strict", "Path=/ui"))
        snap = http.get("/ui/api/snapshot")
        assert snap.status_code == 200 and snap.json()["hosts"][0]["host_id"] == "local"
        assert b'id="grid"' in http.get("/ui/").content
        assert http.get("/v1/apps").status_code == 401  # the cookie is the dashboard's, not the API's

        assert http.post("/ui/logout").status_code == 303
        assert http.get("/ui/api/snapshot").status_code == 401


@pytest.fixture
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():  # scripts/test installs it (apt-get install chromium) when run as root
        pytest.skip(f"no {CHROMIUM}: apt-get install chromium chromium-driver")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def test_in_a_browser_an_apps_slots_turn_coloured_then_free(cluster: LocalCluster, browser: Any,
                                                            tmp_path: Path) -> None:
    from playwright.sync_api import expect

    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.goto(f"http://{cluster.http_address}/ui/")
    page.fill("#token", cluster.token)
    page.click("button[type=submit]")
    expect(page.locator("body[data-ready='1']")).to_have_count(1, timeout=30_000)
    assert cluster.token not in page.url
    expect(page.locator("#live")).to_have_text("live")
    expect(page.locator(".host[data-host='local'] .slot")).to_have_count(cluster.slots)
    api = httpx.Client(base_url=f"http://{cluster.http_address}", timeout=30,
                       headers={"Authorization": f"Bearer {cluster.token}"})
    assert api.post("/v1/hosts/local/evict", json={"grace": 600}).status_code == 200
    expect(page.locator(".host.evicting[data-host='local']")).to_have_count(1)  # marked while under notice
    assert api.post("/v1/hosts/local/restore").status_code == 200
    expect(page.locator(".host.evicting")).to_have_count(0)
    api.close()

    go = tmp_path / "go"
    job = script(tmp_path, f"""
        import os, time
        while not os.path.exists({str(go)!r}):  # holds its slot until the test lets it go
            time.sleep(0.02)
        print("done")
    """, name="job<b>x<b>.py")  # markup in a name is shown as text, never parsed
    env = clean_env(GRANNY_ADDRESS=cluster.address, GRANNY_TOKEN=cluster.token)
    submitted = granny("submit", "-n", "2", str(job), env=env)
    assert submitted.returncode == 0, submitted.stderr
    app_id = submitted.stdout.split()[-1]

    held = page.locator(f".slot.busy[data-app='{app_id}']")
    expect(held).to_have_count(2, timeout=30_000)
    expect(held.first).not_to_have_css("background-color", FREE)
    expect(page.locator(f"#apps-body tr[data-app='{app_id}'] .state")).to_have_text("running")
    expect(page.locator("#event-list li[data-kind='app.placed']")).to_have_count(1)
    row = page.locator(f"#apps-body tr[data-app='{app_id}']")
    expect(row).to_contain_text("job<b>x<b>.py")
    expect(page.locator("#apps-body b, #event-list b")).to_have_count(0)
    page.screenshot(path=str(tmp_path / "busy.png"))

    go.write_text("")
    expect(page.locator(".slot.busy")).to_have_count(0, timeout=30_000)
    expect(page.locator(f"#apps-body tr[data-app='{app_id}'] .state")).to_have_text("done", timeout=30_000)
    page.click(f"#apps-body tr[data-app='{app_id}']")
    expect(page.locator("#app-detail h2")).to_contain_text(app_id)
    expect(page.locator("#app-detail pre")).to_contain_text("done", timeout=30_000)  # its logs
    assert errors == []
