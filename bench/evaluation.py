"""Rule evaluation cost in a real Prometheus: slo-engine's rules against the naive scheme.

Both schemes run, one after the other, on hard-linked copies of the same backfilled raw
data (3 days of 1-minute counters, 100 series per SLO). Before a scheme is evaluated live,
the recorded series its long windows read are backfilled level by level, so a 3d
`sum_over_time` reads 3 days of history as it would in production. History is recorded
every minute (Prometheus' default evaluation_interval); live evaluations are sampled at a
faster interval only to collect several per group quickly.

Live rules need raw data at "now", and backfilled blocks that reach past now would make
Prometheus reject rule results as out of bounds. So the raw data runs `future_minutes` past
now and the server accepts out-of-order samples (`out_of_order_time_window`).
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from statistics import mean
from typing import Any

import yaml

from bench import naive
from slo_engine.rules.compile import compile_service
from slo_engine.rules.files import render
from slo_engine.spec.conventions import PERIOD_ERROR_RATIO
from slo_engine.spec.loader import load_services
from tests.support.prometheus import (
    PrometheusServer,
    backfill_levels,
    backfill_openmetrics,
    history_records,
    split_levels,
)
from tests.support.synthetic import (
    DAY,
    HOUR,
    MINUTE,
    Incident,
    Profile,
    Quiet,
    Synthetic,
    generate,
    write_openmetrics,
)

OUT_OF_ORDER_WINDOW = "2h"
HISTORY_INTERVAL = 60.0  # seconds between backfilled samples of recorded series
PERIOD = "30d"
PERIOD_SECONDS = 30 * DAY


@dataclass(frozen=True)
class EvalConfig:
    slos: int = 10
    pods: int = 50  # × 2 codes = 100 raw counter series per SLO
    days: int = 3
    interval: int = 15  # seconds between live evaluations while measuring
    cycles: int = 4  # measured evaluations per group, after one warm-up evaluation
    future_minutes: int = 20
    objective: float = 0.999


@dataclass
class GroupStats:
    name: str
    interval: float  # production interval: the group's own, else HISTORY_INTERVAL
    durations: list[float]
    samples: int | None = None  # samples read per evaluation (first SLO's groups only)

    @property
    def mean(self) -> float:
        return mean(self.durations) if self.durations else float("nan")


@dataclass
class SchemeResult:
    name: str
    rules: int
    groups: list[GroupStats]
    period_ratios: list[float]  # per SLO, at the end of the backfilled history
    truths: list[float]
    backfill_seconds: list[float]
    skip_nan_ratios: list[float] = field(default_factory=list)

    def per_cycle(self, kind: Callable[[str], bool] = lambda _: True) -> float:
        """Seconds to evaluate every (matching) group once."""
        return sum(g.mean for g in self.groups if kind(g.name))

    def per_minute(self, kind: Callable[[str], bool] = lambda _: True) -> float:
        """Seconds of evaluation per minute of wall time at the production intervals."""
        return sum(g.mean * 60 / g.interval for g in self.groups if kind(g.name))

    def samples_per_minute(self) -> float:
        return sum((g.samples or 0) * 60 / g.interval for g in self.groups)

    def samples_per_cycle(self) -> int:
        return sum(g.samples or 0 for g in self.groups)


@dataclass
class EvalResult:
    config: EvalConfig
    raw_series: int
    raw_samples: int
    setup_seconds: float
    ours: SchemeResult
    naive: SchemeResult


def _profile(index: int, start: int) -> Profile:
    """Diurnal traffic, an incident at the trough, one at the peak, a quiet half hour."""
    midnight = start - start % DAY + DAY
    shift = index * 37 * MINUTE
    return Profile(
        peak_per_minute=20_000, swing=10, base_error_ratio=0.0005,
        incidents=(Incident(midnight + 3 * HOUR + shift, 120, 0.05),
                   Incident(midnight + DAY + 15 * HOUR + shift, 60, 0.01)),
        quiet=(Quiet(midnight + DAY + 5 * HOUR + shift, 30),),
    )


def app(index: int) -> str:
    return f"app-{index:02d}"


def selectors(index: int) -> tuple[str, str]:
    """(bad, total) raw selectors of SLO `index`."""
    total = f'bench_requests_total{{app="{app(index)}"}}'
    return f'bench_requests_total{{app="{app(index)}", code="500"}}', total


def our_rules(config: EvalConfig, workdir: Path) -> str:
    slos = []
    for i in range(config.slos):
        bad, total = selectors(i)
        slos.append({"name": app(i), "objective": config.objective * 100, "period": PERIOD,
                     "sli": {"ratio": {"bad": bad, "total": total}}})
    spec = {"apiVersion": "slo-engine/v1", "service": "bench", "owner": "bench", "slos": slos}
    specs = workdir / "specs"
    specs.mkdir(parents=True, exist_ok=True)
    (specs / "bench.yaml").write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    [service] = load_services([specs])
    return render(compile_service(service))


def naive_slos(config: EvalConfig) -> list[naive.NaiveSLO]:
    return [naive.NaiveSLO(app(i), *selectors(i), config.objective, PERIOD)
            for i in range(config.slos)]


def _count_rules(document: dict[str, Any]) -> int:
    return sum(len(g["rules"]) for g in document["groups"])


_METRIC = re.compile(r'^(prometheus_rule_group_last_(?:duration|evaluation_timestamp)_seconds)'
                     r'\{rule_group="[^;"]*;([^"]*)"\} (\S+)$', re.MULTILINE)


def sample_durations(server: PrometheusServer, groups: int, cycles: int,
                     timeout: float) -> dict[str, list[float]]:
    """prometheus_rule_group_last_duration_seconds of each new evaluation of every group,
    the first (warm-up) one dropped, until each group has `cycles` or `timeout` passes."""
    seen: dict[str, float] = {}
    taken: dict[str, list[float]] = defaultdict(list)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        values: dict[tuple[str, str], float] = {
            (m, g): float(v) for m, g, v in _METRIC.findall(server.metrics_text())}
        for (metric, group), stamp in values.items():
            if metric.endswith("timestamp_seconds") and stamp > 0 and seen.get(group) != stamp:
                seen[group] = stamp
                taken[group].append(values[("prometheus_rule_group_last_duration_seconds",
                                            group)])
        if len(taken) == groups and all(len(v) > cycles for v in taken.values()):
            break
        time.sleep(1.0)
    return {g: v[1:cycles + 1] for g, v in taken.items()}


def _hardlink_copy(src: Path, dst: Path) -> None:
    """Blocks are immutable: each scheme gets the same raw data without copying bytes."""
    shutil.copytree(src, dst, copy_function=os.link)


def run_scheme(name: str, rules_text: str, *, period_exprs: Sequence[str],
               skip_nan_exprs: Sequence[str] = (), datasets: Sequence[Synthetic],
               base: Path, workdir: Path, binary: str, promtool: str, start: int,
               config: EvalConfig, first_slo_groups: Callable[[str], bool]) -> SchemeResult:
    scheme_dir = workdir / name
    _hardlink_copy(base, scheme_dir / "data")
    document = yaml.safe_load(rules_text)
    server = PrometheusServer(binary, scheme_dir, (), f"{config.interval}s", OUT_OF_ORDER_WINDOW)
    try:
        server.start()
        levels = split_levels(rules_text, only=history_records(document))
        history_end = int(time.time())
        took = backfill_levels(server, promtool, levels, start, history_end,
                               scheme_dir / "backfill")
        ratios = [server.query_value(expr, history_end) for expr in period_exprs]
        skip_nan = [server.query_value(expr, history_end) for expr in skip_nan_exprs]
        truths = [d.error_ratio(history_end - PERIOD_SECONDS, history_end) for d in datasets]

        # Every group at the fast interval while measuring; costs use the real intervals.
        intervals = {g["name"]: _seconds(g.get("interval")) for g in document["groups"]}
        measured = {"groups": [{k: v for k, v in g.items() if k != "interval"}
                               for g in document["groups"]]}
        rules_file = scheme_dir / "rules.yml"
        rules_file.write_text(yaml.safe_dump(measured, sort_keys=False, width=1_000_000),
                              encoding="utf-8")
        server.stop()
        server.rule_files = (rules_file,)
        server.start()
        live_from = time.time()
        durations = sample_durations(server, len(intervals), config.cycles,
                                     timeout=config.interval * (config.cycles + 3) + 30)
        _check_live(server, document, live_from)
        samples = _samples(server, document, first_slo_groups)
    finally:
        server.stop()
    groups = [GroupStats(g, intervals[g], durations.get(g, []), samples.get(g))
              for g in intervals]
    return SchemeResult(name, _count_rules(document), groups, ratios, truths, took, skip_nan)


def _check_live(server: PrometheusServer, document: dict[str, Any], since: float) -> None:
    """Fail unless live rule results were stored: a rejected append still times the rule."""
    metrics = server.metrics_text()
    rejected = re.findall(r"^prometheus_tsdb_out_of_bound_samples_total\S* (\S+)$", metrics,
                          re.MULTILINE)
    if any(float(v) for v in rejected):
        raise RuntimeError("Prometheus rejected live rule results as out of bounds")
    records = [r["record"] for g in document["groups"] for r in g["rules"] if "record" in r]
    pattern = "|".join(sorted({re.escape(n) for n in records}))
    named = f'label_replace({{__name__=~"{pattern}"}}, "rule", "$1", "__name__", "(.+)")'
    fresh = server.query(f"count(timestamp({named}) > {since:.3f})")
    if not fresh or fresh[0].value < len(records):
        raise RuntimeError(f"live rules recorded {fresh} fresh series, expected at least "
                           f"{len(records)}; see {server.log_file}")


def _seconds(interval: str | None) -> float:
    if interval is None:
        return HISTORY_INTERVAL
    units = {"s": 1, "m": 60, "h": 3600}
    return float(interval[:-1]) * units[interval[-1]]


def _samples(server: PrometheusServer, document: dict[str, Any],
             wanted: Callable[[str], bool]) -> dict[str, int]:
    """Samples each chosen group reads per evaluation (query stats of every rule, now)."""
    at = time.time()
    found: dict[str, int] = {}
    for group in document["groups"]:
        if wanted(group["name"]):
            found[group["name"]] = sum(
                int(server.query_data(rule["expr"], at, stats=True)["stats"]["samples"]
                    ["totalQueryableSamples"])
                for rule in group["rules"])
    return found


def run(workdir: Path, binary: str, promtool: str, config: EvalConfig,
        log: Callable[[str], None] = print) -> EvalResult:
    began = time.monotonic()
    workdir.mkdir(parents=True, exist_ok=True)
    now = int(time.time()) // MINUTE * MINUTE
    start = now - config.days * DAY
    end = now + config.future_minutes * MINUTE
    pods = [f"pod-{p:03d}" for p in range(config.pods)]
    datasets = [generate(start=start, end=end, profile=_profile(i, start), seed=1000 + i,
                         metric="bench_requests", labels={"app": app(i)},
                         instance_label="pod", instances=pods, bad_codes=("500",))
                for i in range(config.slos)]
    openmetrics = workdir / "raw.om"
    samples = write_openmetrics(openmetrics, datasets)
    base = workdir / "base"
    backfill_openmetrics(promtool, openmetrics, base)
    openmetrics.unlink()
    raw_series = sum(len(d.series) for d in datasets)
    setup = time.monotonic() - began
    log(f"  data: {raw_series} raw series, {samples:,} samples backfilled in {setup:.1f} s")

    ours_text = our_rules(config, workdir)
    first = app(0)
    ours_exprs = [rule["expr"] for group in yaml.safe_load(ours_text)["groups"]
                  for rule in group["rules"] if rule.get("record") == PERIOD_ERROR_RATIO]
    log("  slo-engine rules: backfilling history, then measuring live evaluations")
    ours = run_scheme("slo-engine", ours_text, period_exprs=ours_exprs, datasets=datasets,
                      base=base, workdir=workdir, binary=binary, promtool=promtool,
                      start=start, config=config,
                      first_slo_groups=lambda g: g.split(":")[2] == first)

    slos = naive_slos(config)
    ratio5m = 'slo:sli_error:ratio_rate5m{{sloth_id="{}"}}'
    skip = [f"sum_over_time(({ratio5m.format(s.name)} >= 0)[{PERIOD}:1m]) / "
            f"count_over_time(({ratio5m.format(s.name)} >= 0)[{PERIOD}:1m])" for s in slos]
    log("  naive rules: backfilling history, then measuring live evaluations")
    naive_result = run_scheme("naive", naive.render(slos),
                              period_exprs=[naive.period_expr(s) for s in slos],
                              skip_nan_exprs=skip, datasets=datasets, base=base,
                              workdir=workdir, binary=binary, promtool=promtool, start=start,
                              config=config, first_slo_groups=lambda g: g.endswith(f"-{first}"))
    return EvalResult(config, raw_series, samples, setup, ours, naive_result)
