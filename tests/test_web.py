"""The web view over the demo's month, through its real ASGI app (httpx's transport, no
server): what each page says, filtering and sorting by URL, escaping, CSP and auth."""

from __future__ import annotations

import base64
import re
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from slo_engine import app
from slo_engine.changes.events import Change, parse_change
from slo_engine.config import ChangesConfig
from slo_engine.demo.month import DemoData, demo_data
from slo_engine.paging.notices import budget_message, digest_messages
from slo_engine.paging.page import render_page, sample_context
from slo_engine.spec.durations import describe_seconds
from slo_engine.spec.model import SLO, Service, detection_seconds
from slo_engine.web.server import CONTENT_SECURITY_POLICY, SnapshotCache, ViewAuth, create_view

ROOT = Path(__file__).resolve().parent.parent
UNTIL = datetime(2026, 5, 31, 12, tzinfo=UTC)
SCRIPT = "<script>alert('x')</script>"


@pytest.fixture(scope="module")
def services() -> list[Service]:
    return app.validate([ROOT / "slo_definitions"])


@pytest.fixture(scope="module")
def demo(services: list[Service]) -> DemoData:
    return demo_data(services, UNTIL)


def snapshot_of(services: list[Service], ledger: pd.DataFrame,
                changes: list[Change]) -> app.ViewSnapshot:
    def events(_: list[Service], start: datetime, end: datetime) -> tuple[pd.DataFrame,
                                                                          list[str]]:
        return ledger, []

    def find(names: set[str], since: datetime, until: datetime) -> list[Change]:
        return [c for c in changes if c.service in names and since <= c.time <= until]

    return app.view_snapshot(services, events, UNTIL, find, ChangesConfig())


def client_for(snapshot: app.ViewSnapshot, auth: ViewAuth | None = None) -> TestClient:
    return TestClient(create_view(SnapshotCache(lambda: snapshot, None), auth))


@pytest.fixture(scope="module")
def client(services: list[Service], demo: DemoData) -> TestClient:
    return client_for(snapshot_of(services, demo.ledger, demo.changes))


def demo_slos() -> list[SLO]:
    return [slo for s in app.validate([ROOT / "slo_definitions"]) for slo in s.slos]


def listed(html: str) -> list[str]:
    return re.findall(r'data-slo="([^"]+)"', html)


def test_the_list_shows_every_slo_with_its_budget_and_status(
        client: TestClient, services: list[Service]) -> None:
    response = client.get("/")
    assert response.status_code == 200
    names = {f"{slo.service}/{slo.name}" for s in services for slo in s.slos}
    assert set(listed(response.text)) == names
    assert "<meter" in response.text and "burn 1h" in response.text
    assert "exhausted" in response.text or "burning" in response.text


def test_filters_and_sorting_are_in_the_url_and_kept_by_the_column_links(
        client: TestClient, services: list[Service]) -> None:
    owner = services[0].owner
    html = client.get("/", params={"owner": owner}).text
    owned = {f"{slo.service}/{slo.name}" for s in services if s.owner == owner
             for slo in s.slos}
    assert set(listed(html)) == owned
    assert f'href="/?owner={owner}&amp;sort=budget&amp;order=asc"' in html

    ascending = client.get("/", params={"sort": "budget", "order": "asc"}).text
    budgets = [float(v) for v in re.findall(r'<meter[^>]*value="(\d+)"', ascending)]
    assert budgets == sorted(budgets) and budgets[0] < budgets[-1]
    descending = client.get("/", params={"sort": "budget", "order": "desc"}).text
    assert listed(descending)[0] == listed(ascending)[-1]
    assert 'aria-sort="descending"' in descending


def test_an_slo_page_has_the_burn_down_tiers_gate_and_the_suspects_rollback(
        client: TestClient, demo: DemoData) -> None:
    burn = next(b for b in demo.burns if b.cause is not None)
    html = client.get(app.slo_view_path(burn.service, burn.slo)).text
    assert '<svg xmlns="http://www.w3.org/2000/svg" class="burn-down"' in html
    assert "<polyline" in html and 'class="change change-deploy"' in html
    assert "full outage fires in" in html
    slo = next(s for s in demo_slos() if (s.service, s.name) == (burn.service, burn.slo))
    for tier in slo.tiers:  # the numbers `slo-engine explain` prints
        detect = detection_seconds(slo, tier)
        assert f"<td>{describe_seconds(detect) if detect else 'never'}</td>" in html
    assert re.search(r"Release gate: <span class=\"decision decision-(ship|hold|freeze)\">", html)
    assert "suspect:" in html
    assert burn.cause.previous_version and burn.cause.previous_version in html
    assert 'class="rollback"' in html


def test_changes_and_incidents_pages(client: TestClient, demo: DemoData) -> None:
    changes = client.get("/changes").text
    assert changes.count("<tr>") == len(demo.changes) + 1
    service = demo.changes[0].service
    only = client.get("/changes", params={"service": service}).text
    assert only.count("<tr>") == 1 + sum(c.service == service for c in demo.changes)
    incidents = client.get("/incidents").text
    causes = {(b.service, b.slo) for b in demo.burns if b.cause is not None}
    for service_name, slo in causes:
        assert f'href="{app.slo_view_path(service_name, slo)}"' in incidents


def test_an_unknown_slo_is_a_404_page(client: TestClient) -> None:
    response = client.get("/slo/nope/nothing")
    assert response.status_code == 404 and "no SLO nope/nothing" in response.text


def test_text_from_specs_and_change_events_is_escaped(
        services: list[Service], demo: DemoData) -> None:
    first = services[0]
    hostile = [replace(first, slos=(replace(first.slos[0], description=SCRIPT),
                                    *first.slos[1:])), *services[1:]]
    change = parse_change({"time": UNTIL, "service": first.name, "kind": "deploy",
                           "version": "v9", "description": SCRIPT}, "test")
    client = client_for(snapshot_of(hostile, demo.ledger, [*demo.changes, change]))
    for path in ("/changes", app.slo_view_path(first.name, first.slos[0].name)):
        html = client.get(path).text
        assert "<script" not in html
        assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in html


def test_every_answer_has_the_content_security_policy(client: TestClient) -> None:
    for path in ("/", "/static/style.css", "/slo/nope/nothing"):
        response = client.get(path)
        assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        assert response.headers["x-content-type-options"] == "nosniff"
    assert "default-src 'self'" in CONTENT_SECURITY_POLICY


@pytest.mark.parametrize(("auth", "good", "bad"), [
    (ViewAuth("bearer", tokens=("t0ken",)), "Bearer t0ken", "Bearer wrong"),
    (ViewAuth("basic", users={"oncall": "pw"}),
     "Basic " + base64.b64encode(b"oncall:pw").decode(),
     "Basic " + base64.b64encode(b"oncall:nope").decode()),
])
def test_optional_auth_guards_every_page_and_asset(
        services: list[Service], demo: DemoData, auth: ViewAuth, good: str, bad: str) -> None:
    client = client_for(snapshot_of(services, demo.ledger, demo.changes), auth)
    for path in ("/", "/static/style.css", "/incidents"):
        assert client.get(path).status_code == 401
        refused = client.get(path, headers={"Authorization": bad})
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"].startswith(auth.challenge.split()[0])
        assert client.get(path, headers={"Authorization": good}).status_code == 200


def test_pages_and_notices_link_to_the_slos_view_when_the_spec_has_no_dashboard() -> None:
    context = sample_context(UNTIL)
    bare = replace(context.slo, dashboard_url=None)
    services = [Service(bare.service, bare.owner, bare.source_file, (bare,))]
    linked = app.with_view_links(services, "https://slo.example.com/")[0].slos[0]
    assert linked.dashboard_url == "https://slo.example.com/slo/checkout/checkout-success"
    page = render_page(replace(context, slo=linked))
    assert "<https://slo.example.com/slo/checkout/checkout-success|Dashboard>" in str(
        page.blocks)
    assert context.status is not None
    notice = budget_message(context.status, linked, 0.25)
    assert "<https://slo.example.com/slo/checkout/checkout-success|Dashboard>" in str(
        notice.blocks)
    burning = replace(context.status, burn_rates={"1h": 3.0})
    digest = digest_messages([burning], {(linked.service, linked.name): linked},
                             lambda owner: "#digest", UNTIL)["#digest"]
    assert "*<https://slo.example.com/slo/checkout/checkout-success|checkout/checkout-success" \
        in str(digest.blocks)  # its worst burners link to their pages
    own = [Service(bare.service, bare.owner, bare.source_file, (context.slo,))]
    assert app.with_view_links(own, "https://slo.example.com")[0].slos[0].dashboard_url == \
        context.slo.dashboard_url
    assert app.with_view_links(services, None)[0].slos[0].dashboard_url is None


def test_a_source_that_fails_is_a_503_page_then_the_last_read_stays_shown(
        services: list[Service], demo: DemoData) -> None:
    from slo_engine.errors import SourceUnavailable

    reads: list[app.ViewSnapshot | None] = [None]

    def load() -> app.ViewSnapshot:
        snapshot = reads.pop(0) if reads else None
        if snapshot is None:
            raise SourceUnavailable("Prometheus at http://user:pw@prom:9090 is unreachable")
        return snapshot

    client = TestClient(create_view(SnapshotCache(load, 0)))
    down = client.get("/")
    assert down.status_code == 503 and down.headers["retry-after"] == "60"
    assert "is unreachable" in down.text and "pw@" not in down.text
    reads[:] = [snapshot_of(services, demo.ledger, demo.changes), None]
    assert client.get("/").status_code == 200
    stale = client.get("/")
    assert stale.status_code == 200 and listed(stale.text)
    assert "could not read newer data, showing the last read" in stale.text
