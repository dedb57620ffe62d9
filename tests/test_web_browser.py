"""The web view in a real browser: Debian's Chromium, driven by Playwright, against
`slo-engine ui` serving the demo's month on a free loopback port (stopped by PID).

Chromium missing fails with an install hint; SLO_ENGINE_SKIP_BROWSER=1 skips locally.
SLO_ENGINE_SCREENSHOTS=DIR (as `make golden` sets) writes the docs' screenshots there.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from slo_engine import app
from slo_engine.demo.month import DemoData, demo_data, write_changes, write_events
from tests.support.binaries import found_or_fail
from tests.support.web_ui import serving_ui

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
UNTIL = datetime(2026, 5, 31, 12, tzinfo=UTC)
INSTALL_HINT = ("install Debian's chromium: apt-get update && apt-get install -y "
                "--no-install-recommends chromium (.ci/run does it); set "
                "SLO_ENGINE_SKIP_BROWSER=1 to skip these tests locally")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def demo() -> DemoData:
    return demo_data(app.validate([ROOT / "slo_definitions"]), UNTIL)


@pytest.fixture(scope="module")
def base_url(demo: DemoData, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`slo-engine ui` over the demo's files."""
    folder = tmp_path_factory.mktemp("ui")
    write_events(demo.ledger, folder / "events.csv")
    write_changes(demo.changes, folder / "changes.jsonl")
    with serving_ui([str(ROOT / "slo_definitions"), "--data", str(folder / "events.csv"),
                     "--changes", str(folder / "changes.jsonl"),
                     "--at", "2026-05-31T12:00:00Z"]) as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    found_or_fail(str(CHROMIUM) if CHROMIUM.exists() else None, str(CHROMIUM),
                  "SLO_ENGINE_SKIP_BROWSER", INSTALL_HINT)
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Browser, base_url: str) -> Iterator[Page]:
    """A fresh page that fails its test on any console error or request off 127.0.0.1."""
    context = browser.new_context(base_url=base_url, viewport={"width": 1280, "height": 900})
    opened = context.new_page()
    errors: list[str] = []
    foreign: list[str] = []
    opened.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    opened.on("pageerror", lambda e: errors.append(str(e)))
    opened.on("request", lambda r: None if urlparse(r.url).hostname == "127.0.0.1"
              else foreign.append(r.url))
    try:
        yield opened
    finally:
        context.close()
    assert errors == [], f"console errors: {errors}"
    assert foreign == [], f"requests that left 127.0.0.1: {foreign}"


def listed(page: Page) -> list[str]:
    return [str(v) for v in page.locator("tr[data-slo]").evaluate_all(
        "rows => rows.map(r => r.dataset.slo)")]


def test_the_list_shows_every_demo_slo(page: Page, demo: DemoData) -> None:
    page.goto("/")
    expected = {f"{s}/{n}" for s, n in demo.ledger[["service", "slo"]].drop_duplicates()
                .itertuples(index=False)}
    assert set(listed(page)) == expected
    assert page.locator("link[rel=stylesheet]").count() == 1
    assert page.evaluate("getComputedStyle(document.body).fontFamily") != ""


def test_filter_and_sort_work_and_the_url_keeps_them(page: Page) -> None:
    page.goto("/")
    total = len(listed(page))
    owners = page.locator("select[name=owner] option").evaluate_all(
        "options => options.map(o => o.value).filter(v => v)")
    owner = owners[0]
    page.select_option("select[name=owner]", owner)
    page.get_by_role("button", name="Filter").click()
    page.wait_for_load_state()
    assert parse_qs(urlparse(page.url).query)["owner"] == [owner]
    filtered = listed(page)
    assert 0 < len(filtered) < total
    owners_shown = page.locator("tr[data-slo] td:nth-child(3)").all_inner_texts()
    assert set(owners_shown) == {owner}

    page.get_by_role("link", name="budget left").click()
    page.wait_for_load_state()
    query = parse_qs(urlparse(page.url).query)
    assert query["owner"] == [owner] and query["sort"] == ["budget"]
    assert query["order"] == ["asc"]
    assert sorted(listed(page)) == sorted(filtered)
    assert budget_bars(page) == sorted(budget_bars(page))
    page.get_by_role("link", name="budget left").click()
    page.wait_for_load_state()
    assert parse_qs(urlparse(page.url).query)["order"] == ["desc"]
    assert budget_bars(page) == sorted(budget_bars(page), reverse=True)
    assert page.locator('th[aria-sort="descending"]').inner_text().startswith("budget left")


def budget_bars(page: Page) -> list[int]:
    return [int(v) for v in page.locator("tr[data-slo] meter").evaluate_all(
        "meters => meters.map(m => m.getAttribute('value'))")]


@pytest.mark.parametrize("path", ["/", "/slo/api/api-latency", "/incidents", "/changes"])
def test_tab_reaches_every_link(page: Page, path: str) -> None:
    page.goto(path)
    links = set(page.locator("a[href]").evaluate_all(
        "links => links.map(a => a.getAttribute('href'))"))
    focusable = page.locator("a[href], select, button").count()
    reached: set[str] = set()
    for _ in range(focusable + 2):
        page.keyboard.press("Tab")
        href = page.evaluate("document.activeElement && document.activeElement.getAttribute"
                             "('href')")
        if href:
            reached.add(str(href))
    assert links and links - reached == set()


def test_an_slo_page_shows_its_burn_down_and_the_suspects_rollback(
        page: Page, demo: DemoData) -> None:
    burn = next(b for b in demo.burns if b.cause is not None)
    page.goto("/")
    page.locator(f'tr[data-slo="{burn.service}/{burn.slo}"] a').first.click()
    page.wait_for_load_state()
    assert urlparse(page.url).path == app.slo_view_path(burn.service, burn.slo)
    chart = page.locator("svg.burn-down").first
    assert chart.is_visible()
    box = chart.bounding_box()
    assert box is not None and box["width"] > 300 and box["height"] > 80
    assert page.locator("svg.burn-down polyline.remaining").count() >= 1
    assert page.locator("svg.burn-down g.change").count() >= 1
    rollback = page.locator("code.rollback").all_inner_texts()
    assert burn.cause is not None and burn.cause.previous_version is not None
    assert any(burn.cause.previous_version in command for command in rollback)
    assert page.locator("strong.suspect").count() >= 1


def test_screenshots(page: Page, demo: DemoData, tmp_path: Path) -> None:
    """The docs' screenshots (docs/img/, by `make golden`): the list and an SLO's page."""
    out = Path(os.environ.get("SLO_ENGINE_SCREENSHOTS") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    burn = next(b for b in demo.burns if b.cause is not None)
    shots = {"web-view-list.png": "/",
             "web-view-slo.png": app.slo_view_path(burn.service, burn.slo)}
    for name, path in shots.items():
        page.goto(path)
        page.screenshot(path=str(out / name), full_page=True)
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
