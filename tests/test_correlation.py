"""Correlation against hand-built timelines: the onset read from the 5m error ratio (not the
time the page fired), the lookback and suspect windows at their edges, the kinds that can be
suspects, depends_on services, derived rollback commands, and the state database edge."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from slo_engine.app import correlate_alert, ratio_window
from slo_engine.changes.correlation import (
    correlate,
    estimate_onset,
    onset_tier,
    ratio_from_ledger,
    services_of,
)
from slo_engine.changes.events import Change
from slo_engine.config import ChangesConfig
from slo_engine.paging.burn_alert import BurnAlert
from slo_engine.spec.loader import load_services
from slo_engine.spec.model import SLO, AlertTier
from slo_engine.storage.sqlite import StateDB

SPEC = """\
apiVersion: slo-engine/v1
service: checkout
owner: commerce
depends_on: [payments, inventory]
slos:
  - name: checkout-success
    objective: 99.9
    sli:
      ratio:
        bad: requests_total{code=~"5.."}
        total: requests_total
"""
T0 = datetime(2026, 5, 12, 12, 0, tzinfo=UTC)
HEALTHY, BURNING = 0.0001, 0.05  # the 1h/5m page's threshold is 14.4 × 0.001 = 0.0144


def at(hhmm: str, seconds: int = 0) -> datetime:
    hours, minutes = (int(p) for p in hhmm.split(":"))
    return T0.replace(hour=hours, minute=minutes, second=seconds)


def ratio(spans: list[tuple[str, str, float]], start: str = "10:00",
          end: str = "15:00") -> pd.Series:
    """A 1-minute 5m error ratio: HEALTHY, except value v on each [from, to) span."""
    index = pd.date_range(at(start), at(end), freq="1min", tz="UTC")
    values = pd.Series(HEALTHY, index=index, dtype=float)
    for first, last, value in spans:
        values[(index >= pd.Timestamp(at(first))) & (index < pd.Timestamp(at(last)))] = value
    return values


def change(when: datetime, kind: str = "deploy", service: str = "checkout",
           version: str | None = None, **extra: str) -> Change:
    return Change(time=when, service=service, kind=kind,
                  version=version or f"v-{when:%H%M%S}", **extra)


@pytest.fixture(scope="module")
def slo(tmp_path_factory: pytest.TempPathFactory) -> SLO:
    path = tmp_path_factory.mktemp("slos") / "checkout.yaml"
    path.write_text(SPEC, encoding="utf-8")
    [service] = load_services([path])
    return service.slos[0]


def tier(slo: SLO, long_window: str) -> AlertTier:
    return next(t for t in slo.tiers if t.long_window == long_window)


def alert(fired: datetime, severity: str = "page", windows: tuple[str, str] = ("1h", "5m"),
          ) -> BurnAlert:
    return BurnAlert(service="checkout", slo="checkout-success", group=(),
                     severity=severity, long_window=windows[0],  # type: ignore[arg-type]
                     short_window=windows[1], firing=True, at=fired)


# --- the onset ------------------------------------------------------------------------------


def test_onset_is_when_the_ratio_rose_not_when_the_page_fired(slo: SLO) -> None:
    series = ratio([("13:50", "15:00", BURNING)])
    assert estimate_onset(series, at("14:02"), slo, tier(slo, "1h")) == at("13:50")
    # Points after the alert's time are not read.
    assert estimate_onset(series, at("13:52"), slo, tier(slo, "1h")) == at("13:50")


def test_the_threshold_is_the_tiers_burn_rate_times_the_budget(slo: SLO) -> None:
    # 0.01 is above the 6h page's 0.006 but below the 1h page's 0.0144.
    series = ratio([("13:00", "13:40", 0.01), ("13:40", "15:00", BURNING)])
    assert estimate_onset(series, at("14:10"), slo, tier(slo, "6h")) == at("13:00")
    assert estimate_onset(series, at("14:10"), slo, tier(slo, "1h")) == at("13:40")


def test_a_dip_shorter_than_the_short_window_does_not_end_the_run(slo: SLO) -> None:
    dip = ratio([("13:30", "13:40", BURNING), ("13:43", "15:00", BURNING)])  # 3 min below
    assert estimate_onset(dip, at("14:00"), slo, tier(slo, "1h")) == at("13:30")
    long_dip = ratio([("13:30", "13:40", BURNING), ("13:50", "15:00", BURNING)])  # 10 min
    assert estimate_onset(long_dip, at("14:00"), slo, tier(slo, "1h")) == at("13:50")
    # The 6h/30m tier's short window is 30 minutes: the same 10-minute dip is bridged.
    assert estimate_onset(long_dip, at("14:00"), slo, tier(slo, "6h")) == at("13:30")


def test_no_onset_when_the_ratio_never_crossed_or_the_run_ended_long_before(slo: SLO) -> None:
    assert estimate_onset(ratio([]), at("14:00"), slo, tier(slo, "1h")) is None
    earlier = ratio([("11:00", "12:00", BURNING)])
    assert estimate_onset(earlier, at("14:00"), slo, tier(slo, "1h")) is None
    # A run older than the tier's long window is not the one that fired it.
    assert estimate_onset(earlier, at("14:00"), slo, tier(slo, "6h")) is None
    empty = pd.Series([], index=pd.DatetimeIndex([], tz="UTC"), dtype=float)
    assert estimate_onset(empty, at("14:00"), slo, tier(slo, "1h")) is None


def test_missing_points_end_the_run_and_nan_is_no_traffic(slo: SLO) -> None:
    series = ratio([("13:00", "15:00", BURNING)])
    series[(series.index >= at("13:20")) & (series.index < at("13:40"))] = float("nan")
    assert estimate_onset(series, at("14:00"), slo, tier(slo, "1h")) == at("13:40")
    gap = series.drop(series.index[(series.index >= at("13:20")) & (series.index < at("13:40"))])
    assert estimate_onset(gap, at("14:00"), slo, tier(slo, "1h")) == at("13:40")


def test_onset_from_a_ledger_frame(slo: SLO) -> None:
    times = pd.date_range(at("13:00"), at("14:00"), freq="1min", tz="UTC")
    bad = [50.0 if t >= at("13:25") else 0.0 for t in times]
    ledger = pd.DataFrame({"timestamp": times, "service": "checkout",
                           "slo": "checkout-success", "group": "", "total": 1000.0,
                           "bad": bad})
    other = ledger.assign(slo="other", bad=1000.0)
    series = ratio_from_ledger(pd.concat([ledger, other]), slo)
    assert len(series) == len(times) and series.max() == 0.05
    assert estimate_onset(series, at("13:40"), slo, tier(slo, "1h")) == at("13:25")


def test_tier_of_an_alert_and_its_ratio_window(slo: SLO) -> None:
    found = onset_tier(slo, "page", "6h", "30m")
    assert found is not None and found.burn_rate == 6
    unknown = onset_tier(slo, "page", "2h", "10m")  # the spec changed: most sensitive page tier
    assert unknown is not None and unknown.long_window == "6h"
    assert ratio_window(alert(at("14:00"), "ticket", ("3d", "6h")), slo) == (
        at("14:00") - timedelta(days=3), at("14:00"))


# --- the changes before the onset -------------------------------------------------------------


def test_the_suspect_is_the_change_before_the_onset_not_before_the_page(slo: SLO) -> None:
    series = ratio([("13:50", "15:00", BURNING)])
    cause = change(at("13:45"), previous_version="v1")
    after_onset = change(at("13:55"), "config")
    onset = estimate_onset(series, at("14:02"), slo, tier(slo, "1h"))
    result = correlate([after_onset, cause], onset)
    assert result.onset == at("13:50")
    assert result.changes == (cause,)
    assert result.suspect == cause
    assert result.rollback_command == "deploy v1"
    # What a correlation anchored at the page would have blamed instead:
    assert correlate([after_onset, cause], at("14:02")).suspect == after_onset


def test_lookback_edges(slo: SLO) -> None:
    onset = at("14:00")
    edge = change(onset - timedelta(hours=6), "migration")
    outside = change(onset - timedelta(hours=6, seconds=1), "migration")
    at_onset = change(onset, "infrastructure")
    later = change(onset + timedelta(seconds=1), "deploy")
    result = correlate([edge, outside, at_onset, later], onset)
    assert result.changes == (at_onset, edge)  # newest first; both edges included
    assert result.lookback_seconds == 6 * 3600
    shorter = correlate([edge, outside, at_onset, later], onset, lookback_s=3600)
    assert shorter.changes == (at_onset,)


def test_suspect_window_and_kinds(slo: SLO) -> None:
    onset = at("14:00")
    deploy = change(onset - timedelta(hours=2), "deploy")
    old_flag = change(onset - timedelta(hours=2, seconds=1), "feature_flag")
    migration = change(onset - timedelta(minutes=5), "migration")
    infra = change(onset - timedelta(minutes=1), "infrastructure")
    result = correlate([old_flag, deploy, migration, infra], onset)
    assert result.suspect == deploy  # newest suspect kind; window edge included
    assert result.changes == (infra, migration, deploy, old_flag)
    result = correlate([old_flag, migration, infra], onset)
    assert result.suspect is None and result.rollback_command is None
    assert len(result.changes) == 3  # still shown, just not blamed
    wider = correlate([old_flag, migration, infra], onset, suspect_window_s=3 * 3600)
    assert wider.suspect == old_flag
    config = change(onset - timedelta(minutes=30), "config")
    assert correlate([deploy, config], onset).suspect == config


def test_only_the_slo_service_and_its_dependencies_count(slo: SLO) -> None:
    assert services_of(slo) == ("checkout", "payments", "inventory")
    onset = at("14:00")
    own = change(onset - timedelta(hours=1), service="checkout")
    dependency = change(onset - timedelta(minutes=10), "config", service="payments")
    unrelated = change(onset - timedelta(minutes=5), service="search")
    result = correlate([own, dependency, unrelated], onset, services=services_of(slo))
    assert result.changes == (dependency, own)
    assert result.suspect == dependency


def test_rollback_given_derived_or_unknown(slo: SLO) -> None:
    onset = at("14:00")
    given = change(onset, version="v2", previous_version="v1",
                   rollback_command="helm rollback checkout 41")
    assert correlate([given], onset).rollback_command == "helm rollback checkout 41"
    derived = change(onset, version="v2", previous_version="v1")
    template = "kubectl -n {service} set image deploy/{service} app={previous_version}"
    assert correlate([derived], onset, rollback_template=template).rollback_command == \
        "kubectl -n checkout set image deploy/checkout app=v1"
    assert correlate([change(onset, "feature_flag")], onset).rollback_command is None


def test_no_changes(slo: SLO) -> None:
    result = correlate([], at("14:00"))
    assert result.changes == () and result.suspect is None and result.rollback_command is None
    with pytest.raises(ValueError, match="onset or the alert's time"):
        correlate([], None)


# --- the state database edge ----------------------------------------------------------------


def test_correlate_alert_reads_the_state_database(slo: SLO, tmp_path: Path) -> None:
    series = ratio([("13:50", "15:00", BURNING)])
    cause = change(at("13:45"), service="payments", previous_version="p1")
    routine = change(at("11:30"), "config")
    too_old = change(at("07:49"), "deploy")
    elsewhere = change(at("13:49"), service="search")
    after = change(at("13:58"), "feature_flag")
    with StateDB(tmp_path / "state.db") as state:
        state.add_changes([cause, routine, too_old, elsewhere, after])
        result = correlate_alert(alert(at("14:02")), slo, state, series)
        assert result.onset == at("13:50")
        assert result.changes == (cause, routine)
        assert result.suspect == cause and result.rollback_command == "deploy p1"

        # The engine config's windows and template.
        config = ChangesConfig(lookback="1h", suspect_window="2m",
                               rollback_template="rollback {service} to {previous_version}")
        narrow = correlate_alert(alert(at("14:02")), slo, state, series, config)
        assert narrow.changes == (cause,) and narrow.suspect is None
        wide = correlate_alert(alert(at("14:02")), slo, state, series,
                               ChangesConfig(rollback_template="undo {previous_version}"))
        assert wide.rollback_command == "undo p1"

        # No ratio (Prometheus down): the onset is unknown, the window ends at the page.
        blind = correlate_alert(alert(at("14:02")), slo, state, None)
        assert blind.onset is None
        assert blind.changes == (after, cause, routine)
        assert blind.suspect == after
        # The ratio never crossed the threshold: the same fallback.
        flat = correlate_alert(alert(at("14:02")), slo, state, ratio([]))
        assert flat.onset is None and flat.suspect == after
