"""The report's window sums (prometheus/windows.py) against the bucket ledger, on a real
Prometheus holding 8 days of recorded rates, one sample a minute as the rules record them.

The series are written as the compiler's `slo:total_events:rate5m` and `slo:bad_events:rate5m`
and backfilled with promtool: an ungrouped SLO with an incident, an SLO grouped by region
whose `us` group has a zero-traffic hour across a tier window's edge (1h24m), an SLO with no traffic
in the newest hour, a latency SLO whose bad rate is missing for an hour (its threshold bucket
was), an SLO recorded only over the last 2 days, one whose second group was, and one never
recorded. Every report row
must be the bucket ledger's: same groups, statuses, firing tiers and partial flags, and the
same events to float precision.
"""

from __future__ import annotations

import itertools
import json
import math
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from slo_engine import app
from slo_engine.budget import accounting as budget
from slo_engine.cli import main
from slo_engine.prometheus.source import PrometheusSource
from slo_engine.prometheus.windows import edges, fetch_report_ledger, split
from slo_engine.spec import conventions as names
from slo_engine.spec.durations import parse_duration
from slo_engine.spec.loader import load_services
from slo_engine.spec.model import Service
from tests.support.prometheus import PrometheusServer, backfill_openmetrics, running_prometheus

DAY, HOUR, MINUTE = 86_400, 3_600, 60
OFFSET = 13  # seconds past the minute, as a rule group's evaluation offset puts samples

SHOP = """\
apiVersion: slo-engine/v1
service: shop
owner: team-shop
slos:
  - name: checkout
    objective: 99.9
    period: 7d
    sli:
      ratio:
        bad: http_requests_total{job="shop", code=~"5.."}
        total: http_requests_total{job="shop"}
  - name: by-region
    objective: 99.5
    period: 7d
    sli:
      ratio:
        bad: http_requests_total{job="shop", code=~"5.."}
        total: http_requests_total{job="shop"}
        group_by: [region]
  - name: night
    objective: 99
    period: 7d
    sli:
      ratio:
        bad: http_requests_total{job="night", code=~"5.."}
        total: http_requests_total{job="night"}
  - name: zones
    objective: 99.5
    period: 7d
    sli:
      ratio:
        bad: http_requests_total{job="zones", code=~"5.."}
        total: http_requests_total{job="zones"}
        group_by: [zone]
  - name: fast
    objective: 99
    period: 7d
    sli:
      latency:
        metric: http_request_duration_seconds
        selector: '{job="shop"}'
        threshold: 500ms
  - name: fresh
    objective: 99.9
    period: 7d
    sli:
      ratio:
        bad: http_requests_total{job="fresh", code=~"5.."}
        total: http_requests_total{job="fresh"}
  - name: absent
    objective: 99.9
    period: 7d
    sli:
      ratio:
        bad: http_requests_total{job="absent", code=~"5.."}
        total: http_requests_total{job="absent"}
"""


@dataclass(frozen=True)
class Recorded:
    server: PrometheusServer
    services: list[Service]
    end: datetime  # the newest sample's hour
    spec_dir: Path


def _series(stamps: np.ndarray, seed: int, incident: int | None = None,
            quiet: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(total, bad) per-second rates at `stamps`: diurnal traffic, a small noisy error ratio,
    an hour at 5 % bad from `incident`, zero traffic over `quiet`."""
    rng = np.random.default_rng(seed)
    total = 40 * (1.2 + np.sin(2 * math.pi * stamps / DAY)) * rng.uniform(0.9, 1.1, len(stamps))
    ratio = rng.uniform(0.0002, 0.002, len(stamps))
    if incident is not None:
        ratio[(stamps >= incident) & (stamps < incident + HOUR)] = 0.05
    if quiet is not None:
        total[(stamps >= quiet[0]) & (stamps < quiet[1])] = 0.0
    return np.round(total, 6), np.round(total * ratio, 6)


def _lines(family: str, labels: str, stamps: np.ndarray, values: np.ndarray) -> list[str]:
    return [f"{family}{{{labels}}} {v} {t}"
            for v, t in zip(values.tolist(), stamps.tolist(), strict=True)]


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory, promtool: str,
             prometheus_binary: str) -> Iterator[Recorded]:
    work = tmp_path_factory.mktemp("windows")
    (work / "slos").mkdir()
    (work / "slos" / "shop.yaml").write_text(SHOP, encoding="utf-8")
    end = (int(datetime.now(UTC).timestamp()) - 4 * HOUR) // HOUR * HOUR
    stamps = np.arange(end - 8 * DAY, end, MINUTE) + OFFSET
    recent = stamps[stamps >= end - 2 * DAY]
    # (labels, stamps, (total, bad), bad stamps kept)
    rows = [
        ('slo="checkout"', stamps, _series(stamps, 1, incident=end - 2 * DAY - 5 * HOUR)),
        ('slo="by-region",region="eu"', stamps, _series(stamps, 2)),
        ('slo="by-region",region="us"', stamps,
         _series(stamps, 3, incident=end - 40 * MINUTE,
                 quiet=(end - 2 * HOUR, end - HOUR))),
        ('slo="night"', stamps, _series(stamps, 4, quiet=(end - HOUR, end))),
        ('slo="fast"', stamps, _series(stamps, 5)),
        ('slo="fresh"', recent, _series(recent, 6)),
        ('slo="zones",zone="a"', stamps, _series(stamps, 7)),
        ('slo="zones",zone="b"', recent, _series(recent, 8)),  # a zone added 2 days ago
    ]
    lines: list[str] = []
    for family, kind in ((names.TOTAL_EVENTS_RATE, 0), (names.BAD_EVENTS_RATE, 1)):
        lines += [f"# HELP {family} Recorded event rate.", f"# TYPE {family} gauge"]
        for labels, when, pair in rows:
            keep = np.ones(len(when), dtype=bool)
            if kind == 1 and labels == 'slo="fast"':  # the threshold bucket went missing
                keep = (when < end - 3 * DAY) | (when >= end - 3 * DAY + HOUR)
            lines += _lines(family, f'service="shop",{labels}', when[keep], pair[kind][keep])
    lines.append("# EOF")
    (work / "recorded.om").write_text("\n".join(lines) + "\n", encoding="utf-8")
    data_dir = work / "prometheus" / "data"
    backfill_openmetrics(promtool, work / "recorded.om", data_dir)
    with running_prometheus(prometheus_binary, work / "prometheus") as server:
        yield Recorded(server, load_services([work / "slos"]), datetime.fromtimestamp(end, UTC),
                       work / "slos")


def both(r: Recorded, at: datetime, calendar: budget.Calendar | None = None) -> tuple[
        list[budget.BudgetStatus], list[budget.BudgetStatus], int]:
    """The report on window sums and on the bucket ledger, and the rows the window sums of
    the SLOs recorded from the range's start took (the others are read bucket by bucket)."""
    start, end = app.report_window(r.services, at, calendar)
    with PrometheusSource(r.server.url) as source:
        windows, _ = fetch_report_ledger(source, r.services, start, end)
        buckets, _ = source.fetch_ledger(r.services, start, end)
    summed = windows[windows["slo"].isin(["checkout", "by-region", "night"])]
    return (budget.report(r.services, windows, at, calendar),
            budget.report(r.services, buckets, at, calendar), len(summed))


def assert_same_reports(got: list[budget.BudgetStatus],
                        want: list[budget.BudgetStatus]) -> None:
    assert [(s.service, s.slo, s.group) for s in got] == \
        [(s.service, s.slo, s.group) for s in want]
    for a, b in zip(got, want, strict=True):
        where = f"{a.slo} {a.group}"
        assert (a.status, a.firing, a.partial) == (b.status, b.firing, b.partial), where
        assert a.total_events == pytest.approx(b.total_events, rel=1e-9, abs=1e-9), where
        assert a.bad_events == pytest.approx(b.bad_events, rel=1e-9, abs=1e-9), where
        assert a.burn_rates.keys() == b.burn_rates.keys(), where
        for window, rate in b.burn_rates.items():
            assert (a.burn_rates[window] is None) == (rate is None), f"{where} {window}"
            if rate is not None:
                assert a.burn_rates[window] == pytest.approx(rate, rel=1e-9, abs=1e-12), \
                    f"{where} {window}"


@pytest.mark.prometheus
@pytest.mark.parametrize("offset", [timedelta(0), timedelta(minutes=7, seconds=13)],
                         ids=["aligned", "between-buckets"])
def test_window_sums_give_the_bucket_ledgers_report(recorded: Recorded,
                                                    offset: timedelta) -> None:
    got, want, summed_rows = both(recorded, recorded.end - offset)
    assert_same_reports(got, want)
    by = {(s.slo, s.group): s for s in got}
    # What the data holds is what the rows say: the fixture is not vacuous.
    assert by[("by-region", "region=us")].total_events > 0
    if not offset:
        assert by[("night", "")].burn_rates["1h"] is None  # no traffic in the newest hour
    assert by[("fresh", "")].partial and not by[("checkout", "")].partial
    assert by[("zones", "zone=b")].partial and not by[("zones", "zone=a")].partial
    assert by[("absent", "")].status == "no_data"
    assert by[("checkout", "")].bad_events > 0.04 * 40 * HOUR * 0.2  # the incident counts
    assert 0 < summed_rows < 4 * 20  # 4 keys, a row per segment: sums, not 5m buckets


@pytest.mark.prometheus
def test_window_sums_hold_a_quiet_hour_on_a_window_edge(recorded: Recorded) -> None:
    """The us group's zero-traffic hour, (end − 2h, end − 1h], holds the 1h24m window's
    start: that window must count its zeros (the same ratio as the 1h window, which holds
    the same events), not drop the group or borrow another segment's events."""
    got, want, _ = both(recorded, recorded.end)
    assert_same_reports(got, want)
    us = next(s for s in got if s.group == "region=us")
    assert us.burn_rates["1h"] is not None and us.burn_rates["1h"] > 1  # its incident
    assert us.burn_rates["1h24m"] == pytest.approx(us.burn_rates["1h"], rel=1e-12)
    assert us.burn_rates["5h36m"] < us.burn_rates["1h"]


@pytest.mark.prometheus
def test_window_sums_follow_a_calendar_period(recorded: Recorded) -> None:
    got, want, _ = both(recorded, recorded.end - timedelta(minutes=2), "week")
    assert_same_reports(got, want)


@pytest.mark.prometheus
def test_a_latency_slo_missing_its_bad_rate_is_read_bucket_by_bucket(
        recorded: Recorded) -> None:
    """Totals without a bad rate are no data in the bucket ledger; summed they would count
    an hour of healthy traffic. That SLO goes through fetch_ledger, with its note."""
    start, end = app.report_window(recorded.services, recorded.end)
    with PrometheusSource(recorded.server.url) as source:
        frame, stats = fetch_report_ledger(source, recorded.services, start, end)
    fast = frame[frame["slo"] == "fast"]
    assert len(fast) > 100  # buckets, not a handful of sums
    assert any("shop/fast" in w and "missing" in w for w in stats.warnings)
    assert stats.missing == ["shop/absent"]


def test_edges_are_aligned_and_cover_every_window() -> None:
    service = load_services_text(SHOP)
    at = datetime(2026, 5, 12, 14, 7, 13, tzinfo=UTC)
    start, _ = app.report_window(service, at)
    found = edges(service, start, at, 300)
    assert all(t % 300 == 0 for t in found) and found == sorted(set(found))
    top = int(at.timestamp()) // 300 * 300
    for window in (*service[0].slos[0].windows, "1h", "7d"):
        seconds = int(parse_duration(window))
        assert (int(at.timestamp()) - seconds) // 300 * 300 in found, window
    assert found[-1] == top and found[0] == int(start.timestamp()) // 300 * 300


@pytest.mark.prometheus
def test_cli_report_reads_window_sums(recorded: Recorded,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    at = recorded.end.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert main(["report", str(recorded.spec_dir), "--prometheus-url", recorded.server.url,
                 "--at", at, "--format", "json"]) == 0
    printed = capsys.readouterr().out
    rows, _ = app.budget_report([recorded.spec_dir], app.prometheus_events(recorded.server.url),
                                recorded.end)
    shown = json.loads(printed)
    assert [(r["slo"], r["labels"]) for r in shown] == [(r.slo, r.labels) for r in rows]
    for row, want in zip(shown, rows, strict=True):
        assert row["total_events"] == pytest.approx(want.total_events, rel=1e-9, abs=1e-9)
        assert row["bad_events"] == pytest.approx(want.bad_events, rel=1e-9, abs=1e-9)


def load_services_text(text: str) -> list[Service]:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "shop.yaml"
        path.write_text(text, encoding="utf-8")
        return load_services([path])


def test_long_segments_are_split_into_aligned_pieces() -> None:
    points = [0, 300, 600, 3000 * 300, 3100 * 300]
    pieces = split(points, 300, parts=4)
    assert set(points) <= set(pieces) and pieces == sorted(set(pieces))
    assert all(p % 300 == 0 for p in pieces)
    assert max(b - a for a, b in itertools.pairwise(pieces)) <= 3100 * 300 / 4 + 300
    assert len(pieces) == len(points) + 3  # the 2,998-step segment in 4


@pytest.mark.prometheus
def test_a_warm_refresh_moves_the_kept_sums_to_the_new_edges(recorded: Recorded,
                                                             tmp_path: Path) -> None:
    """With a state directory each refresh asks only for the stretch each edge moved; its
    reports stay the bucket ledger's, whether the next refresh comes 5 minutes, 17 minutes
    or a day later, or asks about an earlier time (summed afresh)."""
    first = recorded.end - timedelta(hours=20, minutes=3)
    cold_points = 0
    for n, at in enumerate((first, first + timedelta(minutes=5),
                            first + timedelta(minutes=22), recorded.end,
                            first - timedelta(hours=2))):
        start, end = app.report_window(recorded.services, at)
        with PrometheusSource(recorded.server.url, cache_dir=tmp_path) as source:
            frame, stats = fetch_report_ledger(source, recorded.services, start, end)
            buckets, _ = source.fetch_ledger(recorded.services, start, end)
        assert not stats.warnings or all("missing" in w for w in stats.warnings)
        assert_same_reports(budget.report(recorded.services, frame, at),
                            budget.report(recorded.services, buckets, at))
        summed = frame[frame["slo"].isin(["checkout", "by-region", "night"])]
        assert len(summed) < 200  # sums between edges, not buckets
        if n == 0:
            cold_points = stats.points
        elif n == 1:  # the stretches moved: fewer series than the cold sums answered
            assert stats.points < cold_points
    assert list(tmp_path.glob("windows-*.npz"))


@pytest.mark.prometheus
def test_a_changed_sli_or_a_corrupt_state_is_summed_afresh(recorded: Recorded,
                                                           tmp_path: Path) -> None:
    at = recorded.end
    start, end = app.report_window(recorded.services, at)
    with PrometheusSource(recorded.server.url, cache_dir=tmp_path) as source:
        fetch_report_ledger(source, recorded.services, start, end)
        (state,) = tmp_path.glob("windows-*.npz")
        state.write_bytes(b"not a state file")
        frame, stats = fetch_report_ledger(source, recorded.services, start, end)
        assert any("unreadable" in w for w in stats.warnings)
        buckets, _ = source.fetch_ledger(recorded.services, start, end)
    assert_same_reports(budget.report(recorded.services, frame, at),
                        budget.report(recorded.services, buckets, at))
