"""Budget charts draw what the numbers say: the figures are inspected, not just rendered.

The demo's month is charted: the burn-down marks every change of its SLO's service and
shades exactly the backtest's alert intervals; the heatmap's cells are the 1h burn-rate
bands of `budget.over_time`; every PNG has the documented pixel size; `report --chart`
writes them and keeps stdout for the report.
"""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.dates import date2num
from matplotlib.image import imread
from PIL import Image

from slo_engine.budget import charts
from slo_engine.changes.events import Change
from slo_engine.cli import main
from slo_engine.demo.month import DemoData, demo_data, write_changes, write_events
from slo_engine.spec.loader import load_services
from slo_engine.spec.model import SLO, Service
from tests.support.paths import ROOT

UNTIL = datetime(2026, 5, 31, 12, tzinfo=UTC)


@pytest.fixture(scope="module")
def services() -> list[Service]:
    return load_services([ROOT / "slo_definitions"])


@pytest.fixture(scope="module")
def data(services: list[Service]) -> DemoData:
    return demo_data(services, UNTIL)


@pytest.fixture(scope="module")
def history(services: list[Service], data: DemoData) -> pd.DataFrame:
    return charts.history(services, data.ledger)


def _slo(services: list[Service], name: str) -> SLO:
    return next(slo for service in services for slo in service.slos if slo.name == name)


def test_history_is_over_time_of_every_slo(services: list[Service], data: DemoData,
                                           history: pd.DataFrame) -> None:
    assert {"sli", "burn_rate_1h", "error_budget_remaining"} <= set(history.columns)
    keys = history.groupby(["service", "slo", "group"]).size()
    assert len(keys) == 6 and set(keys) == {30 * 24}
    last = history[history["timestamp"] == history["timestamp"].max()]
    api = last[last["slo"] == "api-latency"].iloc[0]
    rows = data.ledger[data.ledger["slo"] == "api-latency"]
    assert api["sli"] == pytest.approx(1 - rows["bad"].sum() / rows["total"].sum())


def test_burn_down_marks_the_changes_and_shades_the_alerts(
        services: list[Service], data: DemoData, history: pd.DataFrame) -> None:
    slo = _slo(services, "api-latency")
    (result,) = [r for r in charts.backtests(services, data.ledger) if r.slo == slo.name]
    assert len(result.alerts) >= 2
    figure = charts.burn_down(slo, history, data.changes, result.alerts)
    axes = figure.axes[0]
    own = [c for c in data.changes if c.service == "api"
           and history["timestamp"].min() <= pd.Timestamp(c.time)]
    vertical = [line for line in axes.lines if len(set(line.get_xdata())) == 1
                and list(line.get_ydata()) == [0, 1]]
    assert sorted(float(line.get_xdata()[0]) for line in vertical) == pytest.approx(
        sorted(float(date2num(c.time)) for c in own))
    labels = {text.get_text() for text in axes.texts}
    (incident,) = [b for b in data.burns if b.slo == slo.name]
    assert incident.cause is not None and incident.cause.version is not None
    assert incident.cause.version.rsplit("-", 1)[-1] in labels  # the suspect deploy, labelled
    # one shaded span per severity run: overlapping tiers merged
    spans = sorted((p.get_x(), p.get_x() + p.get_width()) for p in axes.patches)
    pages = result.alerts[result.alerts["severity"] == "page"]
    page_span = (float(date2num(pages["start"].min())), float(date2num(pages["end"].max())))
    assert any(s == pytest.approx(page_span) for s in spans)
    assert len(spans) == len(set(result.alerts["severity"]))
    legend = [t.get_text() for t in axes.get_legend().get_texts()]
    assert {"page firing", "ticket firing", "deploy"} <= set(legend)


def test_burn_down_draws_one_line_per_group_and_nothing_to_shade_without_alerts(
        services: list[Service], history: pd.DataFrame) -> None:
    slo = _slo(services, "checkout-success")
    axes = charts.burn_down(slo, history).axes[0]
    budget_lines = [line for line in axes.lines if line.get_label().startswith("region=")]
    assert [line.get_label() for line in budget_lines] == ["region=eu", "region=us"]
    eu = history[(history["slo"] == slo.name) & (history["group"] == "region=eu")]
    assert np.allclose(budget_lines[0].get_ydata(), eu["error_budget_remaining"],
                       equal_nan=True)
    assert not axes.patches and not axes.texts


def test_a_slo_without_data_says_so(services: list[Service]) -> None:
    slo = _slo(services, "api-latency")
    assert "no data" in charts.burn_down(slo, charts.history([], pd.DataFrame())
                                         ).axes[0].get_title()
    assert "no data" in charts.burn_rate_heatmap(pd.DataFrame()).axes[0].get_title()


def test_sli_chart_draws_the_objective(services: list[Service], history: pd.DataFrame) -> None:
    slo = _slo(services, "search-latency")
    axes = charts.sli_chart(slo, history).axes[0]
    objective = [line for line in axes.lines if line.get_label().startswith("objective")]
    assert [line.get_ydata()[0] for line in objective] == [pytest.approx(0.99)]
    low, high = axes.get_ylim()
    assert low < 0.99 < high <= 1.01


def test_heatmap_cells_are_the_burn_rate_bands(history: pd.DataFrame, data: DemoData) -> None:
    figure = charts.burn_rate_heatmap(history)
    axes = figure.axes[0]
    rows = [label.get_text() for label in axes.get_yticklabels()]
    assert rows[0] == "api/api-latency" and "checkout/checkout-success {region=eu}" in rows
    cells = axes.collections[0].get_array()
    assert cells.shape == (6, 30 * 24)
    api = history[history["slo"] == "api-latency"].sort_values("timestamp")
    expected = np.digitize(np.nan_to_num(api["burn_rate_1h"].to_numpy()), [1, 3, 6, 14.4])
    assert np.array_equal(np.ma.filled(cells[0], -1)[~np.isnan(api["burn_rate_1h"])],
                          expected[~np.isnan(api["burn_rate_1h"])])
    (incident,) = [b for b in data.burns if b.slo == "api-latency"]
    hour = api["timestamp"].searchsorted(pd.Timestamp(incident.end).ceil("1h"))
    assert cells[0][hour] == len(charts.BAND_COLOURS) - 1  # > 14.4x: the page band
    assert np.ma.is_masked(cells[0]) and cells[0].mask.sum() >= 1  # the quiet hour
    labels = [t.get_text() for t in figure.axes[1].get_yticklabels()]
    assert labels == ["< 1x", "1x-3x", "3x-6x", "6x-14.4x", "> 14.4x"]


def test_change_labels() -> None:
    at = datetime(2026, 5, 1, tzinfo=UTC)
    assert charts.change_label(Change(time=at, service="api", kind="deploy",
                                      version="api:2026.05.29-eb704a9")) == "eb704a9"
    assert charts.change_label(Change(time=at, service="api", kind="feature_flag",
                                      version="dark-mode=on")) == "flag"
    assert charts.change_label(Change(time=at, service="api", kind="migration")) == "migration"


def test_write_charts_writes_pngs_of_the_documented_size(
        tmp_path: Path, services: list[Service], data: DemoData) -> None:
    paths = charts.write_charts(tmp_path / "charts", services, data.ledger, data.changes)
    assert len(paths) == 2 * 5 + 1
    assert {p.name for p in paths} >= {"burn-down--checkout--checkout-success.png",
                                       "sli--background-jobs--critical-jobs-on-time.png",
                                       "burn-rate-heatmap.png"}
    for path in paths:
        pixels = imread(path)
        assert pixels.shape[:2] == (charts.SIZE_PX[1], charts.SIZE_PX[0])
        assert pixels[..., :3].std() > 0.05  # something was drawn


def test_report_chart_writes_the_charts_and_keeps_stdout_for_the_report(
        tmp_path: Path, services: list[Service], data: DemoData,
        capsys: pytest.CaptureFixture[str]) -> None:
    events, changes = tmp_path / "events.csv", tmp_path / "changes.jsonl"
    write_events(data.ledger, events)
    write_changes(data.changes, changes)
    out = tmp_path / "charts"
    assert main(["report", str(ROOT / "slo_definitions"), "--data", str(events),
                 "--at", "2026-05-31T12:00:00Z", "--format", "json", "--chart", str(out),
                 "--changes", str(changes)]) == 0
    captured = capsys.readouterr()
    assert len(json.loads(captured.out)) == 6
    assert f"wrote 11 charts to {out}" in captured.err
    assert len(list(out.glob("*.png"))) == 11


def test_report_chart_with_a_bad_changes_file_is_a_clear_error(
        tmp_path: Path, data: DemoData, capsys: pytest.CaptureFixture[str]) -> None:
    events, changes = tmp_path / "events.csv", tmp_path / "changes.jsonl"
    write_events(data.ledger[data.ledger["timestamp"] > pd.Timestamp(UNTIL - timedelta(days=1))],
                 events)
    changes.write_text('{"time": "2026-05-30T10:00:00Z", "service": "api", "kind": "deploy"}\n'
                       '{"time": "2026-05-30T11:00:00Z", "service": "api", "kind": "oops"}\n')
    assert main(["report", str(ROOT / "slo_definitions"), "--data", str(events),
                 "--chart", str(tmp_path / "charts"), "--changes", str(changes)]) == 1
    err = capsys.readouterr().err
    assert f"{changes}:2" in err and "kind" in err and "Traceback" not in err
    assert not (tmp_path / "charts").exists()


def test_report_chart_into_a_file_is_a_clear_error_before_the_report(
        tmp_path: Path, data: DemoData, capsys: pytest.CaptureFixture[str]) -> None:
    events = tmp_path / "events.csv"
    write_events(data.ledger[data.ledger["timestamp"] > pd.Timestamp(UNTIL - timedelta(days=1))],
                 events)
    assert main(["report", str(ROOT / "slo_definitions"), "--data", str(events),
                 "--chart", str(events)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""  # no report printed before the failure
    assert captured.err.startswith(f"error: --chart {events}: cannot make the directory (File "
                                   "exists)")


def test_the_readme_chart_is_a_burn_down_of_the_documented_size() -> None:
    pixels = imread(ROOT / "docs" / "burn-down.png")
    assert pixels.shape[:2] == (charts.SIZE_PX[1], charts.SIZE_PX[0])


def test_the_period_burn_down_draws_the_budget_spent_since_the_period_began(
        services: list[Service], data: DemoData) -> None:
    slo = _slo(services, "api-latency")
    start = UNTIL - timedelta(days=3)  # as a calendar period begun three days ago would
    figure = charts.period_burn_down(slo, data.ledger, start, data.changes, 300)
    assert figure is not None
    axes = figure.axes[0]
    assert axes.get_title() == "api/api-latency: error budget remaining (rolling 30d)"
    (line,) = [line for line in axes.lines if line.get_label() == "remaining"]
    times = pd.DatetimeIndex(line.get_xdata())
    assert start < times[0] and times[-1] <= UNTIL
    assert pd.Series(times).diff().dropna().unique().tolist() == [pd.Timedelta(seconds=8700)]
    rows = data.ledger[(data.ledger["slo"] == slo.name) & (data.ledger["timestamp"] > start)
                       & (data.ledger["timestamp"] <= times[-1])]
    spent = rows["bad"].sum() / (rows["total"].sum() * slo.error_budget)
    assert line.get_ydata()[-1] == pytest.approx(1 - spent)
    assert line.get_ydata()[0] > line.get_ydata()[-1]  # a burn-down
    own = [c for c in data.changes if c.service == "api" and times[0] <= pd.Timestamp(c.time)]
    vertical = [line for line in axes.lines if len(set(line.get_xdata())) == 1]
    assert len(vertical) == len(own) >= 1
    (incident,) = [b for b in data.burns if b.slo == slo.name]
    during = float(date2num(incident.end))  # the page fires some minutes after the onset
    assert start < incident.start
    assert any(p.get_x() <= during <= p.get_x() + p.get_width() for p in axes.patches)
    assert charts.period_burn_down(slo, data.ledger, UNTIL + timedelta(hours=1)) is None


def test_period_step_draws_about_period_points_on_bucket_ends(services: list[Service]) -> None:
    assert charts.period_step(_slo(services, "api-latency"), 300) == "8700s"  # 30d / 298
    assert charts.period_step(_slo(services, "critical-jobs-on-time"), 300) == "300s"
    assert charts.period_step(_slo(services, "critical-jobs-on-time"), 60) == "300s"


def test_png_bytes_is_the_png_save_writes(tmp_path: Path, services: list[Service],
                                          history: pd.DataFrame) -> None:
    figure = charts.burn_down(_slo(services, "api-latency"), history)
    png = charts.png_bytes(figure)
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert png == charts.save(figure, tmp_path / "burn-down.png").read_bytes()
    with Image.open(io.BytesIO(png)) as image:
        assert image.size == charts.SIZE_PX
