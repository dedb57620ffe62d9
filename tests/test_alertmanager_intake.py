"""Alertmanager webhook payloads (version 4) mapped back to the SLOs they came from."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from slo_engine.paging.alertmanager import MAX_ALERTS, WebhookPayload, burn_alerts
from slo_engine.spec.loader import load_services
from slo_engine.spec.model import Service
from tests.support.paths import ROOT


@pytest.fixture(scope="module")
def services() -> list[Service]:
    return load_services([ROOT / "slo_definitions"])


def _alert(status: str = "firing", **labels: str) -> dict[str, Any]:
    return {"status": status,
            "labels": {"alertname": "SLOErrorBudgetBurn", "service": "checkout",
                       "slo": "checkout-success", "severity": "page", "long_window": "1h",
                       "short_window": "5m", **labels},
            "annotations": {}, "startsAt": "2026-05-30T23:00:00.123+02:00",
            "endsAt": "0001-01-01T00:00:00Z" if status == "firing" else "2026-05-31T01:00:00Z",
            "generatorURL": "", "fingerprint": "f"}


def _payload(*alerts: dict[str, Any]) -> WebhookPayload:
    return WebhookPayload.model_validate({
        "version": "4", "status": "firing", "receiver": "slo-engine", "groupKey": "{}",
        "truncatedAlerts": 0, "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {},
        "externalURL": "http://127.0.0.1:9093", "alerts": list(alerts)})


def test_a_firing_burn_alert_keeps_its_tier_group_and_start(services: list[Service]) -> None:
    [alert], skipped = burn_alerts(_payload(_alert(region="us", instance="ignored")), services)
    assert skipped == []
    assert alert.firing and alert.source == "alertmanager"
    assert alert.group == (("region", "us"),)  # group_by labels only, not every label
    assert alert.tier == "1h/5m" and alert.severity == "page"
    assert alert.at == datetime(2026, 5, 30, 21, 0, 0, 123000, tzinfo=UTC)


def test_a_resolved_alert_ends_at_its_ends_at(services: list[Service]) -> None:
    [alert], _ = burn_alerts(_payload(_alert("resolved", region="us")), services)
    assert not alert.firing
    assert alert.at == datetime(2026, 5, 31, 1, tzinfo=UTC)


def test_other_alerts_and_unknown_slos_are_skipped_with_a_reason(
        services: list[Service]) -> None:
    accepted, skipped = burn_alerts(_payload(
        _alert(alertname="SLODataAbsent"),
        _alert(slo="gone-slo"),
        _alert(severity="critical"),
        _alert(service="search", slo="search-latency", severity="ticket", long_window="1d",
               short_window="2h"),
    ), services)
    assert [a.incident_key for a in accepted] == ["search/search-latency//ticket"]
    assert len(skipped) == 3
    assert "SLODataAbsent" in skipped[0] and "not a SLOErrorBudgetBurn alert" in skipped[0]
    assert "unknown SLO checkout/gone-slo" in skipped[1] and "same SLO files" in skipped[1]
    assert "severity 'critical'" in skipped[2]


@pytest.mark.parametrize(("change", "field"), [
    ({"version": "3"}, "version"),
    ({"status": "pending"}, "status"),
    ({"alerts": [{"status": "firing"}]}, "labels"),
    ({"alerts": [_alert()] * (MAX_ALERTS + 1)}, "alerts"),
])
def test_malformed_payloads_are_rejected_naming_the_field(change: dict[str, Any],
                                                          field: str) -> None:
    base = _payload(_alert()).model_dump(by_alias=True, mode="json")
    with pytest.raises(ValidationError) as raised:
        WebhookPayload.model_validate({**base, **change})
    assert any(field in map(str, e["loc"]) for e in raised.value.errors())


def test_a_query_sli_summed_by_target_pages_per_target(tmp_path: Any) -> None:
    """The rules alert per output label of `sum by (target)`: one incident per target,
    with the group the ledger (and so the report) uses, not one merged page."""
    (tmp_path / "probes.yaml").write_text(
        "apiVersion: slo-engine/v1\nservice: probes\nowner: team\nlabels: {tier: \"1\"}\n"
        "slos:\n  - name: reachable\n    objective: 99\n    sli:\n      query:\n"
        "        bad: sum by (target) (rate(probe_failed_total[{{window}}]))\n"
        "        total: sum by (target) (rate(probe_total[{{window}}]))\n")
    probes = load_services([tmp_path])
    alerts, skipped = burn_alerts(_payload(*(
        _alert(service="probes", slo="reachable", tier="1", target=target)
        for target in ("a", "b"))), probes)
    assert skipped == []
    assert [a.group_key for a in alerts] == ["target=a", "target=b"]
    assert len({a.incident_key for a in alerts}) == 2


def test_custom_alert_names_and_severities_map_back_through_the_spec() -> None:
    """An SLO that names its alerts and severity values (Sloth-style critical/warning) is
    still read as a page or a ticket; a value it does not use is reported with the ones it
    does."""
    routed = load_services([ROOT / "tests/spec_cases/good/alert-routing.yaml"])
    own = {"alertname": "ApiAvailabilityBurn", "service": "web-api", "slo": "availability",
           "routing_key": "api-oncall", "team": "platform"}
    accepted, skipped = burn_alerts(_payload(
        _alert(**own, severity="critical"),
        _alert(**own, severity="warning", long_window="1d", short_window="2h"),
        _alert(**own, severity="page"),
        _alert(**{**own, "alertname": "SLOErrorBudgetBurn"}, severity="critical"),
        _alert(service="web-api", slo="latency", severity="ticket", long_window="1d",
               short_window="2h"),
    ), routed)
    assert [(a.slo, a.severity, a.tier) for a in accepted] == [
        ("availability", "page", "1h/5m"), ("availability", "ticket", "1d/2h"),
        ("latency", "ticket", "1d/2h")]
    assert skipped == [
        "ApiAvailabilityBurn web-api/availability: severity 'page' is neither critical (page) "
        "nor warning (ticket)",
        "SLOErrorBudgetBurn web-api/availability: this SLO's burn alerts are named "
        "ApiAvailabilityBurn; do Prometheus and the engine read the same SLO files?",
    ]
