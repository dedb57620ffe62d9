"""PrometheusSource against a real Prometheus holding 8 days of backfilled history.

Synthetic counters (and a latency histogram) are backfilled, then the generated event-rate
rules of the `web` service level by level: its first 3 SLOs over the 8 days, the 17 others
over the last day only (as if deployed then, and to keep the backfill short); the `legacy`
service's rules are never deployed, so its SLOs can only be read from their raw series.
The ledger must match the generator's own counts, cost a constant number of queries, and
turn failures into SourceUnavailable/QueryError naming the URL and the query.
"""

from __future__ import annotations

import dataclasses
import functools
import gc
import http.server
import itertools
import json
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from slo_engine import app
from slo_engine.budget import accounting as budget
from slo_engine.budget import ledger
from slo_engine.budget.backtest import backtest
from slo_engine.errors import QueryError, SourceError, SourceUnavailable
from slo_engine.prometheus.cache import wait_for_cache_writes
from slo_engine.prometheus.source import (
    POINTS_PER_QUERY,
    FetchStats,
    PrometheusSource,
    _chunks,
    _plan,
    _without_missing_bucket,
    events_frame,
    fallback_queries,
    recorded_queries,
)
from slo_engine.rules.compile import compile_service
from slo_engine.rules.files import render
from slo_engine.spec import conventions as names
from slo_engine.spec.loader import load_services
from slo_engine.spec.model import SLO, LatencySLI, QuerySLI, Service
from slo_engine.spec.promql import Selector
from tests.support.processes import free_port
from tests.support.prometheus import (
    PrometheusServer,
    backfill_levels,
    backfill_openmetrics,
    running_prometheus,
    split_levels,
)
from tests.support.synthetic import (
    DAY,
    HOUR,
    MINUTE,
    Incident,
    Profile,
    Synthetic,
    generate,
    write_openmetrics,
)

TOLERANCE = 0.005  # relative, over the whole period
INSTANCES = ("api-1", "api-2", "api-3")
MAIN = 3  # web's availability, by-instance and success: recorded over all 8 days
EXTRAS = 17  # and 17 more recorded over the last day: 20 recorded SLOs

WEB = """\
apiVersion: slo-engine/v1
service: web
owner: team-web
labels: {tier: "1"}
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
  - name: success
    objective: 99
    sli:
      ratio:
        good: http_requests_total{job="api", code="200"}
        total: http_requests_total{job="api"}
""" + "".join(f"""\
  - name: extra-{n:02d}
    objective: {99 + n / 20:g}
    sli:
      ratio:
        bad: http_requests_total{{job="api", code="500"}}
        total: http_requests_total{{job="api"}}
""" for n in range(1, EXTRAS + 1))

LEGACY = """\
apiVersion: slo-engine/v1
service: legacy
owner: team-web
slos:
  - name: raw-ratio
    objective: 99.5
    sli:
      ratio:
        bad: http_requests_total{job="api", code=~"5.."}
        total: http_requests_total{job="api"}
        group_by: [instance]
  - name: raw-query
    objective: 99
    sli:
      query:
        bad: sum(rate(http_requests_total{job="api", code=~"5.."}[{{window}}]))
        total: sum(rate(http_requests_total{job="api"}[{{window}}]))
  - name: raw-latency
    objective: 99
    sli:
      latency:
        metric: http_request_duration_seconds
        selector: '{job="api"}'
        threshold: 500ms
"""


@dataclass(frozen=True)
class History:
    server: PrometheusServer
    requests: Synthetic  # http_requests_total
    latency: Synthetic  # good = faster than 500 ms
    web: Service  # 20 SLOs
    main: Service  # the first 3, recorded over the 8 days
    legacy: Service
    off_bucket: Service  # latency SLOs, two without their bucket, recorded over the last day
    start: datetime  # of the recorded history (the rules' first evaluation)
    end: datetime

    @property
    def url(self) -> str:
        return self.server.url

    def source(self, **kwargs: Any) -> PrometheusSource:
        return PrometheusSource(self.url, **kwargs)


def write_histogram(path: Path, data: Synthetic) -> None:
    """`http_request_duration_seconds` buckets (le=0.5: the good events) and count."""
    stamps = [data.start + MINUTE * i for i in range(data.minutes + 1)]
    lines = ["# HELP http_request_duration_seconds Synthetic latency.",
             "# TYPE http_request_duration_seconds histogram"]
    for row, instance in enumerate(data.instances):
        good = np.concatenate(([0], np.cumsum(data.good[row])))
        count = np.concatenate(([0], np.cumsum(data.good[row] + data.bad[row])))
        labels = f'job="api",instance="{instance}"'
        for suffix, extra, values in (("bucket", ',le="0.5"', good),
                                      ("bucket", ',le="+Inf"', count), ("count", "", count)):
            lines.extend(f"http_request_duration_seconds_{suffix}{{{labels}{extra}}} {v} {t}"
                         for v, t in zip(values.tolist(), stamps, strict=True))
    lines.append("# EOF")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory, promtool: str,
            prometheus_binary: str) -> Iterator[History]:
    work = tmp_path_factory.mktemp("source")
    (work / "slos").mkdir()
    (work / "slos" / "web.yaml").write_text(WEB, encoding="utf-8")
    (work / "slos" / "legacy.yaml").write_text(LEGACY, encoding="utf-8")
    (work / "slos" / "recorded.yaml").write_text(
        OFF_BUCKET.replace("service: legacy", "service: recorded"), encoding="utf-8")
    services = {s.name: s for s in load_services([work / "slos"])}

    end = int(time.time()) // HOUR * HOUR - 4 * HOUR
    start = end - 8 * DAY - HOUR
    day2 = start - start % DAY + 2 * DAY + 14 * HOUR
    profile = Profile(base_error_ratio=0.0005,
                      incidents=(Incident(day2, 90, 0.02), Incident(end - 6 * HOUR, 60, 0.05,
                                                                    ("api-2",))))
    requests = generate(start=start, end=end, profile=profile, seed=7, labels={"job": "api"},
                        instances=INSTANCES, shares=(0.5, 0.3, 0.2))
    latency = generate(start=start, end=end, profile=Profile(base_error_ratio=0.004), seed=8,
                       instances=INSTANCES)
    write_openmetrics(work / "requests.om", [requests])
    write_histogram(work / "latency.om", latency)
    data_dir = work / "prometheus" / "data"
    backfill_openmetrics(promtool, work / "requests.om", data_dir)
    backfill_openmetrics(promtool, work / "latency.om", data_dir)

    web = services["web"]
    main, extras = subset(web, MAIN), dataclasses.replace(web, slos=web.slos[MAIN:])
    with running_prometheus(prometheus_binary, work / "prometheus") as server:
        for name, service, since in (("main", main, start), ("extras", extras, end - DAY),
                                     ("recorded", services["recorded"], end - DAY)):
            levels = split_levels(render(compile_service(service)),
                                  only={names.TOTAL_EVENTS_RATE, names.BAD_EVENTS_RATE})
            backfill_levels(server, promtool, levels, since, end, work / name)
        yield History(server, requests, latency, web, main, services["legacy"],
                      services["recorded"],
                      datetime.fromtimestamp(start, UTC), datetime.fromtimestamp(end, UTC))


def at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def seconds(frame: pd.DataFrame) -> pd.Series:
    return frame["timestamp"].map(lambda t: int(t.timestamp()))


def only(frame: pd.DataFrame, slo: str, group: str | None = None) -> pd.DataFrame:
    rows = frame[frame["slo"] == slo]
    return rows if group is None else rows[rows["group"] == group]


def assert_close(got: float, want: float, what: str) -> None:
    assert abs(got - want) <= TOLERANCE * abs(want), (
        f"{what}: got {got:.6g}, want {want:.6g} ({(got - want) / want:+.3%})")


def assert_matches_truth(frame: pd.DataFrame, slo: str, truth: Synthetic, step: int,
                         instance: str | None = None, *, bad_is: str = "bad") -> None:
    rows = only(frame, slo, None if instance is None else f"instance={instance}")
    assert len(rows), f"{slo}: no rows"
    stamps = seconds(rows)
    bad, total = truth.counts(int(stamps.min()) - step, int(stamps.max()), instance)
    assert_close(rows["total"].sum(), total, f"{slo} {instance or ''} total")
    assert_close(rows["bad"].sum(), bad, f"{slo} {instance or ''} bad")


def subset(service: Service, count: int) -> Service:
    return dataclasses.replace(service, slos=service.slos[:count])


def period(h: History) -> tuple[datetime, datetime]:
    """The 8 days of recorded history (the first hour of raw data is not recorded)."""
    return at(h.start.timestamp() + HOUR), h.end


def recent(h: History) -> tuple[datetime, datetime]:
    """The last 20 hours, where all 20 web SLOs have recorded history."""
    return at(h.end.timestamp() - 20 * HOUR), h.end


# --- against Prometheus -------------------------------------------------------------------


@pytest.mark.prometheus
def test_ledger_totals_match_ground_truth(history: History) -> None:
    frame, stats = history.source().fetch_ledger([history.main], *period(history))
    assert stats.queries == 2 and not stats.fallback and not stats.missing, stats
    assert not stats.partial and not stats.warnings
    assert set(frame["slo"]) == {s.name for s in history.main.slos}
    assert list(frame.columns) == list(ledger.COLUMNS)
    assert str(frame["timestamp"].dt.tz) == "UTC"
    assert (seconds(frame) % 300 == 0).all()
    assert_matches_truth(frame, "availability", history.requests, 300)
    # good-based: bad = total − good
    assert_matches_truth(frame, "success", history.requests, 300)
    assert set(only(frame, "availability")["group"]) == {""}


@pytest.mark.prometheus
def test_query_count_is_constant_from_1_to_20_slos(history: History) -> None:
    figures = []
    for count in (1, 5, 20):
        frame, stats = history.source().fetch_ledger([subset(history.web, count)],
                                                    *recent(history))
        assert frame["slo"].nunique() == count and not stats.fallback
        figures.append((count, stats.queries, stats.bytes, stats.points))
    print("\nSLOs, queries, bytes, points (20 hours at 300 s):", figures)
    assert {queries for _, queries, _, _ in figures} == {2}  # one per recorded metric


@pytest.mark.prometheus
def test_a_range_over_11000_points_is_chunked(history: History) -> None:
    start, end = period(history)
    assert (end - start).total_seconds() / 60 > POINTS_PER_QUERY
    source = history.source()
    frame, stats = source.fetch_ledger([subset(history.web, 1)], start, end, step_seconds=60)
    assert stats.queries == 2 * 2, stats  # two chunks of both recorded metrics
    rows = only(frame, "availability")
    buckets = int((end - start).total_seconds() // 60)
    assert len(rows) == buckets and rows["timestamp"].is_unique
    assert (rows["timestamp"].diff().dropna() == pd.Timedelta(minutes=1)).all()
    assert_matches_truth(frame, "availability", history.requests, 60)

    # The 60 s ledger reproduces exactly what the alert windows read: sum_over_time.
    t = int(end.timestamp()) - 2 * HOUR
    day = rows[(seconds(rows) > t - DAY) & (seconds(rows) <= t)]
    for column, metric in (("total", names.TOTAL_EVENTS_RATE), ("bad", names.BAD_EVENTS_RATE)):
        [sample] = source.instant(
            f'sum_over_time({metric}{{slo="availability", service="web"}}[1d])', at(t))
        want = 60 * float(sample["value"][1])
        assert day[column].sum() == pytest.approx(want, rel=1e-9), column


@pytest.mark.prometheus
def test_group_by_slo_has_one_group_per_label_value(history: History) -> None:
    frame, _ = history.source().fetch_ledger([history.main], *period(history))
    rows = only(frame, "by-instance")
    assert set(rows["group"]) == {f"instance={i}" for i in INSTANCES}
    for instance in INSTANCES:
        assert_matches_truth(frame, "by-instance", history.requests, 300, instance)


@pytest.mark.prometheus
def test_warm_refresh_fetches_only_the_new_range(history: History, tmp_path: Path) -> None:
    start, end = period(history)
    cached = history.source(cache_dir=tmp_path)
    _, cold_stats = cached.fetch_ledger([history.main], start, at(end.timestamp() - DAY))
    assert cold_stats.queries == 2 and cold_stats.cached_rows == 0

    later = at(start.timestamp() + 2 * HOUR)
    warm, stats = cached.fetch_ledger([history.main], later, end)
    newest_cached = end.timestamp() - DAY
    assert stats.queries == 2
    assert stats.ranges == [(at(newest_cached - 300), end)]
    assert stats.cached_rows > 0 and stats.bytes < cold_stats.bytes / 4
    fresh, _ = history.source().fetch_ledger([history.main], later, end)
    pd.testing.assert_frame_equal(ledger.by_key(warm), ledger.by_key(fresh))

    # Again at once: only the last two buckets are asked for again.
    again, stats = cached.fetch_ledger([history.main], later, end)
    assert stats.ranges == [(at(end.timestamp() - 300), end)]
    pd.testing.assert_frame_equal(ledger.by_key(again), ledger.by_key(fresh))
    # Rows older than the start were dropped from the cache.
    wait_for_cache_writes()
    path = cached.cache_path()
    assert path is not None
    assert pd.read_feather(path)["timestamp"].min() > later


@pytest.mark.prometheus
def test_slos_new_to_the_cache_are_fetched_in_full(history: History, tmp_path: Path) -> None:
    start, end = recent(history)
    cached = history.source(cache_dir=tmp_path)
    cached.fetch_ledger([subset(history.web, 2)], start, end)
    frame, stats = cached.fetch_ledger([history.web], start, end)
    # The two cached SLOs need their last buckets, the 18 others everything: 2 ranges.
    assert stats.ranges == [(at(start.timestamp() + 300), end), (at(end.timestamp() - 300), end)]
    assert stats.queries == 4
    fresh, _ = history.source().fetch_ledger([history.web], start, end)
    pd.testing.assert_frame_equal(ledger.by_key(frame), ledger.by_key(fresh))
    # A changed SLI makes its cached rows useless.
    changed = dataclasses.replace(history.web.slos[0], sli=history.web.slos[1].sli)
    service = dataclasses.replace(history.web, slos=(changed, *history.web.slos[1:]))
    frame, stats = cached.fetch_ledger([service], start, end)
    assert stats.ranges == [(at(start.timestamp() + 300), end), (at(end.timestamp() - 300), end)]
    # Regrouped by instance, which the deployed rules do not record: one empty group, not a
    # mix with the rows cached under the old definition.
    assert set(only(frame, "availability")["group"]) == {"instance="}


@pytest.mark.prometheus
def test_a_corrupt_cache_is_refetched_with_a_warning(history: History, tmp_path: Path) -> None:
    start, end = period(history)
    source = history.source(cache_dir=tmp_path)
    path = source.cache_path()
    assert path is not None
    path.write_bytes(b"not arrow")
    frame, stats = source.fetch_ledger([subset(history.web, 2)], start, end)
    assert any("unreadable" in w for w in stats.warnings), stats.warnings
    assert stats.cached_rows == 0 and not stats.partial
    fresh, _ = history.source().fetch_ledger([subset(history.web, 2)], start, end)
    pd.testing.assert_frame_equal(ledger.by_key(frame), ledger.by_key(fresh))
    _, stats = source.fetch_ledger([subset(history.web, 2)], start, end)
    assert not stats.warnings and stats.cached_rows > 0


@pytest.mark.prometheus
def test_slos_without_recorded_series_fall_back_to_raw_queries(history: History) -> None:
    frame, stats = history.source().fetch_ledger([history.legacy], *period(history))
    assert stats.fallback == ["legacy/raw-latency", "legacy/raw-query", "legacy/raw-ratio"]
    assert stats.queries == 2 + 2 * 3 and not stats.missing and not stats.partial
    assert "range): legacy/raw-latency, legacy/raw-query" in stats.summary()
    assert_matches_truth(frame, "raw-query", history.requests, 300)
    assert_matches_truth(frame, "raw-latency", history.latency, 300)
    for instance in INSTANCES:
        assert_matches_truth(frame, "raw-ratio", history.requests, 300, instance)


OFF_BUCKET = """\
apiVersion: slo-engine/v1
service: legacy
owner: team-web
slos:
  - name: raw-latency
    objective: 99
    sli:
      latency:
        metric: http_request_duration_seconds
        selector: '{job="api"}'
        threshold: 500ms
  - name: off-bucket
    objective: 99
    sli:
      latency:
        metric: http_request_duration_seconds
        selector: '{job="api"}'
        threshold: 250ms
  - name: off-bucket-by-instance
    objective: 99
    sli:
      latency:
        metric: http_request_duration_seconds
        selector: '{job="api"}'
        threshold: 250ms
        group_by: [instance]
"""


@pytest.mark.prometheus
def test_a_latency_threshold_without_its_bucket_is_no_data_not_an_outage(
        history: History, tmp_path: Path) -> None:
    """The histogram has buckets 0.5 and +Inf only: a 250ms threshold matches no `le` series.
    The raw fallback must read that as missing data, as the rules do, not as 100% slow."""
    (tmp_path / "legacy.yaml").write_text(OFF_BUCKET, encoding="utf-8")
    services = load_services([tmp_path])
    start, end = period(history)
    frame, notes = app.prometheus_events(history.url)(services, start, end)
    assert set(frame["slo"]) == {"raw-latency"}
    assert_matches_truth(frame, "raw-latency", history.latency, 300)  # with its bucket
    missing = 'http_request_duration_seconds_bucket{le="0.25"} is missing'
    assert any(n.startswith(f"legacy/off-bucket: {missing}, so") for n in notes), notes
    assert any(n.startswith(f"legacy/off-bucket-by-instance: {missing} for instance=api-1, "
                            "instance=api-2, instance=api-3") for n in notes), notes
    assert any("no data: legacy/off-bucket, legacy/off-bucket-by-instance" in n
               for n in notes), notes
    rows = {r.slo: r for r in budget.report(services, frame, end)}
    for name in ("off-bucket", "off-bucket-by-instance"):
        assert (rows[name].status, rows[name].sli, rows[name].bad_events) == (
            "no_data", None, 0), rows[name]
    bad, total = history.latency.counts(int(start.timestamp()), int(end.timestamp()))
    assert rows["raw-latency"].sli == pytest.approx(1 - bad / total, abs=1e-4)


@pytest.mark.prometheus
def test_a_recorded_latency_total_without_a_bad_rate_is_no_data_not_healthy(
        history: History) -> None:
    """With the rules deployed, a missing bucket leaves a recorded total but no bad rate
    (`clamp_min(total - good, 0)` has no sample): the report must not read that as 0 bad,
    100% good, while the rules fire SLODataAbsent."""
    frame, stats = history.source().fetch_ledger([history.off_bucket], *recent(history))
    assert set(frame["slo"]) == {"raw-latency"} and not stats.fallback
    assert_matches_truth(frame, "raw-latency", history.latency, 300)
    assert stats.missing == ["recorded/off-bucket", "recorded/off-bucket-by-instance"]
    missing = 'http_request_duration_seconds_bucket{le="0.25"} is missing'
    assert any(w.startswith(f"recorded/off-bucket: {missing}, so") for w in stats.warnings)
    assert any(w.startswith(f"recorded/off-bucket-by-instance: {missing} for instance=api-1, "
                            "instance=api-2, instance=api-3") for w in stats.warnings)
    rows = {r.slo: r for r in budget.report([history.off_bucket], frame, recent(history)[1])}
    for name in ("off-bucket", "off-bucket-by-instance"):
        assert (rows[name].status, rows[name].sli) == ("no_data", None), rows[name]


@pytest.mark.prometheus
def test_history_from_before_the_rules_were_deployed_comes_from_raw_series(
        history: History) -> None:
    extras = dataclasses.replace(history.web, slos=history.web.slos[MAIN:MAIN + 2])
    frame, stats = history.source().fetch_ledger([extras], *period(history))
    assert stats.fallback == ["web/extra-01", "web/extra-02"] and stats.queries == 2 + 2 * 2
    rows = only(frame, "extra-01")
    stamps = seconds(rows)
    assert (stamps.diff().dropna() == 300).all()  # raw, then recorded, without a gap
    bad, total = history.requests.counts(int(stamps.min()) - 300, int(stamps.max()))
    assert_close(rows["total"].sum(), total, "extra-01 total")
    assert_close(rows["bad"].sum(), 0.7 * bad, "extra-01 bad (code 500: 70 % of 5xx)")


@pytest.mark.prometheus
def test_a_range_reaching_before_all_data_is_not_reported_as_read_from_raw_series(
        history: History) -> None:
    start = history.start - timedelta(days=2)
    frame, stats = history.source().fetch_ledger([history.main], start, history.end)
    ids = [f"web/{slo.name}" for slo in history.main.slos]
    assert stats.unrecorded == sorted(ids) and not stats.fallback and not stats.missing
    assert "history begins after the range" in stats.summary()
    assert "read from raw" not in stats.summary()
    assert frame["timestamp"].min() >= pd.Timestamp(history.start)


@pytest.mark.prometheus
def test_a_failing_fallback_query_makes_the_result_partial(history: History) -> None:
    broken = dataclasses.replace(history.legacy.slos[1], name="broken",
                                 sli=QuerySLI(total="sum(rate(x[{{window}}])) by (", bad="x"))
    service = dataclasses.replace(history.legacy, slos=(history.legacy.slos[0], broken))
    frame, stats = history.source().fetch_ledger([service], *period(history))
    assert stats.partial and stats.missing == ["legacy/broken"]
    assert any(w.startswith("legacy/broken: ") and "bad_data" in w for w in stats.warnings)
    assert set(frame["slo"]) == {"raw-ratio"}


@pytest.mark.prometheus
def test_a_range_without_data_gives_an_empty_ledger(history: History) -> None:
    before = history.start.timestamp() - 30 * DAY
    frame, stats = history.source().fetch_ledger([history.main], at(before), at(before + DAY))
    assert frame.empty and list(frame.columns) == list(ledger.COLUMNS)
    assert len(stats.missing) == 3 and not stats.fallback  # the raw reads found nothing
    assert history.source().instant('{__name__="no_such_metric"}') == []


@pytest.mark.prometheus
def test_query_range_merges_chunks_per_series(history: History) -> None:
    start, end = period(history)
    stats = FetchStats()
    series = history.source().query_range(
        f'{names.TOTAL_EVENTS_RATE}{{slo="by-instance"}}', start, end, 60, stats)
    assert stats.queries == 2
    assert sorted(s["metric"]["instance"] for s in series) == list(INSTANCES)
    assert {len(s["values"]) for s in series} == {(end - start).total_seconds() // 60 + 1}


@pytest.mark.prometheus
def test_instant_returns_vectors_and_scalars(history: History) -> None:
    source = history.source()
    t = history.end.timestamp() - HOUR
    samples = source.instant(f'{names.TOTAL_EVENTS_RATE}{{slo="by-instance"}}', at(t))
    assert {s["metric"]["instance"] for s in samples} == set(INSTANCES)
    assert source.instant("scalar(vector(2))", at(t)) == [{"metric": {}, "value": [t, "2"]}]


@pytest.mark.prometheus
def test_a_bad_query_is_a_query_error_naming_url_and_query(history: History) -> None:
    with pytest.raises(QueryError) as caught:
        history.source().instant("sum(rate(http_requests_total[5m])")
    message = str(caught.value)
    assert history.url in message and "sum(rate(http_requests_total[5m])" in message
    assert "HTTP 400 bad_data" in message and "Fix the query" in message
    assert caught.value.url == history.url


# --- failures, without Prometheus ---------------------------------------------------------


Handler = Callable[[http.server.BaseHTTPRequestHandler], None]


@dataclass
class FakeServer:
    """A tiny HTTP server on 127.0.0.1 answering every request with `respond`."""

    respond: Handler
    requests: list[tuple[str, str, bytes]] = dataclasses.field(default_factory=list)
    url: str = ""


@pytest.fixture
def fake() -> Iterator[Callable[[Handler], FakeServer]]:
    servers: list[http.server.ThreadingHTTPServer] = []

    def start(respond: Handler) -> FakeServer:
        state = FakeServer(respond)

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                state.requests.append(("POST", self.path, body))
                state.respond(self)

            do_GET = do_POST

            def log_message(self, *args: Any) -> None:
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        servers.append(server)
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        state.url = f"http://127.0.0.1:{server.server_address[1]}"
        return state

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def answer(status: int, body: bytes, content_type: str = "application/json") -> Handler:
    def respond(handler: http.server.BaseHTTPRequestHandler) -> None:
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", content_type)
            handler.send_header("Content-Length", str(len(body)))
            handler.end_headers()
            handler.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (the timeout test)
    return respond


def error_body(kind: str, text: str) -> bytes:
    return json.dumps({"status": "error", "errorType": kind, "error": text}).encode()


WEEK = (datetime(2026, 5, 1, tzinfo=UTC), datetime(2026, 5, 8, tzinfo=UTC))


def web_service() -> Service:
    return Service("web", "team", "web.yaml", ())


def fetch_error(url: str, **kwargs: Any) -> SourceError:
    service = dataclasses.replace(web_service(), slos=(probe_slo(),))
    with pytest.raises(SourceError) as caught:
        PrometheusSource(url, **kwargs).fetch_ledger([service], *WEEK)
    return caught.value


@functools.cache
def probe_slo() -> SLO:
    """web's availability SLO, loaded like any other (for tests without Prometheus)."""
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "web.yaml").write_text(WEB, encoding="utf-8")
        [service] = load_services([tmp])
    return service.slos[0]


def test_instant_answers_are_decoded_with_the_cycle_collector_paused(
        fake: Callable[[Handler], FakeServer]) -> None:
    """Paused while any thread's instant query is in flight (10,000 SLOs' answers decode
    several times faster), back on when the last is done, however it ended; left off when
    it was off."""
    vector = json.dumps({"status": "success",
                         "data": {"resultType": "vector", "result": []}}).encode()
    turns = [threading.Event(), threading.Event()]
    arrived: list[int] = []

    def respond(handler: http.server.BaseHTTPRequestHandler) -> None:
        turn = len(arrived)
        arrived.append(turn)
        if turn < len(turns):  # the two overlapping queries; later ones are answered at once
            turns[turn].wait(10)
        answer(200, vector)(handler)

    server = fake(respond)
    answers: list[object] = []

    def query() -> None:
        with PrometheusSource(server.url) as source:
            answers.append(source.instant("up"))

    assert gc.isenabled()
    threads = [threading.Thread(target=query) for _ in turns]
    for thread in threads:
        thread.start()
    _wait_for(lambda: len(arrived) == 2)
    assert not gc.isenabled()
    turns[0].set()
    _wait_for(lambda: len(answers) == 1)
    assert not gc.isenabled()  # the other query is still being answered
    turns[1].set()
    for thread in threads:
        thread.join(10)
    assert answers == [[], []] and gc.isenabled()

    failing = fake(answer(400, error_body("bad_data", "parse error")))
    with pytest.raises(QueryError), PrometheusSource(failing.url) as source:
        source.instant("up(")
    assert gc.isenabled()
    gc.disable()
    try:
        with PrometheusSource(server.url) as source:
            assert source.instant("up") == []
        assert not gc.isenabled()
    finally:
        gc.enable()


def _wait_for(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_connection_refused_is_unavailable_naming_url_and_query() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    began = time.monotonic()
    error = fetch_error(url)
    assert isinstance(error, SourceUnavailable)
    assert "connection refused" in str(error) and url in str(error)
    assert recorded_queries([probe_slo()], 300)["total"] in str(error) and error.query in str(error)
    assert "2026-05-01T00:05:00Z to 2026-05-08T00:00:00Z, step 300s" in str(error)
    assert time.monotonic() - began < 5  # two retries, backoff 0 s then 1 s


def test_credentials_in_the_url_never_reach_an_error() -> None:
    port = free_port()
    error = fetch_error(f"http://ops:s3cret-pass@127.0.0.1:{port}/")
    assert "s3cret-pass" not in str(error) and "s3cret-pass" not in error.url
    assert f"http://***@127.0.0.1:{port}" in str(error)


def test_a_503_server_is_unavailable_after_retries(fake: Callable[[Handler], FakeServer]) -> None:
    server = fake(answer(503, error_body("unavailable", "overloaded")))
    error = fetch_error(server.url, retries=1)
    assert isinstance(error, SourceUnavailable)
    assert "HTTP 503 on every attempt" in str(error) and server.url in str(error)
    assert recorded_queries([probe_slo()], 300)["total"] in str(error)
    assert len(server.requests) == 2  # first attempt and one retry
    method, path, body = server.requests[0]
    # POST with the query in a form body, not in the URL: long queries fit.
    assert (method, path) == ("POST", "/api/v1/query_range")
    assert b"query=avg_over_time%28slo%3Atotal_events" in body and b"step=300" in body


def test_a_500_answer_is_unavailable_with_prometheus_error(
        fake: Callable[[Handler], FakeServer]) -> None:
    server = fake(answer(500, error_body("internal", "disk on fire")))
    error = fetch_error(server.url)
    assert isinstance(error, SourceUnavailable) and "HTTP 500 internal: disk on fire" in str(error)


@pytest.mark.parametrize(("status", "hint"), [
    pytest.param(400, "Fix the query", id="bad query"),
    pytest.param(401, "credentials", id="unauthorised"),
    pytest.param(404, "without /api/v1", id="wrong path"),
    pytest.param(422, "shorter range", id="execution limit"),
])
def test_4xx_answers_are_query_errors(fake: Callable[[Handler], FakeServer], status: int,
                                      hint: str) -> None:
    server = fake(answer(status, error_body("bad_data", "nope")))
    error = fetch_error(server.url)
    assert isinstance(error, QueryError)
    assert f"HTTP {status} bad_data: nope" in str(error) and hint in str(error)
    assert server.url in str(error) and recorded_queries([probe_slo()], 300)["total"] in str(error)
    assert len(server.requests) == 1  # never retried


def test_a_slow_server_times_out(fake: Callable[[Handler], FakeServer]) -> None:
    def slow(handler: http.server.BaseHTTPRequestHandler) -> None:
        time.sleep(1.5)
        answer(200, b"{}")(handler)

    server = fake(slow)
    began = time.monotonic()
    error = fetch_error(server.url, timeout=0.3)
    assert isinstance(error, SourceUnavailable)
    assert "no answer within 0.3 s (timeout)" in str(error) and server.url in str(error)
    assert time.monotonic() - began < 1.2  # a read timeout is not retried
    assert len(server.requests) == 1


@pytest.mark.parametrize("body", [
    pytest.param(b"<html>Grafana</html>", id="html"),
    pytest.param(b'{"hello": "world"}', id="other json"),
    pytest.param(b'{"status": "success", "data": {"result": "x"}}', id="not a matrix"),
    pytest.param(b'{"status": "success", "data": {"result": [{"metric": {}}]}}', id="no values"),
])
def test_an_answer_that_is_not_the_prometheus_api_is_unavailable(
        fake: Callable[[Handler], FakeServer], body: bytes) -> None:
    server = fake(answer(200, body, "text/html"))
    error = fetch_error(server.url)
    assert isinstance(error, SourceUnavailable)
    assert "did not answer like the Prometheus HTTP API" in str(error)
    assert server.url in str(error)


def test_instant_checks_the_answer_too(fake: Callable[[Handler], FakeServer]) -> None:
    server = fake(answer(200, b'{"status": "success", "data": {"result": {"a": 1}}}'))
    with pytest.raises(SourceUnavailable, match="did not answer like the Prometheus HTTP API"):
        PrometheusSource(server.url).instant("up", WEEK[0])


def test_server_warnings_make_the_result_partial(fake: Callable[[Handler], FakeServer]) -> None:
    """Thanos answers with warnings when a store did not respond: data may be missing."""
    body = json.dumps({"status": "success", "data": {"resultType": "matrix", "result": []},
                       "warnings": ["store 10.0.0.7:10901 unavailable"]}).encode()
    server = fake(answer(200, body))
    service = dataclasses.replace(web_service(), slos=(probe_slo(),))
    frame, stats = PrometheusSource(server.url).fetch_ledger([service], *WEEK)
    assert frame.empty and stats.partial and stats.missing == ["web/availability"]
    assert f"Prometheus at {server.url} warned: store 10.0.0.7:10901 unavailable" \
        in stats.warnings
    # 2 recorded rates, then the raw total and bad series as no rate was recorded
    assert stats.queries == 4 and stats.bytes == 4 * len(body)


def test_a_url_without_scheme_is_refused_at_once() -> None:
    with pytest.raises(SourceError, match="must start with http://"):
        PrometheusSource("prometheus:9090")


def test_naive_datetimes_are_refused() -> None:
    source = PrometheusSource("http://127.0.0.1:9")
    with pytest.raises(ValueError, match="timezone-aware"):
        source.fetch_ledger([web_service()], datetime(2026, 5, 1), WEEK[1])


def test_no_slos_need_no_query() -> None:
    frame, stats = PrometheusSource("http://127.0.0.1:9").fetch_ledger([web_service()], *WEEK)
    assert frame.empty and stats == FetchStats()


# --- pure helpers ---------------------------------------------------------------------------


def test_chunks_hold_at_most_11000_points_and_tile_the_range() -> None:
    step = 60
    chunks = list(_chunks(0, 30 * DAY, step))
    assert all((b - a) / step + 1 <= POINTS_PER_QUERY for a, b in chunks)
    assert chunks[0][0] == 0 and chunks[-1][1] == 30 * DAY
    assert all(b + step == c for (_, b), (c, _) in itertools.pairwise(chunks))
    assert list(_chunks(0, 0, step)) == [(0, 0)]


def test_events_turn_rates_into_counts() -> None:
    key_a, key_b = ("web", "a", ""), ("web", "a", "region=eu")
    frame = events_frame([
        (key_a, 0, [[300, "2"], [600, "4"]]),
        (key_a, 0, [[300, "1"]]),  # a second series of the same key is added
        (key_a, 1, [[600, "0.5"]]),  # no bad sample at 300: bad = 0
        (key_b, 1, [[300, "9"]]),  # bad without total: no row
        (key_b, 0, [[600, "1"]]),
        (key_b, 1, [[600, "3"], [900, "NaN"]]),  # bad > total is clamped; NaN dropped
    ], 300, good_based=False)
    got = {(r.group, int(r.timestamp.timestamp())): (r.total, r.bad)
           for r in frame.itertuples()}
    assert got == {("", 300): (900.0, 0.0), ("", 600): (1200.0, 150.0),
                   ("region=eu", 600): (300.0, 300.0)}


def test_events_from_good_series() -> None:
    key = ("web", "a", "")
    frame = events_frame([(key, 0, [[60, "10"], [120, "10"]]), (key, 2, [[60, "9.5"]])], 60,
                    good_based=True)
    assert frame["bad"].tolist() == [30.0, 600.0]  # no good series at 120: all bad


def test_only_groups_without_the_threshold_bucket_lose_their_events() -> None:
    """Per group and bucket: `b` lacks le="0.25" and gets no row; `a` keeps its numbers."""
    sli = LatencySLI(Selector("http_request_duration_seconds", ()), 0.25, ("instance",))
    slo = dataclasses.replace(probe_slo(), sli=sli)
    a, b = ("web", "availability", "instance=a"), ("web", "availability", "instance=b")
    stats = FetchStats()
    keyed = _without_missing_bucket(slo, sli, [
        (a, 0, [[300, "10"], [600, "10"]]), (a, 2, [[300, "9"]]),  # no bucket at 600 either
        (b, 0, [[300, "5"], [600, "5"]]),
    ], stats)
    frame = events_frame(keyed, 300, good_based=True)
    got = {(r.group, int(r.timestamp.timestamp())): (r.total, r.bad) for r in frame.itertuples()}
    assert got == {("instance=a", 300): (3000.0, 300.0)}
    assert stats.warnings == [
        'web/availability: http_request_duration_seconds_bucket{le="0.25"} is missing for '
        "instance=a, instance=b, so the 0.25s threshold has no good events there; those "
        "events are left out (no data), not counted as slow. The threshold must be a bucket "
        "bound of the histogram: `slo-engine validate --prometheus-url URL` lists them"]


@pytest.mark.parametrize(("coverage", "plan"), [
    pytest.param(None, {(3000, 6000): ["s"]}, id="nothing cached"),
    pytest.param((3000, 5400), {(5100, 6000): ["s"]}, id="newer buckets and the last cached"),
    pytest.param((3600, 5400), {(3000, 3300): ["s"], (5100, 6000): ["s"]}, id="older too"),
    pytest.param((300, 1500), {(3000, 6000): ["s"]}, id="cache too old"),
    pytest.param((3000, 9000), {}, id="all cached"),
    pytest.param((3000, 6000), {(5700, 6000): ["s"]}, id="same range again"),
])
def test_plan_asks_only_for_what_the_cache_lacks(
        coverage: tuple[int, int] | None, plan: dict[tuple[int, int], list[str]]) -> None:
    assert _plan({"s": coverage}, 3000, 6000, 300)[0] == plan


def test_plan_refetches_five_minutes_at_short_steps() -> None:
    assert _plan({"s": (0, 6000)}, 60, 6060, 60)[0] == {(5700, 6060): ["s"]}


def test_fallback_queries_per_sli_kind() -> None:
    slo = probe_slo()
    assert fallback_queries(slo, 300) == {
        "total": 'sum(rate(http_requests_total{job="api"}[300s]))',
        "bad": 'sum(rate(http_requests_total{job="api", code=~"5.."}[300s]))'}
    # Never a window under 5m: rate() needs two samples.
    assert "[300s]" in fallback_queries(slo, 60)["total"]
    assert "[3600s]" in fallback_queries(slo, 3600)["total"]
    query = dataclasses.replace(slo, sli=QuerySLI(total="sum(rate(t[{{window}}]))",
                                                  good="sum(rate(g[{{window}}]))"))
    assert fallback_queries(query, 900) == {"total": "sum(rate(t[900s]))",
                                            "good": "sum(rate(g[900s]))"}


def test_recorded_queries_average_each_rate_over_the_bucket() -> None:
    assert recorded_queries([probe_slo()], 300) == {
        "total": 'avg_over_time(slo:total_events:rate5m{service=~"web", slo=~"availability"}'
                 "[299999ms])",
        "bad": 'avg_over_time(slo:bad_events:rate5m{service=~"web", slo=~"availability"}'
               "[299999ms])"}



PER_TARGET = """\
apiVersion: slo-engine/v1
service: probes
owner: team-web
labels: {tier: "1"}
slos:
  - name: reachable
    objective: 99
    sli:
      query:
        bad: sum by (target) (rate(probe_failed_total[{{window}}]))
        total: sum by (target) (rate(probe_total[{{window}}]))
"""
TARGET_RATES = {"a": (2.0, 0.0), "b": (0.2, 0.02)}  # total and bad events per second


def per_target(fake: Callable[[Handler], FakeServer], *, recorded: bool) -> FakeServer:
    """Prometheus with two hours of two targets of PER_TARGET: its recorded series (the
    SLO's labels and `target`) or, with `recorded` False, only the raw query's output."""
    servers: list[FakeServer] = []

    def respond(handler: http.server.BaseHTTPRequestHandler) -> None:
        form = urllib.parse.parse_qs(servers[0].requests[-1][2].decode())
        query, start = form["query"][0], float(form["start"][0])
        bad = "bad_events" in query or "failed" in query
        result = []
        if query.startswith("avg_over_time(slo:") == recorded:
            for target, rates in TARGET_RATES.items():
                labels = {"target": target}
                if recorded:
                    labels |= {"slo": "reachable", "service": "probes", "tier": "1"}
                stamps = range(int(start), int(WEEK[0].timestamp()) + 7201, 300)
                result.append({"metric": labels,
                               "values": [[t, str(rates[bad])] for t in stamps]})
        answer(200, json.dumps({"status": "success", "data": {
            "resultType": "matrix", "result": result}}).encode())(handler)

    servers.append(fake(respond))
    return servers[0]


@pytest.mark.parametrize("recorded", [True, False], ids=["recorded", "raw"])
def test_a_query_sli_summed_by_target_has_a_group_per_target(
        fake: Callable[[Handler], FakeServer], tmp_path: Path, recorded: bool) -> None:
    """The rules alert per target of `sum by (target)`, so the ledger, the report and the
    backtest must too, not merge both targets into one row."""
    (tmp_path / "probes.yaml").write_text(PER_TARGET, encoding="utf-8")
    services = load_services([tmp_path])
    server = per_target(fake, recorded=recorded)
    frame, stats = PrometheusSource(server.url).fetch_ledger(services, *WEEK)
    assert stats.fallback == ([] if recorded else ["probes/reachable"])
    assert sorted(frame["group"].unique()) == ["target=a", "target=b"]
    at = WEEK[0] + timedelta(hours=2)
    rows = budget.report(services, frame, at)
    assert [(r.labels, r.status) for r in rows] == [({"target": "a"}, "healthy"),
                                                     ({"target": "b"}, "exhausted")]
    assert rows[1].burn_rates["1h"] == pytest.approx(10)
    result = backtest(services[0].slos[0], frame)
    assert set(result.alerts["group"]) == {"target=b"}


def test_cache_writes_and_loads_from_many_threads_at_once(tmp_path: Path) -> None:
    """The service saves and loads the ledger cache from its refresh, webhook and web view
    threads: a load must never join a write another thread has queued but not started."""
    from slo_engine.prometheus import cache

    path = tmp_path / "ledger.arrow"
    failures: list[BaseException] = []
    start = threading.Barrier(8)

    def work() -> None:
        start.wait()
        try:
            for _ in range(25):
                cache.save(path, "http://p", 300, ledger.empty(), {}, [])
                cache.load(path, "http://p", 300, [])
        except BaseException as error:
            failures.append(error)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wait_for_cache_writes()
    assert failures == []
    assert cache.load(path, "http://p", 300, []).coverage == {}
