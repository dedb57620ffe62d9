"""The evaluator at scale: the same firing and unseen tiers as a plain scan of every result for
each SLO on random inputs (many SLOs, group_by, latency and query SLIs, min_events, series of
SLOs not loaded, NaN and malformed samples), and work that grows with the results, not with
SLOs times results (issue 14: 10,000 SLOs took 45 s a cycle when each SLO scanned them all).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import slo_engine
from slo_engine.paging.burn_alert import BurnAlert
from slo_engine.paging.dedup import tier_id
from slo_engine.paging.evaluator import BurnPlan, burn_queries, firing_tiers, unseen_tiers
from slo_engine.rules.compile import recorded_windows
from slo_engine.spec.burn_rate import fires, rule_budget, rule_threshold
from slo_engine.spec.loader import load_services
from slo_engine.spec.model import SLO

AT = datetime(2026, 5, 12, 14, 0, tzinfo=UTC)
ROOT = Path(__file__).resolve().parent.parent
Results = dict[str, list[dict[str, Any]]]

# Burn rates either side of every default and custom tier's threshold (14.4, 6, 3, 1 ...).
BURNS = (0.0, 0.5, 1.0, 2.9, 3.1, 6.0, 6.1, 14.4, 14.5, 40.0)
EVENTS = (0.0, 49.0, 50.0, 1e6)


def _fleet(directory: Path, services: int, per_service: int, *,
           shapes: bool = True) -> list[SLO]:
    """`services` × `per_service` ratio SLOs; with `shapes`, some grouped by region, some with
    min_events, some with custom tiers."""
    directory.mkdir(parents=True, exist_ok=True)
    for s in range(services):
        slos = []
        for i in range(per_service):
            ratio: dict[str, Any] = {"bad": f'http_requests_total{{route="r{i}", code=~"5.."}}',
                                     "total": f'http_requests_total{{route="r{i}"}}'}
            spec: dict[str, Any] = {"name": f"slo-{i:02d}",
                                    "objective": (99.0, 99.5, 99.9, 99.95)[i % 4],
                                    "sli": {"ratio": ratio}}
            if shapes and i % 3 == 0:
                ratio["group_by"] = ["region"]
            if shapes and i % 4 == 1:
                spec["alerting"] = {"min_events": 50}
            if shapes and i % 5 == 2:
                spec["alerting"] = {"tiers": [
                    {"severity": "page", "long_window": "3h", "short_window": "15m",
                     "budget_percent": 10},
                    {"severity": "ticket", "long_window": "1d", "short_window": "2h",
                     "budget_percent": 20}]}
            slos.append(spec)
        document = {"apiVersion": "slo-engine/v1", "service": f"svc-{s:03d}", "owner": "team",
                    "slos": slos}
        (directory / f"svc-{s:03d}.yaml").write_text(yaml.safe_dump(document),
                                                     encoding="utf-8")
    return [slo for service in load_services([directory]) for slo in service.slos]


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> list[SLO]:
    """The demo's SLOs (latency, query, grouped) and 24 ratio SLOs of several shapes."""
    demo = [slo for service in load_services([ROOT / "slo_definitions"])
            for slo in service.slos]
    return demo + _fleet(tmp_path_factory.mktemp("fleet"), 3, 8)


# --- the reference: each SLO scans every result ------------------------------------------


def _name(window: str, every: set[str]) -> str:
    return f"ratio{'' if window in every else '-slow'}:{window}"


def _scan(results: Mapping[str, list[dict[str, Any]]], name: str,
          slo: SLO) -> dict[tuple[tuple[str, str], ...], float]:
    found: dict[tuple[tuple[str, str], ...], float] = {}
    for item in results.get(name, []):
        labels = item.get("metric", {})
        if (labels.get("service"), labels.get("slo")) != (slo.service, slo.name):
            continue
        try:
            found[BurnAlert.group_for(slo, labels)] = float(item["value"][1])
        except (KeyError, IndexError, TypeError, ValueError):
            continue
    return found


def _burn(ratio: float | None, slo: SLO) -> float | None:
    return None if ratio is None or math.isnan(ratio) else ratio / rule_budget(slo.error_budget)


def _reference_firing(slos: list[SLO], results: Results) -> dict[str, BurnAlert]:
    firing: dict[str, BurnAlert] = {}
    for slo in slos:
        every, _ = recorded_windows(slo)
        for tier in slo.tiers:
            long = _scan(results, _name(tier.long_window, every), slo)
            short = _scan(results, _name(tier.short_window, every), slo)
            events = _scan(results, f"events:{tier.long_window}", slo)
            for group, ratio in long.items():
                burn_long, burn_short = _burn(ratio, slo), _burn(short.get(group), slo)
                if fires(burn_long, burn_short, rule_threshold(tier), events.get(group),
                         slo.min_events):
                    alert = BurnAlert(
                        service=slo.service, slo=slo.name, group=group,
                        severity="page" if tier.severity == "page" else "ticket",
                        long_window=tier.long_window, short_window=tier.short_window,
                        firing=True, at=AT, burn_rate_long=burn_long,
                        burn_rate_short=burn_short)
                    firing[tier_id(alert)] = alert
    return firing


def _reference_unseen(previous: Mapping[str, BurnAlert], slos: list[SLO],
                      results: Results) -> set[str]:
    unseen: set[str] = set()
    for key, alert in previous.items():
        for slo in slos:
            if (slo.service, slo.name) != (alert.service, alert.slo):
                continue
            every, _ = recorded_windows(slo)
            loaded = any((t.long_window, t.short_window, t.severity == "page")
                         == (alert.long_window, alert.short_window, alert.severity == "page")
                         for t in slo.tiers)
            if loaded and any(alert.group not in _scan(results, _name(w, every), slo)
                              for w in (alert.long_window, alert.short_window)):
                unseen.add(key)
    return unseen


# --- random results ----------------------------------------------------------------------


@st.composite
def _results(draw: st.DrawFn, pool: list[SLO]) -> Results:
    """Prometheus' answers to `burn_queries` of the whole pool, of random SLOs (and one not
    in it), groups and values; a few samples NaN or malformed."""
    results: Results = {}
    stranger = ("elsewhere", "ghost", 0.001)
    owners = [(slo.service, slo.name, slo.error_budget) for slo in pool] + [stranger]
    for name in burn_queries(pool):
        items = []
        for service, slo_name, budget in draw(st.lists(st.sampled_from(owners), max_size=40)):
            labels = {"service": service, "slo": slo_name}
            region = draw(st.sampled_from((None, "eu", "us")))
            if region:
                labels["region"] = region
            value: Any = (draw(st.sampled_from(EVENTS)) if name.startswith("events")
                          else budget * draw(st.sampled_from(BURNS)))
            kind = draw(st.sampled_from(("value",) * 8 + ("NaN", "broken")))
            if kind == "broken":
                items.append({"metric": labels, "value": [AT.timestamp()]})
                continue
            items.append({"metric": labels,
                          "value": [AT.timestamp(), "NaN" if kind == "NaN" else str(value)]})
        results[name] = items
    return results


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.data_too_large])
@given(data=st.data())
def test_firing_and_unseen_tiers_equal_a_scan_of_every_result_per_slo(
        pool: list[SLO], data: st.DataObject) -> None:
    loaded = [slo for slo in pool if data.draw(st.booleans())]
    results = data.draw(_results(pool))
    previous = _reference_firing(pool, data.draw(_results(pool)))
    assert firing_tiers(loaded, results, AT) == _reference_firing(loaded, results)
    assert unseen_tiers(previous, loaded, results) == _reference_unseen(previous, loaded,
                                                                        results)


# --- work grows with the results ---------------------------------------------------------


def _burning(slos: list[SLO]) -> Results:
    """Every SLO's series in every window (two regions when grouped), one in ten burning."""
    results: Results = {name: [] for name in burn_queries(slos)}
    for index, slo in enumerate(slos):
        burn = 40.0 if index % 10 == 0 else 0.2
        for region in ("eu", "us") if slo.group_by else ("",):
            labels = {"service": slo.service, "slo": slo.name,
                      **({"region": region} if region else {})}
            for name, items in results.items():
                value = 1e6 if name.startswith("events") else slo.error_budget * burn
                items.append({"metric": labels, "value": [AT.timestamp(), str(value)]})
    return results


def _lines_run(slos: list[SLO], results: Results, previous: Mapping[str, BurnAlert]) -> int:
    """Lines of slo_engine executed by one evaluation's firing and unseen checks: a count
    of the work done, the same on any machine."""
    package = str(Path(slo_engine.__file__).parent)
    count = 0

    def trace(frame: FrameType, event: str, arg: object) -> Any:
        nonlocal count
        if not frame.f_code.co_filename.startswith(package):
            return None
        count += event == "line"
        return trace

    before = sys.gettrace()
    sys.settrace(trace)
    try:
        readings = BurnPlan(slos).readings(results)
        readings.firing(AT)
        readings.unseen(previous)
    finally:
        sys.settrace(before)
    return count


def test_an_evaluation_of_four_times_the_slos_does_four_times_the_work(tmp_path: Path) -> None:
    """Linear, not quadratic: a scan of every SLO's series per SLO and tier does 16 times."""
    work = []
    for services in (5, 20):
        slos = _fleet(tmp_path / str(services), services, 10)
        results = _burning(slos)
        previous = firing_tiers(slos, results, AT)
        assert len(previous) >= services  # the burning tenth fires, each group on its own
        work.append(_lines_run(slos, results, previous))
    assert work[1] <= 4.5 * work[0], work
