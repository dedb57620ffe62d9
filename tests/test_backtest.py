"""Backtests replay the generated rules over a ledger: same firing buckets as the rules.

`rule_tests.Replay` is the minute-by-minute replay that promtool proves equal to Prometheus;
a backtest of a ledger built from Replay's recorded rates must fire at exactly the same
minutes, for every tier of every SLO in slo_definitions and the golden cases. Hand-built
ledgers pin the timing maths; Hypothesis checks the vectorised firing sets against a plain
bucket-by-bucket loop and that more bad events never remove an alert.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from slo_engine.budget.backtest import (
    ALERT_COLUMNS,
    GROUP_COLUMNS,
    AlertPolicy,
    BacktestResult,
    apply_policy,
    backtest,
    backtest_slos,
    load_alert_policy,
)
from slo_engine.errors import LedgerError, SpecError
from slo_engine.rules.promtool_tests import NotDerivable, Replay, input_series, scenarios
from slo_engine.spec.document import ServiceSpec
from slo_engine.spec.loader import load_services
from slo_engine.spec.model import SLO, TierPolicy, detection_seconds, to_model
from slo_engine.spec.promql import number
from tests.support.paths import GOLDEN_CASES, ROOT

T0 = pd.Timestamp("2026-03-01T00:00:00Z")
MINUTE = pd.Timedelta(minutes=1)
RATE = 1000.0  # events per minute


def make_slo(objective: float = 99.9, period: str = "30d", **alerting: Any) -> SLO:
    spec = {"apiVersion": "slo-engine/v1", "service": "web", "owner": "team-web",
            "slos": [{"name": "availability", "objective": objective, "period": period,
                      "sli": {"ratio": {"bad": 'http_requests_total{code=~"5.."}',
                                        "total": "http_requests_total"}},
                      "alerting": alerting}]}
    return to_model(ServiceSpec.model_validate(spec), "web.yaml").slos[0]


def ledger(total: Sequence[float], bad: Sequence[float], *, step: int = 60,
           start: pd.Timestamp = T0, group: str = "", service: str = "web",
           slo: str = "availability") -> pd.DataFrame:
    """Bucket i ends at start + i·step; a NaN total leaves the bucket out (no sample)."""
    rows = [{"timestamp": start + pd.Timedelta(seconds=i * step), "service": service,
             "slo": slo, "group": group, "total": float(t), "bad": float(b)}
            for i, (t, b) in enumerate(zip(total, bad, strict=True)) if not math.isnan(t)]
    frame = pd.DataFrame(rows, columns=["timestamp", "service", "slo", "group", "total", "bad"])
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True)
    return frame


def steady(minutes: int, error_ratio: float, rate: float = RATE) -> tuple[list[float], list[float]]:
    return [rate] * minutes, [rate * error_ratio] * minutes


def concat(*parts: tuple[list[float], list[float]]) -> tuple[list[float], list[float]]:
    return [x for p in parts for x in p[0]], [x for p in parts for x in p[1]]


def firing_cells(result: BacktestResult, slo: SLO, *, start: pd.Timestamp, step: int,
                 group: str = "") -> set[tuple[int, int]]:
    """(tier index, bucket index) of every bucket some interval covers."""
    cells: set[tuple[int, int]] = set()
    if result.until is None:
        return cells
    last = int((pd.Timestamp(result.until) - start) / pd.Timedelta(seconds=step))
    rows = result.alerts[result.alerts["group"] == group]
    for alert in rows.itertuples():
        tier = next(i for i, t in enumerate(slo.tiers) if (t.severity, t.long_window,
                    t.short_window) == (alert.severity, alert.long_window, alert.short_window))
        first = int((alert.start - start) / pd.Timedelta(seconds=step))
        stop = last + 1 if pd.isna(alert.end) else int((alert.end - start) /
                                                        pd.Timedelta(seconds=step))
        cells.update((tier, i) for i in range(first, stop))
    return cells


def alerts_of(result: BacktestResult, severity: str, long_window: str) -> pd.DataFrame:
    frame = result.alerts
    return frame[(frame["severity"] == severity) & (frame["long_window"] == long_window)]


# --- the rules' own replay ------------------------------------------------------------------


def _replayable(slo: SLO) -> bool:
    """Whether the SLI's raw series can be synthesised (not arbitrary PromQL)."""
    traffic = next(s.traffic for s in scenarios(slo) if s.traffic is not None)
    try:
        input_series(slo, traffic)
    except NotDerivable:
        return False
    return True


def _all_slos() -> list[SLO]:
    services = load_services([ROOT / "slo_definitions",
                              *(ROOT / "tests/golden" / c / "slo.yaml" for c in GOLDEN_CASES)])
    return [slo for service in services for slo in service.slos if _replayable(slo)]


@pytest.mark.parametrize("slo", _all_slos(), ids=lambda s: f"{s.service}/{s.name}")
def test_backtest_fires_at_the_same_minutes_as_the_rules_replay(slo: SLO) -> None:
    """A ledger of Replay's recorded 5m rates × 60 per minute fires exactly where the rules do."""
    for scenario in scenarios(slo):
        if scenario.traffic is None:
            continue
        series = input_series(slo, scenario.traffic)
        replay = Replay.of(slo, series, scenario.traffic.minutes)
        totals = [math.nan if r is None else r * 60 for r in replay.total_rate]
        bads = [math.nan if r is None else r * 60 for r in replay.bad_rate]
        result = backtest(slo, ledger(totals, bads, service=slo.service, slo=slo.name))
        expected = {(int(tier), int(t)) for tier, t in zip(*np.nonzero(replay.firing_matrix()),
                                                           strict=True)}
        got = firing_cells(result, slo, start=T0, step=60)
        assert got == expected, f"{scenario.name}: differs at {sorted(got ^ expected)[:5]}"


# --- hand-built ledgers ---------------------------------------------------------------------


def test_outage_pages_when_the_windows_say() -> None:
    """10% errors for 30 min after three clean days, 99.9% over 30d, one-minute buckets read
    as the rules read recorded 5m rates: a window is 5 × bucket t plus the buckets of
    [t − W + 3m, t − 3m] (W − 5 of them).

    1h/5m at 14.4x: at the m-th outage bucket the window holds 0.1·(5 + m − 3)/60, over
    0.0144 first at m = 7 (these buckets jump to 10% at once, a 5m rate cannot: on real
    rates it is the Workbook's 8.64 min); it stops when the 5m bucket is clean. 6h/30m at
    6x: 0.1·(m + 2)/360 > 0.006 first at m = 20; it stops once the 25 buckets of the 30m
    window's range hold one bad bucket (26 minutes after the outage).
    """
    slo = make_slo()
    clean, outage = 3 * 1440, 30
    total, bad = concat(steady(clean, 0), steady(outage, 0.1), steady(120, 0))
    result = backtest(slo, ledger(total, bad))
    onset = T0 + clean * MINUTE

    [fast] = alerts_of(result, "page", "1h").itertuples()
    assert (fast.start, fast.end, fast.onset) == (onset + 6 * MINUTE, onset + 30 * MINUTE, onset)
    assert fast.delay == pd.Timedelta(minutes=6)
    workbook = detection_seconds(slo, slo.tiers[0], 0.1)
    assert workbook is not None and 8 * 60 < workbook <= 9 * 60
    # 24 firing minutes of 100 bad events, over the budget of every event so far.
    assert fast.bad_events == pytest.approx(2400)
    assert fast.budget_spent == pytest.approx(2400 / (0.001 * RATE * (clean + outage)))
    assert fast.peak_burn_rate == pytest.approx(32 * 100 / (60 * RATE) / 0.001)

    [slow] = alerts_of(result, "page", "6h").itertuples()
    assert (slow.start, slow.end) == (onset + 19 * MINUTE, onset + 56 * MINUTE)
    assert result.alerts["severity"].tolist() == ["page", "page"]
    # The two page tiers overlap: a person gets one page.
    assert (result.pages, result.tickets) == (1, 0)
    assert result.budget_spent == pytest.approx(3000 / (0.001 * RATE * len(total)))
    assert result.unalerted_budget_spent == pytest.approx(600 / (0.001 * RATE * len(total)))
    assert list(result.alerts.columns) == list(ALERT_COLUMNS)
    assert list(result.groups.columns) == list(GROUP_COLUMNS)
    assert str(result.alerts["start"].dtype) == "datetime64[ns, UTC]"


def test_slow_burn_raises_a_ticket_and_never_pages() -> None:
    """2x burn on five-minute buckets: only the 3d/6h ticket (1x) can see it. Its 865-bucket
    window [t−3d, t] exceeds 1x once 433 buckets (36 h) are bad."""
    slo = make_slo()
    per_bucket = RATE * 5
    clean = 3 * 288
    total, bad = concat(steady(clean, 0, per_bucket), steady(2 * 288, 0.002, per_bucket))
    result = backtest(slo, ledger(total, bad, step=300))
    assert result.step_seconds == 300
    assert (result.pages, result.tickets) == (0, 1)
    [ticket] = result.alerts.itertuples()
    assert (ticket.severity, ticket.long_window) == ("ticket", "3d")
    burn_start = T0 + clean * pd.Timedelta(minutes=5)
    assert ticket.start == burn_start + 432 * pd.Timedelta(minutes=5)
    assert pd.isna(ticket.end), "still burning when the ledger ends"


def test_quiet_and_missing_hours_give_no_nan_and_no_alert() -> None:
    """An hour of zero traffic and an hour with no rows at all, amid small steady errors."""
    slo = make_slo()
    missing = ([math.nan] * 60, [math.nan] * 60)
    total, bad = concat(steady(600, 0.0005), steady(60, 0, rate=0), missing,
                        steady(600, 0.0005))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = backtest(slo, ledger(total, bad))
    assert result.alerts.empty
    assert (result.pages, result.tickets) == (0, 0)
    assert result.groups[["bad_events", "total_events", "budget_spent"]].notna().all().all()
    assert result.budget_spent == pytest.approx(0.5)
    assert result.unalerted_budget_spent == pytest.approx(0.5)


def test_an_empty_or_silent_ledger_spends_nothing() -> None:
    slo = make_slo()
    empty = backtest(slo, ledger([], []))
    assert empty.alerts.empty and empty.groups.empty and empty.since is None
    assert (empty.pages, empty.budget_spent) == (0, 0.0)
    silent = backtest(slo, ledger([0.0] * 100, [0.0] * 100))
    assert silent.alerts.empty and silent.budget_spent == 0.0


def test_min_events_guard_silences_low_traffic() -> None:
    """Two failed requests of one a minute, as recorded 5m rates see them (2/300 per second
    for five minutes): 2/60 of the hour is above 14.4x, but the hour holds 60 events
    (avg_over_time of the rate × 1h), below min_events = 100."""
    total, bad = concat(steady(180, 0, rate=1))
    bad[120:125] = [0.4] * 5
    frame = ledger(total, bad)
    loud = backtest(make_slo(), frame)
    assert len(alerts_of(loud, "page", "1h")) == 1
    quiet = backtest(make_slo(min_events=100), frame)
    assert alerts_of(quiet, "page", "1h").empty
    # Longer windows hold more events: 6h × one a minute passes the guard.
    assert len(alerts_of(quiet, "page", "6h")) == 1
    assert backtest(make_slo(min_events=10_000), frame).alerts.empty
    # At exactly the guard it fires again.
    assert len(alerts_of(backtest(make_slo(min_events=60), frame), "page", "1h")) == 1


def test_since_and_until_bound_the_evaluation_not_the_windows() -> None:
    slo = make_slo()
    total, bad = concat(steady(3 * 1440, 0), steady(30, 1.0), steady(300, 0))
    frame = ledger(total, bad)
    onset = T0 + 3 * 1440 * MINUTE
    # The windows still read the history before `since`: it fires at once.
    result = backtest(slo, frame, since=onset + 10 * MINUTE, until=onset + 20 * MINUTE)
    assert (result.since, result.until) == (onset + 10 * MINUTE, onset + 20 * MINUTE)
    page = alerts_of(result, "page", "1h").iloc[0]
    assert page["start"] == onset + 10 * MINUTE and pd.isna(page["end"])
    assert page["onset"] == onset  # found before `since`
    assert backtest(slo, frame, until=onset - MINUTE).alerts.empty


def test_groups_are_backtested_separately() -> None:
    slo = make_slo()
    total, bad = concat(steady(3 * 1440, 0), steady(30, 0.5), steady(60, 0))
    frame = pd.concat([ledger(total, bad, group="region=eu"),
                       ledger(*steady(len(total), 0), group="region=us")], ignore_index=True)
    result = backtest(slo, frame)
    assert set(result.alerts["group"]) == {"region=eu"}
    assert result.groups.set_index("group")["pages"].to_dict() == {"region=eu": 1,
                                                                   "region=us": 0}
    assert result.groups.set_index("group").loc["region=us", "budget_spent"] == 0.0


def test_ledger_problems_are_ledger_errors() -> None:
    slo = make_slo()
    frame = ledger(*steady(10, 0))
    with pytest.raises(LedgerError, match="not on the 60s grid"):
        backtest(slo, pd.concat([frame, ledger([1.0], [0.0], start=T0 + pd.Timedelta(
            seconds=630))], ignore_index=True))
    with pytest.raises(LedgerError, match="two rows for group ''"):
        backtest(slo, pd.concat([frame, frame.iloc[:1]], ignore_index=True))
    with pytest.raises(LedgerError, match="missing column"):
        backtest(slo, frame.drop(columns=["bad"]))
    # Rows of other SLOs are not this SLO's.
    other = frame.assign(slo="latency", bad=frame["total"])
    assert backtest(slo, pd.concat([frame, other], ignore_index=True)).alerts.empty


def test_many_slos_split_one_ledger_once() -> None:
    web = make_slo()
    other = replace(web, name="latency")
    outage = concat(steady(3 * 1440, 0), steady(30, 0.5), steady(60, 0))
    frame = pd.concat([ledger(*outage), ledger(*steady(len(outage[0]), 0), slo="latency")],
                      ignore_index=True)
    first, second = backtest_slos([web, other], frame)
    assert (first.slo, first.pages, second.slo, second.pages) == ("availability", 1,
                                                                 "latency", 0)
    pd.testing.assert_frame_equal(first.alerts, backtest(web, frame).alerts)
    # Rows without a service belong to the SLO of that name.
    anonymous = frame.assign(service="")
    assert backtest_slos([web], anonymous)[0].pages == 1
    with pytest.raises(LedgerError, match="missing column"):
        backtest_slos([web], frame.drop(columns=["service"]))


# --- alert policy files ---------------------------------------------------------------------

POLICY = """\
apiVersion: slo-engine/v1
kind: AlertPolicy
min_events: 0
tiers:
  - {severity: page, long_window: 1h, short_window: 5m, budget_percent: 20}
  - {severity: ticket, long_window: 6h, short_window: 30m, budget_percent: 2}
  - {severity: ticket, long_window: 3d, short_window: 6h, budget_percent: 10, enabled: false}
"""


def test_a_policy_file_changes_what_fires(tmp_path: Path) -> None:
    """20% of a 30d budget in 1h is 144x: 10% errors (100x) no longer page; a 6h ticket at
    2.4x (2% in 6h of 30d) catches them instead."""
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY, encoding="utf-8")
    policy = load_alert_policy(path)
    assert policy == AlertPolicy((TierPolicy("page", "1h", "5m", 20),
                                  TierPolicy("ticket", "6h", "30m", 2)), 0, path.as_posix())
    slo = make_slo(min_events=5)
    applied = apply_policy(slo, policy)
    assert [number(t.burn_rate) for t in applied.tiers] == ["144", "2.4"]
    assert applied.min_events == 0
    frame = ledger(*concat(steady(3 * 1440, 0), steady(30, 0.1), steady(120, 0)))
    default = backtest(slo, frame)
    tried = backtest(slo, frame, policy)
    assert (default.pages, default.tickets) == (1, 0)
    assert (tried.pages, tried.tickets) == (0, 1)
    assert tried.tiers == applied.tiers
    # Policy min_events left out: the SLO's own stays.
    assert apply_policy(slo, replace(policy, min_events=None)).min_events == 5


@pytest.mark.parametrize(("text", "expected"), [
    pytest.param(POLICY.replace("budget_percent: 20", "budget_percent: lots"),
                 ["policy.yaml:5:73: tiers[0].budget_percent: got 'lots'; input should be a "
                  "valid number"], id="a budget that is not a number"),
    pytest.param(POLICY.replace("long_window: 6h", "long_windw: 6h"),
                 ["policy.yaml:6:24: tiers[1].long_windw: unknown field 'long_windw'; did you "
                  "mean 'long_window'?",
                  "policy.yaml:6:5: tiers[1].long_window: missing required field "
                  "'long_window'"], id="a misspelt window"),
    pytest.param(POLICY.replace("short_window: 30m", "short_window: 6h"),
                 ["policy.yaml:6:55: tiers[1].short_window: short_window must be shorter than "
                  "long_window (the SRE Workbook uses 1/12 of it)"], id="short not shorter"),
    pytest.param(POLICY.replace("short_window: 5m", "short_window: 90s"),
                 ["policy.yaml:5:53: tiers[0].short_window: windows are whole minutes of at "
                  "least 5m (the engine's base rate window)"], id="window under 5m"),
    pytest.param(POLICY.replace("kind: AlertPolicy", "kind: AlertPolicies"),
                 ["policy.yaml:2:7: kind: got kind 'AlertPolicies'; write 'kind: AlertPolicy'"],
                 id="wrong kind"),
    pytest.param("apiVersion: slo-engine/v1\nkind: AlertPolicy\ntiers: []\n",
                 ["policy.yaml:3:8: tiers: got []; list should have at least 1 item after "
                  "validation, not 0"], id="no tiers"),
    pytest.param(POLICY.replace("budget_percent: 2}", "budget_percent: 2}\n" + POLICY.split(
        "\n")[5]), ["policy.yaml:7:5: tiers[2]: a second ticket tier 6h/30m (the first is "
                     "tiers[1]); alerts of both would carry the same labels"],
                 id="the same tier twice"),
    pytest.param("tiers: [1h\n", None, id="broken YAML"),
    pytest.param("", ["policy.yaml:1:1: the file is empty; a policy file starts with "
                      "'apiVersion: slo-engine/v1' and 'kind: AlertPolicy'"], id="empty file"),
])
def test_a_bad_policy_file_is_a_located_spec_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   text: str, expected: list[str] | None) -> None:
    monkeypatch.chdir(tmp_path)
    Path("policy.yaml").write_text(text, encoding="utf-8")
    with pytest.raises(SpecError) as caught:
        load_alert_policy("policy.yaml")
    if expected is None:
        assert str(caught.value).startswith("policy.yaml:")
    else:
        assert sorted(str(i) for i in caught.value.issues) == sorted(expected)


def test_a_missing_policy_file_is_a_spec_error(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="cannot read the file"):
        load_alert_policy(tmp_path / "nope.yaml")


# --- properties -----------------------------------------------------------------------------

WINDOWS = {"5m": 300, "10m": 600, "15m": 900, "30m": 1800, "1h": 3600, "2h": 7200}


@st.composite
def policies(draw: st.DrawFn) -> tuple[SLO, int]:
    objective = draw(st.sampled_from([90.0, 99.0, 99.9]))
    period = draw(st.sampled_from(["1d", "7d"]))
    tiers: dict[tuple[str, str, str], TierPolicy] = {}
    for _ in range(draw(st.integers(1, 3))):
        long_window = draw(st.sampled_from(["10m", "15m", "30m", "1h", "2h"]))
        short_window = draw(st.sampled_from([w for w, s in WINDOWS.items()
                                             if s < WINDOWS[long_window]]))
        severity = draw(st.sampled_from(["page", "ticket"]))
        tiers[severity, long_window, short_window] = TierPolicy(
            severity, long_window, short_window,
            draw(st.sampled_from([0.5, 1.0, 2.0, 5.0, 10.0])))
    min_events = draw(st.sampled_from([0, 0, 1, 50, 1000]))
    slo = apply_policy(make_slo(objective, period),
                       AlertPolicy(tuple(tiers.values()), min_events))
    return slo, draw(st.sampled_from([60, 300]))


COUNT = st.one_of(st.integers(0, 30), st.integers(0, 5000), st.integers(10**9, 10**12))


@st.composite
def buckets(draw: st.DrawFn, whole: bool) -> list[tuple[float, float] | None]:
    """Per bucket (total, bad), or None for a missing bucket."""
    out: list[tuple[float, float] | None] = []
    for _ in range(draw(st.integers(1, 90))):
        if draw(st.integers(0, 9)) == 0:
            out.append(None)
            continue
        if whole:
            total = draw(COUNT)
            bad = draw(st.sampled_from([0, total, total // 2, total // 100, total // 1000]))
        else:
            # Counts are 0 or at least a millionth of an event: a subnormal count (5e-324)
            # underflows to 0 as a rate (÷ step), as in Prometheus, but not in the loop.
            total = draw(st.one_of(st.just(0.0), st.floats(1e-6, 1e4), st.floats(1e9, 1e12)))
            bad = total * draw(st.sampled_from([0.0, 1.0, 0.5, 0.01, 0.001])
                               | st.floats(1e-6, 1))
        out.append((float(total), float(bad)))
    return out


def _frame(cells: Sequence[tuple[float, float] | None], step: int) -> pd.DataFrame:
    return ledger([math.nan if c is None else c[0] for c in cells],
                  [math.nan if c is None else c[1] for c in cells], step=step)


def _divide(a: float, b: float) -> float:
    if b == 0:
        return math.nan if a == 0 else math.inf
    return a / b


def reference(slo: SLO, cells: Sequence[tuple[float, float] | None],
              step: int) -> set[tuple[int, int]]:
    """The rules, one bucket and one tier at a time, adding in time order as Prometheus does."""
    budget = float(number(slo.error_budget))
    firing: set[tuple[int, int]] = set()

    def tiled(seconds: float) -> bool:
        return seconds != 300 and seconds % 60 == 0 and seconds > 360

    def window(t: int, seconds: float) -> list[tuple[float, float]]:
        """The buckets summed: [t − W, t], or [t − W + 3m, t − 3m] for a tiled window."""
        if not tiled(seconds):
            back = 0 if seconds == 300 else int(seconds // step)
            return [c for c in cells[max(0, t - back):t + 1] if c is not None]
        lo, hi = int((seconds - 180) // step), -(-180 // step)
        return [c for c in cells[max(0, t - lo):max(0, t - hi + 1)] if c is not None]

    def burn(t: int, seconds: float) -> float:
        samples = window(t, seconds)
        if tiled(seconds):
            now = cells[t]
            if now is None:
                return math.nan
            samples = [*samples, (now[0] * 300 / step, now[1] * 300 / step)]
        if not samples:
            return math.nan
        bad_sum = total_sum = 0.0
        for total, bad in samples:
            bad_sum += bad
            total_sum += total
        return _divide(bad_sum, total_sum) / budget

    def events(t: int, seconds: float) -> float:
        back = int(seconds // step)
        samples = [c for c in cells[max(0, t - back):t + 1] if c is not None]
        if not samples:
            return math.nan
        mean = count = 0.0
        for total, _ in samples:
            count += 1
            mean += total / step / count - mean / count
        return mean * seconds

    # The ledger ends at its last row: nothing is evaluated after it.
    present = [t for t, c in enumerate(cells) if c is not None]
    for t in range(present[-1] + 1 if present else 0):
        for index, tier in enumerate(slo.tiers):
            threshold = float(number(tier.burn_rate))
            if burn(t, tier.long_seconds) > threshold and burn(t, tier.short_seconds) > threshold \
                    and (not slo.min_events or events(t, tier.long_seconds) >= slo.min_events):
                firing.add((index, t))
    return firing


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(policy=policies(), whole=st.booleans(), data=st.data())
def test_vectorised_firing_equals_a_bucket_by_bucket_loop(policy: tuple[SLO, int], whole: bool,
                                                          data: st.DataObject) -> None:
    slo, step = policy
    cells = data.draw(buckets(whole))
    result = backtest(slo, _frame(cells, step), step_seconds=step)
    got = firing_cells(result, slo, start=T0, step=step)
    assert got == reference(slo, cells, step)


@settings(max_examples=120, deadline=None)
@given(policy=policies(), data=st.data())
def test_more_bad_events_never_remove_an_alert(policy: tuple[SLO, int],
                                               data: st.DataObject) -> None:
    slo, step = policy
    cells = data.draw(buckets(True))
    worse: list[tuple[float, float] | None] = []
    for cell in cells:
        if cell is None:
            worse.append(None)
            continue
        total, bad = cell
        extra = data.draw(st.integers(0, 1000).map(float))
        # Either good events turn bad, or new bad events arrive.
        if data.draw(st.booleans()):
            worse.append((total, min(total, bad + extra)))
        else:
            worse.append((total + extra, bad + extra))
    before = backtest(slo, _frame(cells, step), step_seconds=step)
    after = backtest(slo, _frame(worse, step), step_seconds=step)
    assert firing_cells(before, slo, start=T0, step=step) <= \
        firing_cells(after, slo, start=T0, step=step)
    # So each interval that fired lies within one that still fires.
    never = pd.Timestamp.max.tz_localize("UTC")
    for was in before.alerts.itertuples():
        same = after.alerts[(after.alerts["severity"] == was.severity)
                            & (after.alerts["long_window"] == was.long_window)
                            & (after.alerts["short_window"] == was.short_window)]
        assert any(now.start <= was.start and now.end_or_max >= (
            never if pd.isna(was.end) else was.end)
            for now in same.assign(end_or_max=same["end"].fillna(never)).itertuples())


def test_policy_yaml_round_trips_through_the_model(tmp_path: Path) -> None:
    """A policy written from an SLO's own tiers gives back the same thresholds."""
    slo = make_slo()
    tiers = [{"severity": t.severity, "long_window": t.long_window,
              "short_window": t.short_window, "budget_percent": t.budget_fraction * 100}
             for t in slo.tiers]
    path = tmp_path / "same.yaml"
    path.write_text(yaml.safe_dump({"apiVersion": "slo-engine/v1", "kind": "AlertPolicy",
                                    "tiers": tiers}), encoding="utf-8")
    assert apply_policy(slo, load_alert_policy(path)).tiers == slo.tiers


def test_prefix_sum_rounding_never_flips_a_decision() -> None:
    """After a bucket of 10¹⁶ events, prefix sums lose whole events: a window's sum taken as
    a difference of them is off by far more than the gap to a threshold set at the window's
    true burn. The buckets in doubt are decided again, adding in time order like Prometheus."""
    rng = np.random.default_rng(5)
    cells: list[tuple[float, float] | None] = [(1e16, 0.0)]
    for _ in range(40):
        total = float(rng.integers(1, 2000))
        cells.append((total, float(rng.integers(0, int(total) + 1))))
    base = make_slo(90.0, "1d")
    exact = reference_burns(cells, 60, 600, float(number(base.error_budget)))
    for t in range(12, len(cells)):
        for nudge in (-1e-9, 0.0, 1e-9):
            threshold = float(number(exact[t] * (1 + nudge)))
            tier = replace(base.tiers[0], long_window="10m", short_window="5m",
                           long_seconds=600, short_seconds=300, burn_rate=threshold)
            slo = replace(base, tiers=(tier,), min_events=0)
            result = backtest(slo, _frame(cells, 60))
            assert firing_cells(result, slo, start=T0, step=60) == reference(slo, cells, 60)


def reference_burns(cells: Sequence[tuple[float, float] | None], step: int, seconds: int,
                    budget: float) -> list[float]:
    """The long window's burn at every bucket, summed in time order."""
    burns = []
    for t in range(len(cells)):
        bad_sum = total_sum = 0.0
        for cell in cells[max(0, t - seconds // step):t + 1]:
            if cell is not None:
                total_sum += cell[0]
                bad_sum += cell[1]
        burns.append(_divide(bad_sum, total_sum) / budget)
    return burns
