"""The HTTP API over a real uvicorn server and real HTTP: auth, size bounds, reasons, probes.

The engine behind it is a small stand-in built from the real parts the API touches (the
state database, telemetry, budget report, Alertmanager mapping), so what is asserted is the
API's own behaviour: who may write, what is refused and why, what is recorded.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from slo_engine.budget import accounting as budget
from slo_engine.budget.accounting import BudgetStatus
from slo_engine.changes.events import Change
from slo_engine.config import HttpConfig
from slo_engine.demo.month import demo_events
from slo_engine.paging.alertmanager import WebhookPayload, burn_alerts
from slo_engine.paging.burn_alert import BurnAlert
from slo_engine.service.http_api import HttpServer, create_app
from slo_engine.service.leadership import Role
from slo_engine.service.telemetry import Telemetry
from slo_engine.spec.loader import load_services
from slo_engine.spec.model import Service
from slo_engine.storage.sqlite import StateDB
from tests.support.paths import ROOT

TOKEN = "s3cret-token-for-tests"
LIMIT = 4096
AT = datetime(2026, 5, 31, tzinfo=UTC)


@dataclass
class Engine:
    state: StateDB
    services: list[Service]
    statuses: list[BudgetStatus]
    telemetry: Telemetry = field(default_factory=Telemetry)
    checks: dict[str, str] = field(default_factory=lambda: {"prometheus": "ok", "state": "ok"})
    alerts: list[BurnAlert] = field(default_factory=list)

    def record_changes(self, changes: list[Change]) -> list[Change]:
        return self.state.add_changes(changes)

    def slo_statuses(self) -> list[BudgetStatus]:
        return self.statuses

    def readiness(self) -> dict[str, str]:
        return dict(self.checks)

    def role(self) -> Role:
        return Role("standby", "replica-b", "replica-a", 7)

    def handle_alertmanager(self, payload: WebhookPayload) -> int:
        accepted, _ = burn_alerts(payload, self.services)
        self.alerts.extend(accepted)
        return len(accepted)


@pytest.fixture(scope="module")
def services() -> list[Service]:
    return load_services([ROOT / "slo_definitions"])


@pytest.fixture
def engine(tmp_path: Path, services: list[Service]) -> Iterator[Engine]:
    statuses = budget.report(services, demo_events(services, AT, days=2), AT)
    with StateDB(tmp_path / "state.db") as state:
        yield Engine(state, services, statuses)


def _serve(engine: Engine, tokens: list[str]) -> Iterator[httpx.Client]:
    http = HttpConfig(listen="127.0.0.1:0", tokens=[SecretStr(t) for t in tokens],
                      max_body_bytes=LIMIT)
    server = HttpServer(create_app(engine, http), http.listen)
    server.start()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{server.port}", timeout=10) as client:
            yield client
    finally:
        server.stop()


@pytest.fixture
def client(engine: Engine) -> Iterator[httpx.Client]:
    yield from _serve(engine, [TOKEN])


AUTH = {"Authorization": f"Bearer {TOKEN}"}
DEPLOY = {"time": "2026-05-12T14:03:00Z", "service": "checkout", "kind": "deploy",
          "version": "web-api:2026.05.12-8f3a91c", "previous_version": "web-api:2026.05.10-41c2d2a"}


def test_probes_answer_without_a_token(client: httpx.Client, engine: Engine) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["ready"] is True
    # A standby is ready (it serves the API and takes webhooks); the role says it stands by.
    assert ready.json()["role"] == {"role": "standby", "replica": "replica-b",
                                    "holder": "replica-a", "token": 7}
    engine.checks["prometheus"] = "http://127.0.0.1:1: connection refused"
    not_ready = client.get("/readyz")
    assert not_ready.status_code == 503
    assert not_ready.json()["checks"]["prometheus"].endswith("connection refused")


@pytest.mark.parametrize(("headers", "reason"), [
    ({}, "missing bearer token"),
    ({"Authorization": "Basic dXNlcjpwYXNz"}, "missing bearer token"),
    ({"Authorization": "Bearer wrong-token"}, "invalid bearer token"),
])
def test_writes_without_the_right_token_get_401_and_record_nothing(
        client: httpx.Client, engine: Engine, headers: dict[str, str], reason: str) -> None:
    for path in ("/api/v1/changes", "/api/v1/alertmanager"):
        response = client.post(path, json=DEPLOY, headers=headers)
        assert response.status_code == 401
        assert reason in response.json()["detail"]
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert "wrong-token" not in response.text
    assert engine.state.changes() == []


def test_without_configured_tokens_every_write_is_refused(engine: Engine) -> None:
    for client in _serve(engine, []):
        response = client.post("/api/v1/changes", json=DEPLOY, headers=AUTH)
        assert response.status_code == 401
        assert "http.tokens" in response.json()["detail"]
    assert engine.state.changes() == []


def test_a_change_is_recorded_once_however_often_it_is_sent(client: httpx.Client,
                                                            engine: Engine) -> None:
    first = client.post("/api/v1/changes", json=DEPLOY, headers=AUTH)
    again = client.post("/api/v1/changes", json=[DEPLOY], headers=AUTH)
    assert first.status_code == again.status_code == 201
    assert first.json() == {"received": 1, "recorded": 1, "already_known": 0}
    assert again.json() == {"received": 1, "recorded": 0, "already_known": 1}
    [stored] = engine.state.changes()
    assert stored.version == DEPLOY["version"] and stored.source == "http"
    assert stored.rollback() == "deploy web-api:2026.05.10-41c2d2a"
    metrics = client.get("/metrics").text
    assert 'slo_engine_changes_recorded_total{source="http"} 1.0' in metrics
    # The dashboards' change annotations read this series (a watched service only).
    [line] = [x for x in metrics.splitlines()
              if x.startswith("slo_engine_last_change_timestamp_seconds{")]
    assert line.startswith('slo_engine_last_change_timestamp_seconds{kind="deploy",'
                           'service="checkout"} ')
    assert float(line.split()[-1]) == datetime.fromisoformat(DEPLOY["time"]).timestamp()


@pytest.mark.parametrize(("body", "reason"), [
    ({**DEPLOY, "kind": "rollout"}, "kind: got 'rollout'; expected one of: deploy, config"),
    ({**DEPLOY, "time": "2026-05-12T14:03:00"}, "time: needs a timezone"),
    ({**DEPLOY, "colour": "red"}, "colour: unknown field"),
    ({"service": "checkout", "kind": "deploy"}, "time: Field required"),
    ([DEPLOY, {**DEPLOY, "service": ""}], "1.service: String should have at least 1 character"),
])
def test_invalid_changes_get_422_with_the_reason_and_none_is_recorded(
        client: httpx.Client, engine: Engine, body: Any, reason: str) -> None:
    response = client.post("/api/v1/changes", json=body, headers=AUTH)
    assert response.status_code == 422
    assert reason in response.json()["detail"]
    assert engine.state.changes() == []


def test_a_body_that_is_not_json_gets_422(client: httpx.Client) -> None:
    response = client.post("/api/v1/changes", content=b"{not json", headers=AUTH)
    assert response.status_code == 422 and "not JSON" in response.json()["detail"]


def test_a_body_nesting_too_deeply_gets_422(client: httpx.Client) -> None:
    for path in ("/api/v1/changes", "/api/v1/alertmanager"):
        response = client.post(path, content=b"[" * 4000, headers=AUTH)
        assert response.status_code == 422
        assert response.json()["detail"] == "the body's JSON nests too deeply"


def test_an_ipv6_listen_address_is_served(engine: Engine) -> None:
    server = HttpServer(create_app(engine, HttpConfig()), "[::1]:0")
    server.start()
    try:
        assert httpx.get(f"http://[::1]:{server.port}/healthz", timeout=10).status_code == 200
    finally:
        server.stop()


def test_oversized_bodies_get_413_declared_or_streamed(client: httpx.Client,
                                                       engine: Engine) -> None:
    big = {**DEPLOY, "description": "x" * 1900}
    declared = client.post("/api/v1/changes", json=[big, big, big], headers=AUTH)
    assert declared.status_code == 413 and "4096" in declared.json()["detail"]

    def chunks() -> Iterator[bytes]:
        yield b"["
        for _ in range(50):
            yield json.dumps(big).encode() + b","
        yield b"{}]"

    streamed = client.post("/api/v1/changes", content=chunks(), headers=AUTH)
    assert "content-length" not in streamed.request.headers
    assert streamed.status_code == 413
    assert engine.state.changes() == []


def test_slos_serve_the_report_json_contract(client: httpx.Client, engine: Engine) -> None:
    body = client.get("/api/v1/slos").json()
    assert body["slos"] == [s.as_json() for s in engine.statuses]
    assert {row["slo"] for row in body["slos"]} >= {"checkout-success", "api-latency"}


def _webhook(status: str, **labels: str) -> dict[str, Any]:
    alert = {"status": status, "labels": {"alertname": "SLOErrorBudgetBurn", **labels},
             "annotations": {"summary": "burning"}, "startsAt": "2026-05-30T23:00:00Z",
             "endsAt": "0001-01-01T00:00:00Z" if status == "firing" else "2026-05-30T23:40:00Z",
             "generatorURL": "http://127.0.0.1:9090/graph", "fingerprint": "13a940e6febae351"}
    return {"version": "4", "status": status, "receiver": "slo-engine", "groupKey": "{}:{}",
            "truncatedAlerts": 0, "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {},
            "externalURL": "http://127.0.0.1:9093", "alerts": [alert]}


def test_alertmanager_webhook_becomes_burn_alerts(client: httpx.Client, engine: Engine) -> None:
    labels = {"service": "checkout", "slo": "checkout-success", "severity": "page",
              "long_window": "1h", "short_window": "5m", "region": "eu"}
    firing = client.post("/api/v1/alertmanager", json=_webhook("firing", **labels), headers=AUTH)
    resolved = client.post("/api/v1/alertmanager", json=_webhook("resolved", **labels),
                           headers=AUTH)
    assert firing.json() == resolved.json() == {"alerts": 1, "accepted": 1}
    fired, ended = engine.alerts
    assert fired.incident_key == ended.incident_key == "checkout/checkout-success/region=eu/page"
    assert fired.firing and not ended.firing and fired.source == "alertmanager"
    assert fired.at == datetime(2026, 5, 30, 23, tzinfo=UTC)
    assert ended.at - fired.at == timedelta(minutes=40)


def test_an_invalid_webhook_gets_422_naming_the_field(client: httpx.Client) -> None:
    payload = {**_webhook("firing", slo="x"), "version": "3"}
    response = client.post("/api/v1/alertmanager", json=payload, headers=AUTH)
    assert response.status_code == 422 and "version" in response.json()["detail"]


def test_openapi_documents_every_route_and_body(client: httpx.Client) -> None:
    document = client.get("/openapi.json").json()
    assert set(document["paths"]) == {"/api/v1/changes", "/api/v1/alertmanager", "/api/v1/slos",
                                      "/healthz", "/readyz", "/metrics"}
    schemas = document["components"]["schemas"]
    assert {"Change", "WebhookPayload", "WebhookAlert"} <= set(schemas)
    body = document["paths"]["/api/v1/changes"]["post"]["requestBody"]
    assert body["content"]["application/json"]["schema"]["oneOf"][0]["$ref"] == \
        "#/components/schemas/Change"


_json = st.recursive(st.none() | st.booleans() | st.integers()
                     | st.floats(allow_nan=False, allow_infinity=False)  # JSON has neither
                     | st.text(max_size=20),
                     lambda inner: st.lists(inner, max_size=4)
                     | st.dictionaries(st.text(max_size=10), inner, max_size=4), max_leaves=12)
_change_like = st.fixed_dictionaries(
    {"time": st.sampled_from(["2026-05-12T14:03:00Z", "2026-05-12T14:03:00", "yesterday"]),
     "service": st.text(max_size=12), "kind": st.sampled_from(["deploy", "config", "oops"])},
    optional={"version": st.text(max_size=12), "rollback_command": st.text(max_size=12)})


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=_json | _change_like | st.lists(_change_like, max_size=3))
def test_no_body_makes_the_api_fail(client: httpx.Client, engine: Engine, body: Any) -> None:
    for path in ("/api/v1/changes", "/api/v1/alertmanager"):
        before = len(engine.state.changes())
        response = client.post(path, json=body, headers=AUTH)
        assert response.status_code in (200, 201, 413, 422), response.text
        if response.status_code == 201:
            recorded = response.json()["recorded"]
            assert len(engine.state.changes()) == before + recorded
        else:
            assert len(engine.state.changes()) == before
        assert "Traceback" not in response.text
