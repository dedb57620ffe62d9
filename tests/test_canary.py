"""Canary analysis: the statistics on hand-picked counts, then `slo-engine canary` against a
real Prometheus scraping a baseline and three canaries (bad, equal, low-traffic) whose error
ratios and latencies the test sets.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from slo_engine.cli import main
from slo_engine.errors import ChangeError, ReleaseError
from slo_engine.release.canary import (
    CanaryRun,
    Thresholds,
    Traffic,
    analyse,
    find_slo,
    label_matchers,
    newcombe_bounds,
    share_above,
    traffic_queries,
)
from slo_engine.spec.loader import load_services
from slo_engine.spec.promql import Matcher
from slo_engine.storage.sqlite import StateDB
from tests.support.exporter import Exporter
from tests.support.processes import free_port
from tests.support.prometheus import PrometheusServer

CASES = Path(__file__).parent / "release_cases"
SPEC = CASES / "api.yaml"
BUDGET = 0.01  # the spec's SLOs are 99%


def verdict(canary: tuple[int, int], baseline: tuple[int, int], **limits: float) -> str:
    """Verdict for (bad, requests) of each side on a 99% ratio SLO."""
    return analyse(Traffic(canary[1], canary[0]), Traffic(baseline[1], baseline[0]), BUDGET,
                   Thresholds(**limits)).verdict


# --- statistics ----------------------------------------------------------------------------


def test_three_errors_in_40_against_one_in_40_is_noise() -> None:
    analysis = analyse(Traffic(40, 3), Traffic(40, 1), BUDGET)
    assert analysis.verdict == "inconclusive"
    delta = analysis.checks[0]
    assert (delta.name, delta.result) == ("error_delta", "unclear")
    assert delta.observed == pytest.approx(0.05)  # 5 points observed, 10x the allowed 0.5
    assert delta.low is not None and delta.high is not None
    assert delta.low < 0 < 0.005 < delta.high
    assert delta.p_value == pytest.approx(0.3077, abs=1e-3)  # Fisher, one-sided
    assert "over the threshold, but not significantly at 0.05" in delta.detail


def test_on_a_tighter_slo_the_burn_rate_alone_rolls_three_in_40_back() -> None:
    """At 99.5%, 4x is 2% errors: 3 or more in 40 happen 4.6% of the time."""
    analysis = analyse(Traffic(40, 3), Traffic(40, 1), 0.005)
    assert analysis.verdict == "rollback"
    delta, burn = analysis.checks
    assert (delta.result, burn.result) == ("unclear", "breach")
    assert burn.p_value == pytest.approx(0.0457, abs=1e-3)
    assert "the baseline burns at 5.00x too, so the cause may not be the canary" in burn.detail


def test_three_errors_in_40_against_a_solid_baseline_is_a_rollback() -> None:
    """At the baseline's 0.3%, 3+ errors in 40 requests happen 3 times in 10,000: not noise,
    and even the lower bound of the difference is 5x the allowed delta."""
    analysis = analyse(Traffic(40, 3), Traffic(10_000, 30), BUDGET)
    assert analysis.verdict == "rollback"
    delta, burn = analysis.checks
    assert delta.result == "breach" and delta.low is not None and delta.low > 0.025
    assert delta.p_value is not None and delta.p_value < 0.001
    # 7.5x is over 4x, but 40 requests cannot show it beyond doubt: the rollback rests on the
    # comparison with the baseline alone
    assert burn.result == "unclear"
    assert analysis.reasons() == [f"error_delta: {delta.detail}"]


def test_one_error_in_40_against_a_clean_baseline_is_not_enough() -> None:
    assert verdict((1, 40), (5, 5000)) == "inconclusive"
    assert verdict((1, 40), (5, 5000), max_error_delta=0.004) == "rollback"


def test_equal_traffic_is_promoted_only_with_enough_requests() -> None:
    assert verdict((0, 600), (0, 6000)) == "promote"
    assert verdict((0, 40), (0, 40)) == "inconclusive"  # could still be 6 points worse
    assert verdict((6, 6000), (60, 60_000)) == "promote"
    analysis = analyse(Traffic(6000, 6), Traffic(60_000, 60), BUDGET)
    assert [c.result for c in analysis.checks] == ["pass", "pass"]
    assert analysis.checks[0].high is not None and analysis.checks[0].high < 0.005


def test_thresholds_compare_strictly() -> None:
    # exactly 0.5 points worse: not a breach, and not shown to be within it either
    analysis = analyse(Traffic(60_000, 600), Traffic(60_000, 300), BUDGET)
    assert analysis.checks[0].observed == pytest.approx(0.005)
    assert analysis.checks[0].result == "unclear"
    # exactly 4x: not a breach; the upper bound is over 4x, so no pass either
    burn = analyse(Traffic(100_000, 4000), Traffic(100_000, 4000), BUDGET).checks[1]
    assert burn.observed == pytest.approx(4.0) and burn.result == "unclear"
    assert analyse(Traffic(100_000, 4400), Traffic(100_000, 4400), BUDGET).checks[1].result \
        == "breach"
    assert analyse(Traffic(100_000, 3600), Traffic(100_000, 3600), BUDGET).checks[1].result \
        == "pass"


def test_a_burn_rate_the_slo_cannot_reach_passes() -> None:
    check = analyse(Traffic(100, 100), Traffic(100, 100), 0.5).checks[1]  # 50% SLO: 2x at most
    assert check.result == "pass" and "even 100% errors burn at most 2.00x" in check.detail


def test_no_traffic_decides_nothing() -> None:
    analysis = analyse(Traffic(0, 0), Traffic(5000, 5), BUDGET)
    assert analysis.verdict == "inconclusive"
    assert analysis.reasons() == ["error_delta: no canary requests in the window",
                                  "burn_rate: no canary requests in the window"]
    assert analyse(Traffic(5000, 0), Traffic(0, 0), BUDGET).checks[0].detail == \
        "no baseline requests in the window"


def test_fractional_counts_from_increase_are_rounded() -> None:
    assert Traffic(99.6, 3.4).counts() == (3, 100)
    assert Traffic(10.2, 10.4).counts() == (10, 10)


def test_newcombe_bounds_contain_the_difference() -> None:
    low, high = newcombe_bounds(3, 40, 1, 40, 0.05)
    assert low == pytest.approx(-0.0412, abs=1e-4) and high == pytest.approx(0.1504, abs=1e-4)
    low, high = newcombe_bounds(0, 1000, 0, 1000, 0.05)
    assert low < 0 < high < 0.005


BUCKETS = ((0.05, 900.0), (0.1, 950.0), (0.25, 960.0), (0.5, 1000.0), (float("inf"), 1000.0))


@pytest.mark.parametrize(("bound", "above"), [
    (0.025, 550.0),  # halfway through the first bucket, which starts at 0
    (0.05, 100.0),
    (0.075, 75.0),
    (0.5, 0.0),
    (10.0, 0.0),
])
def test_share_above_interpolates_like_histogram_quantile(bound: float, above: float) -> None:
    assert share_above(BUCKETS, bound) == pytest.approx(above)


def test_share_above_counts_the_inf_bucket_as_slower() -> None:
    assert share_above(((1.0, 90.0), (float("inf"), 100.0)), 5.0) == pytest.approx(10.0)
    # increase() per bucket can break monotonicity by a hair; it is evened out
    assert share_above(((1.0, 90.0), (2.0, 89.9), (float("inf"), 100.0)), 1.5) == \
        pytest.approx(10.0)


def latency(requests: int, slow: int, p95: float) -> Traffic:
    """Requests at 40ms, `slow` of them at 2s (above the 500ms threshold)."""
    fast = float(requests - slow)
    buckets = ((0.05, fast), (0.1, fast), (0.5, fast), (2.5, float(requests)),
               (float("inf"), float(requests)))
    return Traffic(requests, slow, p95, buckets)


def test_p95_breach_needs_significance() -> None:
    limits = Thresholds(max_error_delta=1.0, max_burn_rate=100)  # test p95 alone
    base = latency(10_000, 0, 0.0475)
    slow = analyse(latency(5000, 600, 2.0), base, BUDGET, limits, latency=True)
    assert [c.name for c in slow.checks] == ["error_delta", "burn_rate", "p95_delta"]
    assert slow.checks[2].result == "breach" and slow.verdict == "rollback"
    assert slow.checks[2].observed == pytest.approx(2.0 / 0.0475 - 1)
    # the same p95 from 40 requests: 4 slow ones (10%) are not beyond doubt more than 5%
    few = analyse(latency(40, 4, 2.0), base, BUDGET, limits, latency=True)
    assert few.checks[2].result == "unclear"
    same = analyse(latency(5000, 0, 0.0475), base, BUDGET, limits, latency=True)
    assert same.checks[2].result == "pass" and same.verdict == "promote"
    missing = analyse(latency(5000, 0, 0.0475), Traffic(0, 0), BUDGET, limits, latency=True)
    assert missing.checks[2].result == "unclear"


# --- selectors, SLOs and queries -----------------------------------------------------------


def test_label_matchers_take_braces_or_not() -> None:
    assert label_matchers('track="canary"') == (Matcher("track", "=", "canary"),)
    assert label_matchers('{track=~"canary|preview", zone!="b"}') == (
        Matcher("track", "=~", "canary|preview"), Matcher("zone", "!=", "b"))


@pytest.mark.parametrize(("text", "message"), [
    ('http_requests_total{track="canary"}', "give label matchers only, without a metric name"),
    ("", "--canary needs at least one label matcher"),
    ('track="canary', 'unterminated string starting with "; add the closing "'),
    ("track=canary", "(at character 7)"),
    ('{track=canary}', "(at character 8)"),
])
def test_bad_selectors_say_what_to_write(text: str, message: str) -> None:
    with pytest.raises(ReleaseError, match="--canary") as caught:
        label_matchers(text)
    assert message in str(caught.value)


def test_find_slo_by_name_or_service_and_name() -> None:
    services = load_services([SPEC, CASES / "checkout.yaml"])
    assert find_slo(services, "api/availability").service == "api"
    assert find_slo(services, "custom").name == "custom"
    with pytest.raises(ReleaseError, match=r"several SLOs \(api/availability, "
                       r"checkout/availability\); write SERVICE/NAME"):
        find_slo(services, "availability")
    with pytest.raises(ReleaseError, match="did you mean 'api/latency'"):
        find_slo(services, "api/latncy")


def test_queries_narrow_the_slis_own_selectors() -> None:
    [service] = load_services([SPEC])
    slos = {slo.name: slo for slo in service.slos}
    canary = (Matcher("track", "=", "canary"),)
    ratio = traffic_queries(slos["availability"], canary, 600)
    assert ratio == {
        "total": 'sum(increase(http_requests_total{job="api", track="canary"}[10m]))',
        "bad": 'sum(increase(http_requests_total{job="api", code=~"5..", track="canary"}[10m]))',
    }
    latency_queries = traffic_queries(slos["latency"], canary, 30)
    assert latency_queries["total"] == \
        'sum(increase(http_request_duration_seconds_count{job="api", track="canary"}[30s]))'
    assert 'le="0.5"' in latency_queries["good"]
    assert latency_queries["p95"].startswith("histogram_quantile(0.95, sum by (le) (increase(")
    with pytest.raises(ReleaseError, match="query SLI: arbitrary PromQL"):
        traffic_queries(slos["custom"], canary, 600)


def test_a_version_the_change_event_refuses_is_a_clear_error() -> None:
    slo = find_slo(load_services([SPEC]), "api/availability")
    run = CanaryRun(slo, 'track="canary"', 'track="stable"', 600,
                    datetime(2026, 5, 12, 12, tzinfo=UTC),
                    analyse(Traffic(40, 3), Traffic(40, 1), BUDGET))
    assert run.change("v2").version == "v2"
    with pytest.raises(ChangeError, match=r"^canary --record: version: "):
        run.change("v2\n")


# --- against a real Prometheus -------------------------------------------------------------


@dataclass
class Fleet:
    prometheus: PrometheusServer
    exporters: dict[str, Exporter]


READY_SAMPLES = 5  # scrapes of every target before the tests compare (5 s at 1 s)
READY_TIMEOUT = 60.0


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, prometheus_binary: str) -> Iterator[Fleet]:
    exporters = {
        "stable": Exporter(rps=400, error_ratio=0.001, labels={"track": "stable"}),
        "canary-bad": Exporter(rps=400, error_ratio=0.1, slow_ratio=0.2,
                               labels={"track": "canary-bad"}),
        "canary-good": Exporter(rps=400, error_ratio=0.001, labels={"track": "canary-good"}),
        "canary-low": Exporter(rps=2, error_ratio=0.001, labels={"track": "canary-low"}),
    }
    for exporter in exporters.values():
        exporter.start()
    server = PrometheusServer(prometheus_binary, tmp_path_factory.mktemp("canary"),
                              scrape_interval="1s", evaluation_interval="1s",
                              scrape_targets={"api": [e.target for e in exporters.values()]})
    try:
        server.start()
        deadline = time.monotonic() + READY_TIMEOUT
        query = 'count_over_time(http_requests_total{code="200"}[1m])'
        while True:
            samples = server.query(query)
            if len(samples) == len(exporters) and min(s.value for s in samples) >= READY_SAMPLES:
                break
            assert time.monotonic() < deadline, f"Prometheus has not scraped enough: {samples}"
            time.sleep(0.5)
        yield Fleet(server, exporters)
    finally:
        server.stop()
        for exporter in exporters.values():
            exporter.stop()


def canary(fleet: Fleet, slo: str, track: str, *extra: str) -> int:
    return main(["canary", "--slo", slo, "--canary", f'track="{track}"', "--baseline",
                 'track="stable"', "--duration", "30s", str(SPEC), "--prometheus-url",
                 fleet.prometheus.url, *extra])



@pytest.mark.prometheus
@pytest.mark.parametrize("slo", ["api/availability", "api/latency"])
def test_a_bad_canary_is_rolled_back(fleet: Fleet, slo: str, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "state.db"
    assert canary(fleet, slo, "canary-bad", "--format", "json", "--record", "--state",
                  str(state), "--version", "api:v2") == 1
    report = json.loads(capsys.readouterr().out)
    assert (report["verdict"], report["exit_code"], report["slo"]) == ("rollback", 1, slo)
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["error_delta"]["result"] == "breach"
    assert checks["burn_rate"]["result"] == "breach"
    share = 0.1 if slo == "api/availability" else 0.2  # errors, or requests over 500ms
    assert report["canary"]["error_ratio"] == pytest.approx(share, abs=0.01)
    assert report["baseline"]["error_ratio"] < 0.01
    assert report["canary"]["requests"] > 1000
    if slo == "api/latency":
        assert checks["p95_delta"]["result"] == "breach"
        assert report["canary"]["p95_seconds"] > 1.0 > 0.1 > report["baseline"]["p95_seconds"]
    else:
        assert "p95_delta" not in checks
    assert 'track="canary-bad"' in report["queries"]["canary"]["total"]
    with StateDB(state) as db:
        [change] = db.changes(["api"])
    assert (change.source, change.kind, change.version) == ("canary", "deploy", "api:v2")
    assert change.description is not None
    assert change.description.startswith(f"canary rollback on {slo} over 30s: error_delta: ")


@pytest.mark.prometheus
@pytest.mark.parametrize("slo", ["availability", "api/latency"])
def test_an_equal_canary_is_promoted(fleet: Fleet, slo: str,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert canary(fleet, slo, "canary-good") == 0
    out = capsys.readouterr().out
    assert out.startswith(f"canary api/{slo.removeprefix('api/')} over 30s: PROMOTE\n")
    assert "breach" not in out and "unclear" not in out


@pytest.mark.prometheus
def test_a_low_traffic_canary_is_inconclusive(fleet: Fleet,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert canary(fleet, "api/availability", "canary-low", "--format", "json") == 2
    report = json.loads(capsys.readouterr().out)
    assert report["verdict"] == "inconclusive"
    assert 0 < report["canary"]["requests"] < 100
    assert report["checks"][0]["result"] == "unclear"
    assert "more requests are needed" in report["checks"][0]["detail"]
    # a selector matching nothing is no traffic, not a promotion
    assert canary(fleet, "api/availability", "canary-none") == 2
    assert "no canary requests in the window" in capsys.readouterr().out


@pytest.mark.prometheus
def test_thresholds_are_configurable(fleet: Fleet, capsys: pytest.CaptureFixture[str]) -> None:
    # 10% errors burn 10x: allowed, and a 15-point delta allowed too, it is promoted
    assert canary(fleet, "api/availability", "canary-bad", "--max-error-delta", "15%",
                  "--max-burn-rate", "20x") == 0
    assert "PROMOTE" in capsys.readouterr().out


@pytest.mark.prometheus
def test_a_latency_threshold_between_buckets_cannot_be_analysed(
        fleet: Fleet, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Without a bucket at 300ms every request would count as slow: a rollback of any
    canary, for a mistake in the SLO."""
    spec = tmp_path / "api.yaml"
    spec.write_text(SPEC.read_text().replace("threshold: 500ms", "threshold: 300ms"))
    assert main(["canary", "--slo", "api/latency", "--canary", 'track="canary-good"',
                 "--baseline", 'track="stable"', "--duration", "30s", str(spec),
                 "--prometheus-url", fleet.prometheus.url]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "api/latency: its histogram has no bucket at the SLO's threshold (0.3s), only " \
        "le = 0.05, 0.1, 0.25, 0.5, 1, 2.5;" in captured.err


def test_prometheus_down_exits_2_naming_the_url(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    assert main(["canary", "--slo", "api/availability", "--canary", 'track="canary"',
                 "--baseline", 'track="stable"', str(SPEC), "--prometheus-url", url]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(f"error: Prometheus at {url} is unavailable: ")
    assert "Traceback" not in captured.err
    assert main(["canary", "--slo", "api/availability", "--canary", 'track="canary"',
                 "--baseline", 'track="stable"', str(SPEC), "--prometheus-url", url,
                 "--format", "json"]) == 2
    answer = json.loads(capsys.readouterr().out)
    assert answer["verdict"] == "inconclusive" and answer["exit_code"] == 2
    assert answer["error"].startswith(f"Prometheus at {url} is unavailable: ")


def test_what_cannot_be_analysed_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    base = ["canary", str(SPEC), "--prometheus-url", url, "--baseline", 'track="stable"']
    assert main([*base, "--slo", "api/custom", "--canary", 'track="canary"']) == 2
    assert "query SLI" in capsys.readouterr().err
    assert main([*base, "--slo", "api/availability", "--canary", '{track="stable"}']) == 2
    assert "select the same series" in capsys.readouterr().err
    assert main([*base, "--slo", "api/availability", "--canary", 'track="canary"',
                 "--duration", "500ms"]) == 2
    assert "--duration must be at least 1s" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        main([*base, "--slo", "api/availability", "--canary", 'track="canary"',
              "--alpha", "0.7"])
    assert exited.value.code == 2
    assert "significance level between 0 and 0.5" in capsys.readouterr().err
