"""Budget maths against hand-computed cases, and properties that must hold for any data."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slo_engine.budget import accounting as budget
from slo_engine.budget import ledger, report_format
from slo_engine.errors import LedgerError
from slo_engine.spec.loader import load_services
from slo_engine.spec.model import SLO, Service
from tests.support.paths import ROOT

AT = datetime(2026, 5, 31, 0, 0, tzinfo=UTC)
STEP = timedelta(minutes=5)


def _reference() -> SLO:
    return load_services([ROOT / "tests/golden/reference-30d/slo.yaml"])[0].slos[0]


def _frame(slo: SLO, totals: list[float], bads: list[float], end: datetime = AT,
           group: str = "") -> pd.DataFrame:
    times = [end - STEP * (len(totals) - 1 - i) for i in range(len(totals))]
    return ledger.normalise(pd.DataFrame({
        "timestamp": times, "service": slo.service, "slo": slo.name, "group": group,
        "total": totals, "bad": bads}))


def _month(slo: SLO, incident_buckets: int, bad_per_bucket: float) -> pd.DataFrame:
    buckets = 30 * 24 * 12
    bads = [0.0] * (buckets - incident_buckets) + [bad_per_bucket] * incident_buckets
    return _frame(slo, [1000.0] * buckets, bads)


def test_an_hour_long_incident_hand_computed() -> None:
    slo = _reference()
    rows = _month(slo, 12, 100)  # the last hour: 10% errors
    status = budget.status_of(slo, "", rows, AT)
    assert status.total_events == 8_640_000
    assert status.bad_events == 1200
    assert status.error_budget_events == pytest.approx(8640)
    assert status.error_budget_consumed == pytest.approx(1200 / 8640)
    assert status.error_budget_remaining == pytest.approx(1 - 1200 / 8640)
    assert status.sli == pytest.approx(1 - 1200 / 8_640_000)
    assert status.burn_rates["5m"] == pytest.approx(100)
    assert status.burn_rates["1h"] == pytest.approx(100)
    assert status.burn_rates["6h"] == pytest.approx(1200 / 72_000 / 0.001)
    assert status.burn_rates["3d"] == pytest.approx(1200 / 864_000 / 0.001)
    assert status.time_to_exhaustion_s == pytest.approx((1 - 1200 / 8640) * 30 * 86400 / 100)
    assert status.time_to_exhaustion_period_avg_s == pytest.approx(
        (1 - 1200 / 8640) * 30 * 86400 / (1200 / 8640))
    assert status.status == "burning"
    assert status.firing == ("page 1h/5m", "page 6h/30m", "ticket 1d/2h", "ticket 3d/6h")
    assert not status.partial


def test_firing_at_the_threshold_is_decided_as_the_rules_decide() -> None:
    """A 1h and 5m error ratio of exactly 1.44%: 14.4x over the exact budget
    (1 − 0.999 = 0.000999…89) is a hair above the page threshold, but the rules divide by
    0.001 as printed, get 14.4 and do not fire; neither does the report."""
    slo = _reference()
    buckets = 30 * 24 * 12
    totals = [1000.0] * (buckets - 12) + [0.0] * 11 + [1000.0]
    bads = [0.0] * (buckets - 1) + [14.4]
    status = budget.status_of(slo, "", _frame(slo, totals, bads), AT)
    assert status.burn_rates["1h"] == status.burn_rates["5m"] > 14.4
    assert status.firing == ()


def test_overspent_budget_goes_negative_and_is_exhausted() -> None:
    slo = _reference()
    status = budget.status_of(slo, "", _month(slo, 120, 1000), AT)  # 10h at 100% errors
    assert status.error_budget_remaining == pytest.approx(1 - 120_000 / 8640)
    assert status.error_budget_remaining is not None and status.error_budget_remaining < 0
    assert status.status == "exhausted"
    assert status.time_to_exhaustion_s == 0


def test_zero_traffic_leaves_the_budget_untouched() -> None:
    slo = _reference()
    status = budget.status_of(slo, "", _frame(slo, [0.0] * 100, [0.0] * 100), AT)
    assert status.status == "no_data"
    assert status.error_budget_remaining is None
    assert status.burn_rates["1h"] is None
    assert status.firing == ()


def test_a_quiet_hour_inside_a_window_changes_nothing() -> None:
    slo = _reference()
    totals = [1000.0] * 24 + [0.0] * 12 + [1000.0] * 36
    bads = [5.0] * 24 + [0.0] * 12 + [5.0] * 36
    status = budget.status_of(slo, "", _frame(slo, totals, bads), AT)
    assert status.burn_rates["6h"] == pytest.approx(5)
    assert status.burn_rates["5m"] == pytest.approx(5)


def test_healthy_traffic_is_healthy_and_forecasts_nothing() -> None:
    slo = _reference()
    buckets = 30 * 24 * 12
    status = budget.status_of(slo, "", _frame(slo, [1000.0] * buckets, [0.5] * buckets), AT)
    assert status.status == "healthy"
    assert status.error_budget_remaining == pytest.approx(0.5)
    assert status.time_to_exhaustion_s is None
    assert status.time_to_exhaustion_period_avg_s == pytest.approx(0.5 * 30 * 86400 / 0.5)


def test_data_shorter_than_the_period_is_marked_partial() -> None:
    slo = _reference()
    status = budget.status_of(slo, "", _frame(slo, [1000.0] * 12, [0.0] * 12), AT)
    assert status.partial


def test_calendar_month_resets_at_the_boundary() -> None:
    slo = _reference()
    at = datetime(2026, 5, 10, 12, 0, tzinfo=UTC)
    buckets = int((at - datetime(2026, 4, 20, tzinfo=UTC)) / STEP)
    april = int((datetime(2026, 5, 1, tzinfo=UTC) - datetime(2026, 4, 20, tzinfo=UTC)) / STEP)
    bads = [10.0] * april + [0.0] * (buckets - april)  # all errors in April
    rows = _frame(slo, [1000.0] * buckets, bads, end=at)
    month = budget.status_of(slo, "", rows, at, calendar="month")
    assert month.period_start == datetime(2026, 5, 1, tzinfo=UTC)
    assert month.bad_events == 0
    assert month.error_budget_remaining == 1
    rolling = budget.status_of(slo, "", rows, at)
    assert rolling.bad_events == 10 * april
    week = budget.status_of(slo, "", rows, at, calendar="week")
    assert week.period_start == datetime(2026, 5, 4, tzinfo=UTC)  # a Monday


def test_a_calendar_period_at_its_first_instant_is_empty_but_still_burning() -> None:
    """At 00:00 on the 1st the month holds no bucket yet, while the alert windows still
    hold the last hour of April: the status must agree with the firing tiers."""
    slo = _reference()
    at = datetime(2026, 5, 1, tzinfo=UTC)
    buckets = 7 * 24 * 12
    rows = _frame(slo, [1000.0] * buckets, [0.0] * (buckets - 12) + [100.0] * 12, end=at)
    month = budget.status_of(slo, "", rows, at, calendar="month")
    assert month.total_events == 0 and month.sli is None
    assert month.firing == ("page 1h/5m", "page 6h/30m", "ticket 1d/2h", "ticket 3d/6h")
    assert month.status == "burning"
    quiet = _frame(slo, [1000.0] * buckets, [0.0] * buckets, end=at)
    assert budget.status_of(slo, "", quiet, at, calendar="month").status == "no_data"


def test_report_lists_every_group_and_slos_without_data(tmp_path: Path) -> None:
    services = load_services([ROOT / "slo_definitions"])
    csv = tmp_path / "events.csv"
    lines = ["timestamp,slo,total,bad,region"]
    for i in range(24):
        t = (AT - STEP * i).isoformat()
        lines += [f"{t},checkout-success,100,0,eu", f"{t},checkout-success,100,10,us"]
    csv.write_text("\n".join(lines) + "\n")
    rows = budget.report(services, ledger.read_event_file(csv), AT)
    checkout = [r for r in rows if r.slo == "checkout-success"]
    assert [r.labels for r in checkout] == [{"region": "eu"}, {"region": "us"}]
    assert checkout[1].burn_rates["1h"] == pytest.approx(0.1 / 0.005)
    others = [r for r in rows if r.slo != "checkout-success"]
    assert {r.status for r in others} == {"no_data"}
    document = checkout[1].as_json()
    for key in ("slo", "service", "labels", "objective", "period", "sli",
                "error_budget_remaining", "burn_rates", "time_to_exhaustion_s", "status",
                "firing"):
        assert key in document


def test_event_file_errors_name_the_line(tmp_path: Path) -> None:
    csv = tmp_path / "events.csv"
    csv.write_text("timestamp,slo,total,bad\n2026-05-01T00:00:00Z,x,10,20\n")
    with pytest.raises(LedgerError, match=r"line 2: bad .* exceeds total"):
        ledger.read_event_file(csv)
    csv.write_text("time,slo,total,bad\n")
    with pytest.raises(LedgerError, match="missing column"):
        ledger.read_event_file(csv)


def test_over_time_and_daily_spend_are_tidy_frames() -> None:
    slo = _reference()
    rows = _month(slo, 12, 100)
    frame = budget.over_time(slo, rows, step="6h")
    assert {"timestamp", "group", "sli", "burn_rate_1h", "error_budget_remaining"} <= set(
        frame.columns)
    assert frame["error_budget_remaining"].iloc[-1] == pytest.approx(1 - 1200 / 8640)
    daily = budget.budget_spent_per_day(slo, rows)
    assert daily["bad"].sum() == 1200
    assert daily["budget_spent"].iloc[-1] > 0


@settings(max_examples=60, deadline=None)
@given(
    totals=st.lists(st.integers(0, 1000), min_size=12, max_size=60),
    extra=st.integers(1, 50), where=st.integers(0, 59),
)
def test_adding_bad_events_never_raises_the_remaining_budget(
        totals: list[int], extra: int, where: int) -> None:
    slo = _reference()
    bads = [t // 100 for t in totals]
    where %= len(totals)
    before = budget.status_of(slo, "", _frame(slo, totals, bads), AT)  # type: ignore[arg-type]
    more = list(bads)
    more[where] = min(totals[where], more[where] + extra)
    after = budget.status_of(slo, "", _frame(slo, totals, more), AT)  # type: ignore[arg-type]
    if before.error_budget_remaining is not None:
        assert after.error_budget_remaining is not None
        assert after.error_budget_remaining <= before.error_budget_remaining


@settings(max_examples=40, deadline=None)
@given(ratio=st.floats(0, 1), total=st.integers(1, 10_000))
def test_windows_agree_on_a_constant_error_ratio(ratio: float, total: int) -> None:
    slo = _reference()
    buckets = 3 * 24 * 12 + 1
    rows = _frame(slo, [float(total)] * buckets, [total * ratio] * buckets)
    status = budget.status_of(slo, "", rows, AT)
    rates = {v for v in status.burn_rates.values() if v is not None}
    assert max(rates) == pytest.approx(min(rates), rel=1e-9, abs=1e-12)


def test_the_table_never_cuts_names_that_share_a_prefix() -> None:
    """Two rows whose SLO and group differ only at the end must read differently, even
    in a narrow terminal: the name cell folds instead of ending in an ellipsis."""
    slo = _reference()
    groups = ["region=europe-west-1,zone=europe-west-1-a",
              "region=europe-west-1,zone=europe-west-1-b"]
    rows = [budget.status_of(slo, group, _frame(slo, [1000.0] * 12, [1.0] * 12, group=group), AT)
            for group in groups]
    for width in (160, 120, 100):
        text = report_format.table(rows, width=width)
        cells = "".join(line.split("│")[1].strip() for line in text.splitlines()
                        if line.startswith("│"))
        names = "".join(f"{slo.service}/{slo.name} {{{g}}}".replace(" ", "") for g in groups)
        assert "…" not in cells and cells == names


def _services(tmp_path: Path, *files: tuple[str, str, str]) -> list[Service]:
    """Services of one ratio SLO each: (service, slo name, group_by as YAML)."""
    specs = tmp_path / "specs"
    specs.mkdir(exist_ok=True)
    for service, name, group_by in files:
        (specs / f"{service}.yaml").write_text(
            f"apiVersion: slo-engine/v1\nservice: {service}\nowner: team\nslos:\n"
            f"  - name: {name}\n    objective: 99\n    sli:\n      ratio:\n"
            f"        bad: requests_total{{code=~\"5..\"}}\n        total: requests_total\n"
            f"        group_by: {group_by}\n")
    return load_services([specs])


def _events(tmp_path: Path, header: str, *rows: str) -> Path:
    path = tmp_path / "events.csv"
    path.write_text("\n".join([header, *(f"{AT.isoformat()},{row}" for row in rows)]) + "\n")
    return path


def test_a_blank_label_cell_means_no_label(tmp_path: Path) -> None:
    services = _services(tmp_path, ("web", "grouped", "[region]"), ("web2", "plain", "[]"))
    path = _events(tmp_path, "timestamp,slo,total,bad,region",
                   "grouped,100,1,eu", "grouped,100,2,NA", "plain,100,3,")
    rows = budget.report(services, ledger.read_event_file(path, services), AT)
    assert [(r.slo, r.labels) for r in rows] == [
        ("grouped", {"region": "NA"}), ("grouped", {"region": "eu"}), ("plain", {})]


def test_an_slo_name_two_services_share_needs_a_service_column(tmp_path: Path) -> None:
    services = _services(tmp_path, ("web", "availability", "[]"),
                         ("api", "availability", "[]"))
    path = _events(tmp_path, "timestamp,slo,total,bad", "availability,100,1")
    with pytest.raises(LedgerError, match=rf"^{path}: line 2: SLO 'availability' is defined "
                       r"by services 'api' and 'web', but the file has no service column, .*"
                       r"add a service column"):
        ledger.read_event_file(path, services)
    path = _events(tmp_path, "timestamp,service,slo,total,bad",
                   "web,availability,100,1", ",availability,100,1")
    with pytest.raises(LedgerError, match=r"line 3: .* this row leaves service blank"):
        ledger.read_event_file(path, services)
    path = _events(tmp_path, "timestamp,service,slo,total,bad",
                   "web,availability,100,1", "api,availability,100,2")
    rows = budget.report(services, ledger.read_event_file(path, services), AT)
    assert [(r.service, r.bad_events) for r in rows] == [("api", 2), ("web", 1)]


def test_a_grouped_slo_needs_its_group_by_column(tmp_path: Path) -> None:
    services = _services(tmp_path, ("web", "by-handler", "[handler]"))
    path = _events(tmp_path, "timestamp,slo,total,bad", "by-handler,100,1")
    with pytest.raises(LedgerError, match=rf"^{path}: SLO web/by-handler is grouped by "
                       r"'handler', but the file has no handler column"):
        ledger.read_event_file(path, services)
    path = _events(tmp_path, "timestamp,slo,total,bad,handler",
                   "by-handler,100,1,/a", "by-handler,100,1,")
    with pytest.raises(LedgerError, match=r"line 3: SLO web/by-handler is grouped by "
                       r"'handler', but this row leaves handler blank"):
        ledger.read_event_file(path, services)
