"""report, backtest, gate, the service's evaluator and build-info deploys with a real
VictoriaMetrics as the source (it speaks the Prometheus query API).

Four days of synthetic counters (tests/support/synthetic.py: diurnal traffic, a counter
reset, an incident on one instance and one on all) are imported with their timestamps, and
vmalert replays the `vmalert` layout of the rules over them: the 5m rates over the whole
history, the windows and alerts over the last hours. Every number read back must match the
generator's own counts, and the engine's evaluator must see the tiers vmalert fired.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from slo_engine.cli import main
from slo_engine.config import BuildInfoSource, load_config
from slo_engine.paging.evaluator import burn_queries, firing_tiers
from slo_engine.prometheus.build_info import build_info_changes
from slo_engine.prometheus.source import PrometheusSource
from slo_engine.rules.compile import compile_service
from slo_engine.rules.files import dump_yaml, group_data
from slo_engine.service.engine import Engine
from slo_engine.spec import conventions as names
from slo_engine.spec.loader import load_services
from slo_engine.spec.model import Service
from tests.support.slack_standin import TOKEN, SlackStandIn
from tests.support.synthetic import DAY, HOUR, MINUTE, Incident, Profile, Synthetic, generate
from tests.support.victoria import (
    VictoriaServer,
    firing_minutes,
    replay,
    running_victoria,
    text_lines,
)

pytestmark = pytest.mark.prometheus

TOLERANCE = 0.005  # relative, as tests/test_source.py allows Prometheus
INSTANCES = ("api-1", "api-2", "api-3")

WEB = """\
apiVersion: slo-engine/v1
service: web
owner: team-web
slos:
  - name: availability
    objective: 99.9
    sli:
      ratio:
        bad: http_requests_total{job="api", code=~"5.."}
        total: http_requests_total{job="api"}
  - name: by-instance
    objective: 99.5
    sli:
      ratio:
        bad: http_requests_total{job="api", code=~"5.."}
        total: http_requests_total{job="api"}
        group_by: [instance]
"""


@dataclass(frozen=True)
class History:
    server: VictoriaServer
    requests: Synthetic
    service: Service
    slos: Path
    start: int  # the rates' first evaluation (an hour after the first sample)
    end: int
    incident: Incident  # on every instance, within the replayed alerts
    alerts_from: int  # where the windows and alerts were replayed from

    def at(self, seconds: float) -> datetime:
        return datetime.fromtimestamp(seconds, UTC)


def _import_synthetic(server: VictoriaServer, data: Synthetic) -> None:
    stamps = [data.start + MINUTE * i for i in range(data.minutes + 1)]
    lines = [line for one in data.series
             for line in text_lines((("__name__", f"{data.metric}_total"), *one.labels),
                                    zip(stamps, one.values.astype(float).tolist(), strict=True))]
    server.import_prometheus(lines)


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory, victoria_metrics_binary: str,
            vmalert_binary: str) -> Iterator[History]:
    work = tmp_path_factory.mktemp("victoria-source")
    (work / "slos").mkdir()
    (work / "slos" / "web.yaml").write_text(WEB, encoding="utf-8")
    [service] = load_services([work / "slos"])
    end = int(time.time()) // HOUR * HOUR - 2 * HOUR
    start = end - 4 * DAY - HOUR
    incident = Incident(end - 3 * HOUR, 60, 0.05)
    profile = Profile(base_error_ratio=0.0004,
                      incidents=(Incident(start + DAY + 14 * HOUR, 90, 0.02, ("api-2",)),
                                 incident),
                      reset=("api-1", end - 2 * DAY))
    requests = generate(start=start, end=end, profile=profile, seed=11, labels={"job": "api"},
                        instances=INSTANCES, shares=(0.5, 0.3, 0.2))
    groups = compile_service(service, "vmalert").groups
    with running_victoria(victoria_metrics_binary, work / "vm") as server:
        _import_synthetic(server, requests)
        alerts_from = end - 5 * HOUR
        for index, group in enumerate(groups):
            path = work / f"{index}-{group.name.replace(':', '_')}.yml"
            path.write_text(dump_yaml({"groups": [group_data(group)]}), encoding="utf-8")
            rates = group.name.endswith(":rates")
            replay(vmalert_binary, path, server, start + HOUR if rates else alerts_from, end,
                   log_file=work / "vmalert.log")
        yield History(server, requests, service, work / "slos", start + HOUR, end, incident,
                      alerts_from)


def _assert_close(got: float, want: float, what: str) -> None:
    assert abs(got - want) <= TOLERANCE * abs(want), (
        f"{what}: got {got:.6g}, want {want:.6g} ({(got - want) / want:+.3%})")


def test_the_ledger_from_victoria_matches_ground_truth(history: History) -> None:
    """What report and backtest read: bucketed recorded rates, two queries in all."""
    with PrometheusSource(history.server.url) as source:
        frame, stats = source.fetch_ledger([history.service], history.at(history.start),
                                           history.at(history.end))
    assert stats.queries == 2 and not stats.fallback and not stats.missing, stats
    assert not stats.partial and not stats.warnings, stats
    for slo, instance in (("availability", None), ("by-instance", "api-2")):
        rows = frame[frame["slo"] == slo]
        if instance:
            rows = rows[rows["group"] == f"instance={instance}"]
        stamps = rows["timestamp"].map(lambda t: int(t.timestamp()))
        assert (stamps % 300 == 0).all()
        bad, total = history.requests.counts(int(stamps.min()) - 300, int(stamps.max()),
                                             instance)
        _assert_close(float(rows["total"].sum()), total, f"{slo} {instance} total")
        _assert_close(float(rows["bad"].sum()), bad, f"{slo} {instance} bad")


def test_report_reads_victoria(history: History, capsys: pytest.CaptureFixture[str]) -> None:
    """The budget of each SLO group over what VictoriaMetrics holds (the period reaches
    back before the history: partial, and said so)."""
    assert main(["report", str(history.slos), "--prometheus-url", history.server.url,
                 "--at", history.at(history.end).isoformat(), "--format", "json"]) == 0
    captured = capsys.readouterr()
    assert "read from raw series" in captured.err  # the hour before the rates' first sample
    report = {(r["slo"], r["labels"].get("instance")): r for r in json.loads(captured.out)}
    assert set(report) == {("availability", None),
                           *(("by-instance", i) for i in INSTANCES)}
    for (slo, instance), row in report.items():
        bad, total = history.requests.counts(history.start - 300, history.end, instance)
        _assert_close(row["total_events"], total, f"{slo} {instance} total")
        _assert_close(row["bad_events"], bad, f"{slo} {instance} bad")


def _vmalert_pages(history: History, slo: str) -> list[tuple[int, int]]:
    """The (first, last) unix seconds of each run of vmalert's firing 1h/5m page of `slo`."""
    found = firing_minutes(history.server, "SLOErrorBudgetBurn", history.alerts_from,
                           history.end, {names.SLO_LABEL: slo, names.LONG_WINDOW_LABEL: "1h"})
    minutes = sorted(m for fired in found.values() for m in fired)
    runs: list[tuple[int, int]] = []
    for m in minutes:
        t = history.alerts_from + m * MINUTE
        runs = [*runs[:-1], (runs[-1][0], t)] if runs and t - runs[-1][1] == MINUTE \
            else [*runs, (t, t)]
    return runs


def test_backtest_reads_victoria_and_pages_when_vmalert_did(
        history: History, capsys: pytest.CaptureFixture[str]) -> None:
    """The backtest replays the alerts from the ledger; vmalert evaluated the rules
    themselves over the same hours: the same page, to the 5-minute bucket."""
    assert main(["backtest", str(history.slos), "--prometheus-url", history.server.url,
                 "--until", history.at(history.end).isoformat(), "--since", "3d",
                 "--format", "json"]) == 0
    results = {r["slo"]: r for r in json.loads(capsys.readouterr().out)}
    pages = [a for a in results["availability"]["alerts"]
             if a["severity"] == "page" and a["long_window"] == "1h"]
    [(first, last)] = _vmalert_pages(history, "availability")
    assert first > history.incident.start
    assert [(datetime.fromisoformat(a["start"]).timestamp(),
             datetime.fromisoformat(a["end"]).timestamp()) for a in pages] == [
        pytest.approx((first, last + MINUTE), abs=5 * MINUTE)]
    assert not _vmalert_pages(history, "by-instance") and not [
        a for a in results["by-instance"]["alerts"] if a["start"] >= history.at(
            history.alerts_from).isoformat()]


@pytest.mark.parametrize(("minutes_after", "decision", "code"),
                         [(30, "hold", 1), (180, "ship", 0)])
def test_gate_reads_victoria(history: History, capsys: pytest.CaptureFixture[str],
                             minutes_after: int, decision: str, code: int) -> None:
    """Half an hour into the incident a page fires: hold; two hours after it: ship."""
    at = history.at(history.incident.start + minutes_after * MINUTE)
    assert main(["gate", str(history.slos), "--service", "web", "--prometheus-url",
                 history.server.url, "--at", at.isoformat(), "--format", "json"]) == code
    answer = json.loads(capsys.readouterr().out)
    assert answer["decision"] == decision, answer


def test_the_evaluator_fires_what_vmalert_fired(history: History) -> None:
    """The service's evaluator reads the recorded windows at each instant; vmalert's ALERTS
    say what the rules fired then. Every 5 minutes over the replayed hours."""
    slos = history.service.slos
    alerts = firing_minutes(history.server, "SLOErrorBudgetBurn", history.alerts_from,
                            history.end)
    fired = 0
    with PrometheusSource(history.server.url) as source:
        for t in range(history.alerts_from + 10 * MINUTE, history.end + 1, 5 * MINUTE):
            at = history.at(t)
            results = {name: source.instant(query, at)
                       for name, query in burn_queries(slos).items()}
            ours = {(a.slo, dict(a.group).get("instance"), a.long_window)
                    for a in firing_tiers(slos, results, at).values()}
            theirs = {(labels[names.SLO_LABEL], labels.get("instance"),
                       labels[names.LONG_WINDOW_LABEL])
                      for key, minutes in alerts.items() if (t - history.alerts_from) // MINUTE
                      in minutes for labels in (dict(key),)}
            assert ours == theirs, at
            fired += len(ours)
    assert fired, "nothing fired: the comparison proves nothing"


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def test_the_service_pages_and_resolves_from_victoria(history: History,
                                                      tmp_path: Path) -> None:
    """`slo-engine run`'s jobs with VictoriaMetrics as `prometheus.url`: each minute's
    evaluation through the incident posts the page once to the Slack stand-in and resolves it
    in its thread when vmalert's page ended; the budget refresh reads every SLO group."""
    config = tmp_path / "slo-engine.yaml"
    with SlackStandIn() as slack:
        config.write_text(yaml.safe_dump({
            "apiVersion": "slo-engine/v1", "kind": "EngineConfig",
            "slo_files": [str(history.slos)], "prometheus": {"url": history.server.url},
            "slack": {"token": TOKEN, "base_url": slack.url, "retries": 0,
                      "owners": {"team-web": {"page": "#checkout-oncall",
                                              "ticket": "#checkout-tickets"}}},
            "paging": "engine", "state": {"path": str(tmp_path / "state.db")}}),
            encoding="utf-8")
        clock = Clock(history.at(history.incident.start))
        engine = Engine.from_config(load_config(config, {}), clock=clock)
        try:
            started, resolved = [], []
            for t in range(history.incident.start, history.incident.start + 2 * HOUR,
                           MINUTE):
                clock.now = history.at(t)
                for change in engine.evaluate():
                    if change.severity == "page" and change.long_window == "1h":
                        (started if change.firing else resolved).append((change.slo, t))
                engine.deliver()
            [(first, last)] = _vmalert_pages(history, "availability")
            assert started == [("availability", first)]
            assert resolved == [("availability", last + MINUTE)]
            pages = [r for r in slack.posts() if r.params["channel"] == "#checkout-oncall"]
            assert len(pages) == 1 and "availability" in pages[0].params["text"]
            assert any("resolved" in m.text.lower()
                       for m in slack.replies(pages[0].answer["ts"])), "no resolution"
            clock.now = history.at(history.end)
            statuses = engine.refresh_budgets()
            assert {(s.slo, dict(s.labels).get("instance")) for s in statuses} == {
                ("availability", None), *(("by-instance", i) for i in INSTANCES)}
        finally:
            engine.close()


def test_build_info_deploys_from_victoria(history: History) -> None:
    """A deploy and a rollback on `app_build_info`, found to the second of their first
    sample, as from Prometheus."""
    base = history.end - 2 * HOUR
    deploy, rollback = base + 20 * MINUTE + 17, base + 50 * MINUTE + 43
    lines = []
    for pod, offset in (("a", 0), ("b", 7)):
        for t in range(base + offset, base + HOUR, 30):
            version = "v2" if deploy + offset <= t < rollback else "v1"
            labels = (("__name__", "app_build_info"), ("service", "web"), ("pod", pod),
                      ("version", version))
            lines.extend(text_lines(labels, [(t, 1.0)]))
    history.server.import_prometheus(lines)
    with PrometheusSource(history.server.url) as source:
        changes = build_info_changes(source, BuildInfoSource(), history.at(base),
                                     history.at(base + HOUR))
    assert [(c.version, c.previous_version, c.time.timestamp()) for c in changes] == [
        ("v2", "v1", deploy + 13), ("v1", "v2", rollback + 17)]
