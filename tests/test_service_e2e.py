"""The service end to end on 127.0.0.1: an exporter whose errors the test controls, a real
Prometheus (1 s scrape and evaluation) loading the compiled rules, a real Alertmanager
routing to the engine's webhook, the engine, and the Slack stand-in.

Both paging modes: an outage pages exactly once, naming the deploy recorded through
`POST /api/v1/changes` as the suspect, and recovery resolves the page (message updated,
thread reply). Faults on the way: Prometheus stopped mid-incident (the engine keeps
running, /readyz fails, one no-data notice, then its recovery, and no second page), the
engine restarted mid-incident (no second page), and Slack down while the incident resolves
(the outbox delivers update and reply in order once it is back).

Outages are total (every request fails) at 20× the baseline traffic, and recovery is good
traffic at 500× it: the 5m rate behind every window then crosses the 14.4x threshold
within seconds each way, where a realistic outage would need minutes to leave the window.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from slo_engine.app import generated_files, validate
from tests.support.alertmanager import AlertmanagerServer
from tests.support.binaries import require
from tests.support.exporter import Exporter
from tests.support.in_process import InProcessEngine
from tests.support.processes import free_port
from tests.support.prometheus import PrometheusServer
from tests.support.slack_standin import TOKEN, SlackStandIn

pytestmark = pytest.mark.prometheus

API_TOKEN = "e2e-api-token"
BASELINE_RPS = 10.0
OUTAGE_RPS = 200.0
RECOVERY_RPS = 5000.0
WAIT = 60.0  # the bound of every wait; each is expected to take seconds
# The bound of a wait for a burn (or its end) to be seen: a rule group is evaluated every
# minute at an offset Prometheus derives from the group's name and file (random here, as the
# files live under a fresh temporary directory), plus scrape, Alertmanager's group_wait and
# the engine's own cadence.
DETECT = 150.0
PAGE = {"checkout": "C0PAGE", "cart": "C0OTHER"}  # stand-in channel IDs
NOTICES = "C0NOTICE"


def _until(condition: Callable[[], Any], what: str, timeout: float = WAIT) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f} s: {what}")
        time.sleep(0.1)


def _spec(service: str, owner: str) -> dict[str, Any]:
    """One page tier (1h/5m, 14.4x at 99%): one incident, nothing slow to wait for."""
    selector = f'job="{service}"'
    return {"apiVersion": "slo-engine/v1", "service": service, "owner": owner,
            "runbook_url": f"https://runbooks.example.com/{service}",
            "slos": [{"name": "availability", "objective": 99.0,
                      "description": "Requests served without a server error",
                      "sli": {"ratio": {"bad": f'http_requests_total{{{selector}, code="500"}}',
                                        "total": f"http_requests_total{{{selector}}}"}},
                      "alerting": {"ticket": False, "data_absent": False, "tiers": [
                          {"severity": "page", "long_window": "1h", "short_window": "5m",
                           "budget_percent": 2}]}}]}


@dataclass
class Stack:
    workdir: Path
    exporters: dict[str, Exporter]
    prometheus: PrometheusServer
    alertmanager: AlertmanagerServer
    slack: SlackStandIn
    engine_port: int
    slo_files: dict[str, Path]

    @property
    def engine_url(self) -> str:
        return f"http://127.0.0.1:{self.engine_port}"

    def config(self, name: str, service: str, paging: str) -> Path:
        path = self.workdir / name / "slo-engine.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump({
            "apiVersion": "slo-engine/v1", "kind": "EngineConfig",
            "slo_files": [str(self.slo_files[service])], "paging": paging,
            "prometheus": {"url": self.prometheus.url, "timeout": "5s", "step": "1m"},
            "slack": {"token": "${E2E_SLACK_TOKEN}", "base_url": self.slack.url, "retries": 0,
                      "owners": {"shop": {"page": "#checkout-oncall", "ticket": "#slo-notices"},
                                 "payments": {"page": "#payments-oncall",
                                              "ticket": "#slo-notices"}}},
            "state": {"path": "state/state.db"},
            "schedule": {"evaluate": "2s", "budget_refresh": "1h", "no_data_after": "3s",
                         "digest_cron": "0 0 1 1 *"},
            "http": {"listen": f"127.0.0.1:{self.engine_port}", "tokens": ["${E2E_API_TOKEN}"]},
        }), encoding="utf-8")
        return path

    def page_posts(self, service: str) -> list[Any]:
        return [r for r in self.slack.posts() if r.answer["channel"] == PAGE[service]]

    def notices(self) -> list[str]:
        return [r.params.get("text", "") for r in self.slack.posts()
                if r.answer["channel"] == NOTICES]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    prometheus_binary = require("prometheus")
    alertmanager_binary = require("prometheus-alertmanager")
    with pytest.MonkeyPatch.context() as environ:
        environ.setenv("E2E_SLACK_TOKEN", TOKEN)  # the configs read the secrets from here
        environ.setenv("E2E_API_TOKEN", API_TOKEN)
        yield from _stack(tmp_path_factory, prometheus_binary, alertmanager_binary)


def _stack(tmp_path_factory: pytest.TempPathFactory, prometheus_binary: str,
           alertmanager_binary: str) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("service-e2e")
    specs = workdir / "slos"
    specs.mkdir()
    slo_files = {}
    for service, owner in (("checkout", "shop"), ("cart", "payments")):
        slo_files[service] = specs / f"{service}.yaml"
        slo_files[service].write_text(yaml.safe_dump(_spec(service, owner)), encoding="utf-8")
    rules_dir = workdir / "rules"
    rules = []
    for relative, text in generated_files(validate([specs]), with_tests=False).items():
        rules.append(rules_dir / relative)
        rules[-1].parent.mkdir(parents=True, exist_ok=True)
        rules[-1].write_text(text, encoding="utf-8")
    exporters = {s: Exporter(rps=BASELINE_RPS, service=s, version="web:1").start()
                 for s in slo_files}
    slack = SlackStandIn().start()
    engine_port = free_port()
    alertmanager = AlertmanagerServer(
        alertmanager_binary, workdir / "alertmanager",
        webhook_url=f"http://127.0.0.1:{engine_port}/api/v1/alertmanager",
        bearer_token=API_TOKEN)
    prometheus = PrometheusServer(prometheus_binary, workdir / "prometheus", tuple(rules),
                                  evaluation_interval="1s", scrape_interval="1s",
                                  scrape_targets={s: [e.target] for s, e in exporters.items()})
    try:
        alertmanager.start()
        prometheus.alertmanagers = [alertmanager.address]
        prometheus.start()
        yield Stack(workdir, exporters, prometheus, alertmanager, slack, engine_port,
                    slo_files)
    finally:
        prometheus.stop()
        alertmanager.stop()
        slack.stop()
        for exporter in exporters.values():
            exporter.stop()


def _client() -> httpx.Client:
    return httpx.Client(timeout=10, headers={"Authorization": f"Bearer {API_TOKEN}"})


def _record_deploy(stack: Stack, service: str) -> dict[str, Any]:
    change = {"time": datetime.now(UTC).isoformat(), "service": service, "kind": "deploy",
              "version": f"{service}-web:2", "previous_version": f"{service}-web:1",
              "author": "ci"}
    with _client() as client:
        answer = client.post(f"{stack.engine_url}/api/v1/changes", json=change)
    assert answer.status_code == 201, answer.text
    assert answer.json()["recorded"] == 1
    return change


def _ready(stack: Stack) -> tuple[int, dict[str, Any]]:
    try:
        answer = httpx.get(f"{stack.engine_url}/readyz", timeout=10)
    except httpx.TransportError:
        return 0, {}
    return answer.status_code, answer.json()


def _metric(stack: Stack, name: str) -> float:
    text = httpx.get(f"{stack.engine_url}/metrics", timeout=10).text
    values = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
              if line.startswith(name)]
    return sum(values)


def _burn_rates(text: str) -> tuple[float, float]:
    """The long and short window burn rates a page's fallback text states."""
    found = re.search(r"burning ([\d.]+)x over 1h and ([\d.]+)x over 5m", text)
    assert found is not None, text
    return float(found.group(1)), float(found.group(2))


def _resolved(stack: Stack, post: Any) -> bool:
    message = stack.slack.messages[post.answer["ts"]]
    return message.text.startswith("RESOLVED") and bool(stack.slack.replies(message.ts))


def test_engine_mode_pages_once_through_a_prometheus_outage_and_a_restart(
        stack: Stack) -> None:
    config = stack.config("engine-mode", "checkout", "engine")
    running = InProcessEngine.start(config)
    try:
        _until(lambda: _ready(stack)[0] == 200, "the engine ready")
        deploy = _record_deploy(stack, "checkout")
        stack.exporters["checkout"].set(error_ratio=1.0, rps=OUTAGE_RPS)

        [page] = _until(lambda: stack.page_posts("checkout"), "the page", timeout=DETECT)
        text = page.params["text"]
        assert text.startswith("PAGE checkout / availability: error budget burning")
        assert f"Suspect: deploy {deploy['version']}" in text
        assert "Roll back: deploy checkout-web:1" in text
        assert "Alert from engine" in str(page.params["blocks"])
        assert _burn_rates(text) > (14.4, 14.4)

        # Prometheus stops mid-incident: the engine keeps evaluating, and says so once.
        stack.prometheus.stop()
        body = _until(lambda: (r := _ready(stack))[0] == 503 and r, "/readyz failing")[1]
        assert "Prometheus at" in body["checks"]["prometheus"]
        assert body["checks"]["state"] == "ok"
        _until(lambda: any("cannot read Prometheus" in t for t in stack.notices()),
               "the no-data notice")
        assert _metric(stack, 'slo_engine_query_errors_total{kind="unavailable"}') >= 1
        stack.prometheus.start()
        _until(lambda: any("answers again" in t for t in stack.notices()),
               "the no-data recovery notice")
        assert sum("cannot read Prometheus" in t for t in stack.notices()) == 1
        assert _ready(stack)[0] == 200

        # The engine restarts mid-incident: the firing set is in the state database.
        running.stop()
        running = InProcessEngine.start(config)
        first = _until(running.last_evaluation, "an evaluation after the restart")
        _until(lambda: running.last_evaluation() > first, "a second evaluation")
        assert len(stack.page_posts("checkout")) == 1

        stack.exporters["checkout"].set(error_ratio=0.0, rps=RECOVERY_RPS)
        _until(lambda: _resolved(stack, page), "the page resolved with a thread reply",
               timeout=DETECT)
        assert len(stack.page_posts("checkout")) == 1
        [reply] = stack.slack.replies(page.answer["ts"])
        assert "Resolved" in reply.text
        # Counted since the restart: the page's update and the thread reply (a budget notice
        # may or may not also fall after it).
        assert _metric(stack, 'slo_engine_notifications_total{outcome="sent"}') >= 2
    finally:
        running.stop()
        stack.exporters["checkout"].set(error_ratio=0.0, rps=BASELINE_RPS)


def _run_service(config: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "slo_engine", "run", "--config", str(config)],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def _terminate(process: subprocess.Popen[bytes]) -> int:
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)
        raise


def test_alertmanager_mode_through_a_restart_and_a_slack_outage(stack: Stack) -> None:
    config = stack.config("alertmanager-mode", "cart", "alertmanager")
    log = config.parent / "service.log"
    process = _run_service(config, log)
    try:
        _until(lambda: _ready(stack)[0] == 200, "`slo-engine run` ready")
        deploy = _record_deploy(stack, "cart")
        stack.exporters["cart"].set(error_ratio=1.0, rps=OUTAGE_RPS)

        [page] = _until(lambda: stack.page_posts("cart"), "the page from Alertmanager",
                        timeout=DETECT)
        text = page.params["text"]
        assert text.startswith("PAGE cart / availability: error budget burning")
        assert f"Suspect: deploy {deploy['version']}" in text
        assert "Alert from alertmanager" in str(page.params["blocks"])
        assert _burn_rates(text) > (14.4, 14.4)  # read from Prometheus, as in engine mode
        assert _metric(stack, 'slo_engine_webhook_alerts_total{outcome="accepted"}') >= 1

        # SIGTERM mid-incident, and a new process on the same state: no second page.
        assert _terminate(process) == 0
        process = _run_service(config, log)
        _until(lambda: _ready(stack)[0] == 200, "`slo-engine run` ready again")

        # Slack goes down; the incident resolves meanwhile.
        stack.slack.stop()
        stack.exporters["cart"].set(error_ratio=0.0, rps=RECOVERY_RPS)
        _until(lambda: _metric(stack, "slo_engine_outbox_depth") >= 2,
               "the update and the reply waiting in the outbox", timeout=DETECT)
        back = time.monotonic()
        stack.slack.start()
        _until(lambda: _resolved(stack, page), "the outbox delivered after Slack came back")
        update = next(r for r in stack.slack.calls("chat.update", ok_only=True)
                      if r.params["ts"] == page.answer["ts"] and r.at > back)
        reply = next(r for r in stack.slack.calls("chat.postMessage", ok_only=True)
                     if r.params.get("thread_ts") == page.answer["ts"])
        assert back < update.at < reply.at
        assert len(stack.page_posts("cart")) == 1
        _until(lambda: _metric(stack, "slo_engine_outbox_depth") == 0, "an empty outbox")
    finally:
        code = _terminate(process) if process.poll() is None else process.returncode
        stack.exporters["cart"].set(error_ratio=0.0, rps=BASELINE_RPS)
    assert code == 0, log.read_text(encoding="utf-8")[-3000:]
