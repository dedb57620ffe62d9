"""The web view over live data: `slo-engine run`'s engine serving it at `/` beside the API,
and `slo-engine ui --prometheus-url`, both reading two days of the demo from a real
Prometheus (Debian's, on a free loopback port, stopped by PID)."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import yaml

from slo_engine import app
from slo_engine.changes.events import read_change_lines
from slo_engine.config import load_config
from slo_engine.demo.prometheus import DemoPrometheus, demo_month_served
from slo_engine.service.engine import Engine
from slo_engine.service.http_api import HttpServer, create_app
from tests.support.binaries import require
from tests.support.paths import ROOT
from tests.support.web_ui import serving_ui

pytestmark = pytest.mark.prometheus
UNTIL = datetime(2026, 5, 31, 12, tzinfo=UTC)
PUBLIC = "https://slo.example.com"
VIEW_TOKEN = "view-token-for-tests"


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoPrometheus]:
    require("prometheus")
    require("promtool")
    with demo_month_served([str(ROOT / "slo_definitions")], tmp_path_factory.mktemp("demo"),
                           UNTIL, days=2) as served:
        yield served


def names() -> set[str]:
    return {f"{slo.service}/{slo.name}" for s in app.validate([ROOT / "slo_definitions"])
            for slo in s.slos}


def engine_config(tmp_path: Path, url: str, view: dict[str, object]) -> Path:
    path = tmp_path / "slo-engine.yaml"
    path.write_text(yaml.safe_dump({
        "apiVersion": "slo-engine/v1", "kind": "EngineConfig",
        "slo_files": [str(ROOT / "slo_definitions")],
        "prometheus": {"url": url, "step": "5m"},
        "slack": {"dry_run": True},
        "state": {"path": str(tmp_path / "state.db")},
        "http": {"listen": "127.0.0.1:0", "tokens": ["api-token"], "public_url": PUBLIC,
                 "view": view},
    }), encoding="utf-8")
    return path


def test_run_serves_the_view_beside_the_api_with_the_engines_data(
        demo: DemoPrometheus, tmp_path: Path) -> None:
    config = load_config(engine_config(tmp_path, demo.url, {}))
    engine = Engine.from_config(config, clock=lambda: datetime.fromisoformat(demo.at))
    changes = read_change_lines(demo.changes)
    engine.record_changes(changes)
    server = HttpServer(create_app(engine, config.http, engine.web_view()), config.http.listen)
    server.start()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{server.port}", timeout=30) as client:
            listing = client.get("/")
            assert listing.status_code == 200
            assert "default-src 'self'" in listing.headers["content-security-policy"]
            assert set(re.findall(r'data-slo="([^"]+)"', listing.text)) == names()
            assert client.get("/healthz").json() == {"status": "ok"}
            assert client.post("/api/v1/changes", json={}).status_code == 401
            page = client.get(app.slo_view_path("api", "api-latency")).text
            assert "<polyline" in page and "Release gate" in page
            timeline = client.get("/changes").text
            recent = [c for c in changes if c.service == "api"][-1]
            assert recent.version is not None and recent.version in timeline
    finally:
        server.stop()
        engine.close()
    links = {slo.name: slo.dashboard_url for s in engine.services for slo in s.slos}
    assert links["critical-jobs-on-time"] == f"{PUBLIC}/slo/background-jobs/critical-jobs-on-time"
    assert links["api-latency"] == "https://grafana.example.com/d/api"  # the spec's own


def test_the_views_auth_guards_the_view_not_the_probes(
        demo: DemoPrometheus, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLO_VIEW_TOKEN", VIEW_TOKEN)
    config = load_config(engine_config(tmp_path, demo.url, {
        "auth": "bearer", "tokens": ["${SLO_VIEW_TOKEN}"]}))
    engine = Engine.from_config(config, clock=lambda: datetime.fromisoformat(demo.at))
    server = HttpServer(create_app(engine, config.http, engine.web_view()), config.http.listen)
    server.start()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{server.port}", timeout=30) as client:
            refused = client.get("/")
            assert refused.status_code == 401
            assert refused.headers["www-authenticate"].startswith("Bearer")
            assert client.get("/healthz").status_code == 200
            shown = client.get("/", headers={"Authorization": f"Bearer {VIEW_TOKEN}"})
            assert shown.status_code == 200 and "data-slo=" in shown.text
    finally:
        server.stop()
        engine.close()


def test_ui_reads_a_prometheus(demo: DemoPrometheus) -> None:
    with serving_ui([str(ROOT / "slo_definitions"), "--prometheus-url", demo.url,
                     "--changes", str(demo.changes), "--at", demo.at]) as url:
        listing = httpx.get(url + "/", timeout=30).text
    assert set(re.findall(r'data-slo="([^"]+)"', listing)) == names()
    assert "no_data" not in re.findall(r'<span class="status">([^<]+)<', listing)


def test_ui_refuses_an_unset_auth_variable() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "slo_engine", "ui", str(ROOT / "slo_definitions"), "--data",
         "nowhere.csv", "--token-env", "SLO_ENGINE_TEST_UNSET_VARIABLE"],
        capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "error: --token-env SLO_ENGINE_TEST_UNSET_VARIABLE: the environment variable is not "
        "set or empty; export it before starting the view")


@pytest.mark.parametrize(("view", "problem"), [
    ({"auth": "bearer"}, "auth: bearer needs at least one token under http.view.tokens"),
    ({"auth": "basic"}, "auth: basic needs at least one user under http.view.users"),
])
def test_view_auth_without_credentials_is_a_config_error(
        tmp_path: Path, view: dict[str, object], problem: str) -> None:
    from slo_engine.errors import SpecError

    with pytest.raises(SpecError) as raised:
        load_config(engine_config(tmp_path, "http://127.0.0.1:9", view))
    assert "http.view" in str(raised.value) and problem in str(raised.value)


def test_a_public_url_without_a_scheme_is_a_config_error(tmp_path: Path) -> None:
    from slo_engine.errors import SpecError

    path = engine_config(tmp_path, "http://127.0.0.1:9", {})
    path.write_text(path.read_text().replace(PUBLIC, "slo.example.com"))
    with pytest.raises(SpecError, match=r"http\.public_url: .*'slo\.example\.com' is not an "
                       "absolute URL; write e.g. https://slo.example.com"):
        load_config(path)


def test_ui_on_a_port_in_use_says_so(tmp_path: Path) -> None:
    import socket

    from slo_engine.demo.month import demo_events, write_events

    write_events(demo_events(app.validate([ROOT / "slo_definitions"]), UNTIL, days=1),
                 tmp_path / "events.csv")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "slo_engine", "ui", str(ROOT / "slo_definitions"), "--data",
             str(tmp_path / "events.csv"), "--at", UNTIL.isoformat(), "--listen",
             f"127.0.0.1:{port}"], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: --listen 127.0.0.1:{port}: cannot listen there (is the port in use?); give "
        "another port, or port 0 for a free one")
