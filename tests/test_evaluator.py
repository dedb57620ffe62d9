"""The engine's own paging mode: the alert rules' condition over instant-query results, and
the transitions from one firing set to the next that become pages and resolutions."""

from __future__ import annotations

import random
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from slo_engine.paging.burn_alert import BurnAlert
from slo_engine.paging.dedup import apply_alerts, tier_id, transitions
from slo_engine.paging.evaluator import (
    SLOW_LOOKBACK,
    alert_burn_queries,
    burn_queries,
    burn_rate_in,
    firing_tiers,
    unseen_tiers,
)
from slo_engine.prometheus.source import PrometheusSource
from slo_engine.rules.compile import burn_condition
from slo_engine.spec.loader import load_services
from slo_engine.spec.model import SLO
from tests.support.prometheus import PrometheusServer, backfill_openmetrics

AT = datetime(2026, 5, 12, 14, 0, tzinfo=UTC)


def _slos(tmp_path: Path, *specs: dict[str, Any], service: str = "checkout") -> list[SLO]:
    document = {"apiVersion": "slo-engine/v1", "service": service, "owner": "shop",
                "slos": list(specs)}
    path = tmp_path / f"{service}.yaml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return list(load_services([path])[0].slos)


def _spec(name: str = "success", objective: float = 99.9, **extra: Any) -> dict[str, Any]:
    sli = {"ratio": {"bad": 'http_requests_total{code=~"5.."}', "total": "http_requests_total",
                     **({"group_by": extra.pop("group_by")} if "group_by" in extra else {})}}
    return {"name": name, "objective": objective, "sli": sli, **extra}


def _sample(slo: SLO, value: float | str, **group: str) -> dict[str, Any]:
    return {"metric": {"slo": slo.name, "service": slo.service, **group},
            "value": [AT.timestamp(), str(value)]}


def _results(slo: SLO, ratios: dict[str, float | str], events: dict[str, float] | None = None,
             **group: str) -> dict[str, list[dict[str, Any]]]:
    """Results as Prometheus would answer `burn_queries`, every window holding `ratios`."""
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in burn_queries([slo])}
    for name in results:
        kind, window = name.split(":")
        if kind.startswith("ratio") and window in ratios:
            results[name].append(_sample(slo, ratios[window], **group))
        if kind == "events" and events and window in events:
            results[name].append(_sample(slo, events[window], **group))
    return results


def test_one_query_per_window_whatever_the_number_of_slos(tmp_path: Path) -> None:
    one = _slos(tmp_path, _spec())
    many = _slos(tmp_path, *[_spec(f"slo-{i}") for i in range(50)], service="many")
    assert burn_queries(one) == burn_queries(many)
    assert burn_queries(many) == {
        "ratio:5m": "slo:error_ratio:rate5m",
        "ratio:30m": "slo:error_ratio:rate30m",
        "ratio:1h": "slo:error_ratio:rate1h",
        "ratio:6h": "slo:error_ratio:rate6h",
        "ratio-slow:2h": f"last_over_time(slo:error_ratio:rate2h[{SLOW_LOOKBACK}])",
        "ratio-slow:1d": f"last_over_time(slo:error_ratio:rate1d[{SLOW_LOOKBACK}])",
        "ratio-slow:3d": f"last_over_time(slo:error_ratio:rate3d[{SLOW_LOOKBACK}])",
    }
    assert SLOW_LOOKBACK == "10m"  # two intervals of the slow group


def test_min_events_adds_one_event_count_per_long_window(tmp_path: Path) -> None:
    slo = _slos(tmp_path, _spec(alerting={"min_events": 100, "ticket": False}))[0]
    queries = burn_queries([slo])
    assert queries["events:1h"] == "avg_over_time(slo:total_events:rate5m[1h]) * 3600"
    assert queries["events:6h"] == "avg_over_time(slo:total_events:rate5m[6h]) * 21600"
    assert not any(name.startswith("ratio-slow") for name in queries)


def test_a_tier_fires_only_when_both_windows_burn_above_its_rate(tmp_path: Path) -> None:
    slo = _slos(tmp_path, _spec())[0]  # 99.9%: page 1h/5m at 14.4x, i.e. ratio > 0.0144
    fired = firing_tiers([slo], _results(slo, {"1h": 0.02, "5m": 0.5}), AT)
    assert list(fired) == ["checkout/success//page/1h/5m"]
    alert = fired["checkout/success//page/1h/5m"]
    assert alert.firing and alert.severity == "page" and alert.at == AT
    assert alert.burn_rate_long == pytest.approx(20)
    assert alert.burn_rate_short == pytest.approx(500)
    assert alert.source == "engine"
    assert firing_tiers([slo], _results(slo, {"1h": 0.02, "5m": 0.01}), AT) == {}
    assert firing_tiers([slo], _results(slo, {"1h": 0.01, "5m": 0.5}), AT) == {}
    assert firing_tiers([slo], _results(slo, {"1h": 0.0144, "5m": 0.5}), AT) == {}  # not >


def test_missing_and_nan_windows_never_fire(tmp_path: Path) -> None:
    slo = _slos(tmp_path, _spec())[0]
    assert firing_tiers([slo], _results(slo, {"1h": 0.5}), AT) == {}
    assert firing_tiers([slo], _results(slo, {"1h": "NaN", "5m": 0.5}), AT) == {}
    assert firing_tiers([slo], _results(slo, {"1h": 0.5, "5m": "NaN"}), AT) == {}


def test_every_tier_that_holds_fires_ticket_tiers_from_the_slow_queries(tmp_path: Path) -> None:
    slo = _slos(tmp_path, _spec())[0]
    everything = {w: 1.0 for w in ("5m", "30m", "1h", "6h", "2h", "1d", "3d")}
    fired = firing_tiers([slo], _results(slo, everything), AT)
    assert sorted(fired) == ["checkout/success//page/1h/5m", "checkout/success//page/6h/30m",
                             "checkout/success//ticket/1d/2h", "checkout/success//ticket/3d/6h"]
    results = _results(slo, everything)
    results["ratio-slow:1d"] = []  # the slow group has not recorded it yet
    assert "checkout/success//ticket/1d/2h" not in firing_tiers([slo], results, AT)


def test_min_events_keeps_a_quiet_slo_from_paging(tmp_path: Path) -> None:
    slo = _slos(tmp_path, _spec(alerting={"min_events": 100}))[0]
    burning = {"1h": 0.5, "5m": 0.5}
    assert firing_tiers([slo], _results(slo, burning, {"1h": 99.0}), AT) == {}
    assert firing_tiers([slo], _results(slo, burning), AT) == {}  # no count: no page
    fired = firing_tiers([slo], _results(slo, burning, {"1h": 100.0}), AT)
    assert list(fired) == ["checkout/success//page/1h/5m"]


def test_a_grouped_slo_fires_per_group(tmp_path: Path) -> None:
    slo = _slos(tmp_path, _spec(group_by=["region"]))[0]
    results = _results(slo, {"1h": 0.5, "5m": 0.5}, region="eu")
    for name, items in _results(slo, {"1h": 0.5, "5m": 0.001}, region="us").items():
        results[name].extend(items)
    fired = firing_tiers([slo], results, AT)
    assert [a.group for a in fired.values()] == [(("region", "eu"),)]
    assert list(fired) == ["checkout/success/region=eu/page/1h/5m"]


def test_series_of_slos_the_engine_does_not_load_are_ignored(tmp_path: Path) -> None:
    slo = _slos(tmp_path, _spec())[0]
    other = _slos(tmp_path, _spec("other"), service="elsewhere")[0]
    results = _results(other, {"1h": 0.5, "5m": 0.5})
    assert firing_tiers([slo], results, AT) == {}


def test_an_alertmanager_alert_reads_the_burn_of_its_own_group_and_windows(
        tmp_path: Path) -> None:
    slo = _slos(tmp_path, _spec(group_by=["region"]))[0]
    alert = BurnAlert("checkout", "success", (("region", 'e"u'),), "ticket", "1d", "2h", True, AT)
    long, short = alert_burn_queries(slo, alert)
    selector = '{slo="success", service="checkout", region="e\\"u"}'
    assert long == f"last_over_time(slo:error_ratio:rate1d{selector}[10m])"
    assert short == f"last_over_time(slo:error_ratio:rate2h{selector}[10m])"
    page = replace(alert, severity="page", long_window="1h", short_window="5m")
    assert alert_burn_queries(slo, page)[0] == f"slo:error_ratio:rate1h{selector}"
    result = [_sample(slo, 0.02, region='e"u'), _sample(slo, "NaN", region="us")]
    assert burn_rate_in(result, slo) == pytest.approx(20)
    assert burn_rate_in([], slo) is None


def _alert(tier: str = "1h/5m", *, severity: str = "page", at: datetime = AT,
           burn: float = 20.0, firing: bool = True) -> BurnAlert:
    long, short = tier.split("/")
    return BurnAlert("checkout", "success", (), "page" if severity == "page" else "ticket",
                     long, short, firing, at, burn, burn * 5, "engine")


def _firing(*alerts: BurnAlert) -> dict[str, BurnAlert]:
    return {tier_id(a): a for a in alerts}


def test_a_tier_is_handed_over_when_it_starts_and_not_while_it_lasts() -> None:
    assert transitions({}, _firing(_alert()), AT) == [_alert()]
    later = _firing(_alert(at=AT + timedelta(minutes=1), burn=30))
    assert transitions(_firing(_alert()), later, AT + timedelta(minutes=1)) == []


def test_a_tier_that_stops_is_resolved_at_the_evaluation_time() -> None:
    both = _firing(_alert("1h/5m"), _alert("6h/30m"))
    end = AT + timedelta(minutes=30)
    [resolved] = transitions(both, _firing(_alert("6h/30m")), end)
    assert (resolved.tier, resolved.firing, resolved.at) == ("1h/5m", False, end)
    assert resolved.burn_rate_long == 20.0  # the last figures it fired with
    assert transitions(_firing(_alert("6h/30m")), _firing(_alert("6h/30m")), end) == []


def test_starts_go_before_stops_so_a_handover_stays_one_incident() -> None:
    before = _firing(_alert("1h/5m"))
    after = _firing(_alert("6h/30m"))
    changed = transitions(before, after, AT)
    assert [(a.tier, a.firing) for a in changed] == [("6h/30m", True), ("1h/5m", False)]
    assert {a.incident_key for a in changed} == {"checkout/success//page"}


def test_page_and_ticket_tiers_are_separate_transitions() -> None:
    after = _firing(_alert("1h/5m"), _alert("1d/2h", severity="ticket"))
    changed = transitions({}, after, AT)
    assert [a.incident_key for a in changed] == ["checkout/success//page",
                                                 "checkout/success//ticket"]
    assert [(a.severity, a.firing) for a in transitions(after, _firing(_alert("1h/5m")), AT)] \
        == [("ticket", False)]


def test_a_firing_tier_without_samples_is_unseen_not_resolved(tmp_path: Path) -> None:
    slo = _slos(tmp_path, _spec())[0]
    previous = _firing(_alert("1h/5m"), _alert("1d/2h", severity="ticket"))
    # Prometheus answers, but its rules have not recorded since it came back.
    assert unseen_tiers(previous, [slo], _results(slo, {})) == set(previous)
    assert unseen_tiers(previous, [slo], _results(slo, {"1h": 0.5})) == set(previous)
    # Samples, even NaN or below the threshold, are seen: those tiers resolve as usual.
    seen = {"1h": 0.0, "5m": "NaN", "1d": 0.5, "2h": 0.5}
    assert unseen_tiers(previous, [slo], _results(slo, seen)) == set()
    # A tier or SLO no longer loaded is never held.
    assert unseen_tiers(_firing(_alert("2h/10m")), [slo], _results(slo, {})) == set()
    assert unseen_tiers(previous, [], _results(slo, {})) == set()


def test_webhook_reports_join_and_leave_one_tier_at_a_time() -> None:
    first, changed = apply_alerts({}, [_alert("1h/5m")])
    assert changed == [_alert("1h/5m")]
    again, changed = apply_alerts(first, [_alert("1h/5m", at=AT + timedelta(minutes=5))])
    assert (again, changed) == (first, [])  # a repeat keeps when the tier started
    both, changed = apply_alerts(again, [_alert("6h/30m")])
    assert sorted(both) == ["checkout/success//page/1h/5m", "checkout/success//page/6h/30m"]
    ended = _alert("1h/5m", firing=False, at=AT + timedelta(minutes=40))
    one, changed = apply_alerts(both, [ended])
    assert list(one) == ["checkout/success//page/6h/30m"]
    assert changed == [ended]  # resolved at the time Alertmanager gives
    _, changed = apply_alerts(one, [ended])
    assert changed == []  # a resolution of a tier that is not firing is no transition


# --- against Prometheus' own evaluation of the generated alert expressions ----------------


@pytest.mark.prometheus
def test_firing_tiers_agree_with_prometheus_evaluating_the_alert_expressions(
        tmp_path: Path, prometheus_binary: str, promtool: str) -> None:
    """Random recorded ratios around every tier's threshold, one sample a minute: at each
    instant, the tiers the evaluator finds firing are exactly those whose generated
    `burn_condition` Prometheus finds true."""
    slos = [*_slos(tmp_path, _spec("plain"), _spec("counted", objective=99.5,
                                                   alerting={"min_events": 100})),
            *_slos(tmp_path, _spec("regional", group_by=["region"]), service="cart")]
    rng = random.Random(5)
    end = (int(time.time()) - 3 * 3600) // 60 * 60  # backfilled blocks stay clear of the head
    stamps = list(range(end - 100 * 60, end + 60, 60))
    lines = []
    series = [(slo, {"region": r} if slo.group_by else {})
              for slo in slos for r in (("eu", "us") if slo.group_by else ("",))]
    for window in ("5m", "30m", "1h", "6h", "2h", "1d", "3d"):
        lines.append(f"# TYPE slo:error_ratio:rate{window} gauge")
        for slo, group in series:
            labels = ",".join(f'{k}="{v}"' for k, v in
                              {"service": slo.service, "slo": slo.name, **group}.items())
            level = rng.uniform(0.2, 5)
            for t in stamps:
                level = min(30.0, max(0.1, level * rng.uniform(0.7, 1.4)))
                lines.append(f"slo:error_ratio:rate{window}{{{labels}}} "
                             f"{level * slo.error_budget:.6g} {t}")
    lines.append("# TYPE slo:total_events:rate5m gauge")
    for slo, group in series:
        labels = ",".join(f'{k}="{v}"' for k, v in
                          {"service": slo.service, "slo": slo.name, **group}.items())
        lines += [f"slo:total_events:rate5m{{{labels}}} {rng.uniform(0.005, 0.06):.4f} {t}"
                  for t in stamps]
    data = tmp_path / "recorded.om"
    data.write_text("\n".join(lines) + "\n# EOF\n", encoding="utf-8")
    server = PrometheusServer(prometheus_binary, tmp_path / "prometheus")
    backfill_openmetrics(promtool, data, server.data_dir)
    server.start()
    fired = 0
    possible = 60 * sum(len(slo.tiers) for slo, _ in series)
    try:
        with PrometheusSource(server.url) as source:
            for t in stamps[-60:]:
                at = datetime.fromtimestamp(t + 30, UTC)
                results = {name: source.instant(query, at)
                           for name, query in burn_queries(slos).items()}
                ours = set(firing_tiers(slos, results, at))
                theirs = set()
                for slo in slos:
                    for tier in slo.tiers:
                        for item in source.instant(burn_condition(slo, tier), at):
                            group = BurnAlert.group_of(item["metric"], slo.group_by)
                            theirs.add(tier_id(BurnAlert(
                                slo.service, slo.name, group,
                                "page" if tier.severity == "page" else "ticket",
                                tier.long_window, tier.short_window, True, at)))
                assert ours == theirs, at
                fired += len(ours)
    finally:
        server.stop()
    assert 0.2 < fired / possible < 0.8  # the data made tiers fire, and not fire, often
