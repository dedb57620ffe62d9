"""The service's evaluation loop at 500, 2,000 and 10,000 SLOs, against a per-SLO,
per-window query loop at 500.

For each size, a real Prometheus holds the compiler's recorded error ratios of every window
the default tiers read (5m … 3d) for that many SLOs, one sample a minute, backfilled from
OpenMetrics with promtool; a few SLOs have incidents, so tiers start and stop firing during
the run. Then `Engine.evaluate` runs once per minute of that data, back to back: the instant
queries, the firing tiers, the transitions, the pages (rendered, correlated and delivered to
a terminal that is thrown away) and the state database writes. Each cycle is timed, and the
process's resident memory read after it.

The naive loop reads the same series one SLO and one window at a time, as a scheduler
would that queries per SLO; it runs a few cycles only (its cost is flat), on the same data
and at the same instants, and must find the same firing tiers. It runs at 500 SLOs only:
its cost grows with the SLOs (3,500 queries a cycle at 500, 70,000 at 10,000), and minutes
per cycle at the larger sizes would say nothing the 500 figure does not.

"Now" is a few hours before the wall clock: backfilled blocks must stay clear of the head
block, whose range a running Prometheus is still writing.
"""

from __future__ import annotations

import os
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console

from bench.refresh import backfill
from slo_engine.config import EngineConfig
from slo_engine.paging.burn_alert import BurnAlert
from slo_engine.paging.evaluator import SLOW_LOOKBACK, burn_queries, firing_tiers
from slo_engine.paging.slack import DryRunDelivery
from slo_engine.prometheus.source import PrometheusSource
from slo_engine.service.engine import Engine
from slo_engine.spec.conventions import error_ratio_metric
from slo_engine.spec.loader import load_services
from slo_engine.spec.model import SLO
from slo_engine.storage.sqlite import StateDB
from tests.support.prometheus import PrometheusServer

MINUTE = 60
HOUR = 3600
TARGET_CYCLE_SECONDS = 10.0  # every cycle at the largest size, those with pages included
TARGET_RSS_GROWTH = 0.10  # after warm-up
WINDOWS = ("5m", "30m", "1h", "2h", "6h", "1d", "3d")


@dataclass(frozen=True)
class ServiceConfig:
    services: int = 50
    slos_per_service: int = 10
    cycles: int = 60  # one per minute of data: an hour of evaluations
    warmup: int = 5  # cycles before memory is expected to be flat
    naive_cycles: int = 3  # 0: no naive loop
    incidents: int = 12  # SLOs with an incident during the run
    clearance_hours: int = 3  # `at` this long before the wall clock (head block clear)
    seed: int = 11

    @property
    def slos(self) -> int:
        return self.services * self.slos_per_service


@dataclass
class ServiceResult:
    config: ServiceConfig
    queries_per_cycle: int
    cycle_seconds: list[float]
    rss_bytes: list[int]  # after each cycle
    transitions: int  # tiers that started or stopped firing over the run
    pages: int  # Slack calls the notifier made (posts, updates, replies)
    naive_queries_per_cycle: int
    naive_cycle_seconds: list[float]
    same_firing: bool  # the naive loop found the same firing tiers at every instant
    samples: int
    setup_seconds: float
    firing_at: list[int] = field(default_factory=list)  # tiers firing, per cycle
    changed_at: list[int] = field(default_factory=list)  # transitions, per cycle

    @property
    def steady(self) -> list[float]:
        return self.cycle_seconds[self.config.warmup:]

    @property
    def paging_seconds(self) -> list[float]:
        """The cycles with transitions (pages, updates and resolutions to send)."""
        return [t for t, n in zip(self.cycle_seconds, self.changed_at, strict=True) if n]

    @property
    def rss_growth(self) -> float:
        """Largest resident memory after warm-up relative to the first one after it."""
        after = self.rss_bytes[self.config.warmup:]
        return max(after) / after[0] - 1 if after else 0.0


# --- data --------------------------------------------------------------------------------


def service_name(index: int) -> str:
    return f"svc-{index:02d}"


def write_specs(directory: Path, config: ServiceConfig) -> None:
    """Ratio SLOs with the default four tiers (their raw counters are never read here)."""
    directory.mkdir(parents=True, exist_ok=True)
    for s in range(config.services):
        service = service_name(s)
        slos = [{"name": f"slo-{i:02d}", "objective": (99.0, 99.5, 99.9, 99.95)[i % 4],
                 "sli": {"ratio": {
                     "bad": f'http_requests_total{{service="{service}", route="r{i}", '
                            'code=~"5.."}',
                     "total": f'http_requests_total{{service="{service}", route="r{i}"}}'}}}
                for i in range(config.slos_per_service)]
        spec = {"apiVersion": "slo-engine/v1", "service": service, "owner": f"team-{s % 7}",
                "runbook_url": f"https://runbooks.example.com/{service}", "slos": slos}
        (directory / f"{service}.yaml").write_text(yaml.safe_dump(spec, sort_keys=False),
                                                   encoding="utf-8")


def _ratios(slo: SLO, minutes: int, incident: tuple[int, int] | None,
            rng: random.Random) -> dict[str, list[float]]:
    """Each window's error ratio per minute: a quiet base, and during an incident a burn
    that fires the page tiers (fast windows) and the ticket tiers (slow ones)."""
    budget = slo.error_budget
    out: dict[str, list[float]] = {}
    for window in WINDOWS:
        base = [budget * rng.uniform(0.05, 0.5) for _ in range(minutes)]
        if incident is not None:
            burn = 40.0 if window in ("5m", "30m", "1h", "6h") else 4.0
            for minute in range(*incident):
                base[minute] = budget * burn
        out[window] = base
    return out


def write_openmetrics(path: Path, slos: list[SLO], first: int, minutes: int,
                      config: ServiceConfig) -> int:
    rng = random.Random(config.seed)
    chosen = rng.sample(range(len(slos)), config.incidents)
    incidents: dict[int, tuple[int, int]] = {}
    for index in chosen:
        start = rng.randrange(15, minutes - 10)
        incidents[index] = (start, min(minutes, start + rng.randrange(5, 30)))
    ratios = [_ratios(slo, minutes, incidents.get(i), rng) for i, slo in enumerate(slos)]
    stamps = [first + m * MINUTE for m in range(minutes)]
    samples = 0
    with path.open("w", encoding="utf-8") as out:
        for window in WINDOWS:
            family = error_ratio_metric(window)
            out.write(f"# HELP {family} Recorded error ratio.\n# TYPE {family} gauge\n")
            for slo, series in zip(slos, ratios, strict=True):
                labels = f'{family}{{service="{slo.service}",slo="{slo.name}"}}'
                out.write("".join(f"{labels} {v:.6g} {t}\n"
                                  for v, t in zip(series[window], stamps, strict=True)))
                samples += minutes
        out.write("# EOF\n")
    return samples


# --- the two loops -----------------------------------------------------------------------


def _rss() -> int:
    """Resident memory of this process now (VmRSS), in bytes."""
    for line in Path("/proc/self/status").read_text(encoding="utf-8").splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def _naive_cycle(source: PrometheusSource, slos: list[SLO], at: datetime) -> tuple[
        dict[str, BurnAlert], int]:
    """One instant query per SLO and window, then the same firing rule as the engine's."""
    names = burn_queries(slos)
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    queries = 0
    for slo in slos:
        selector = f'{{slo="{slo.name}", service="{slo.service}"}}'
        for name in names:
            kind, window = name.split(":", 1)
            series = error_ratio_metric(window) + selector
            query = f"last_over_time({series}[{SLOW_LOOKBACK}])" if kind == "ratio-slow" \
                else series
            results[name].extend(source.instant(query, at))
            queries += 1
    return firing_tiers(slos, results, at), queries


def run(workdir: Path, prometheus: str, promtool: str, config: ServiceConfig | None = None,
        log: Callable[[str], None] = print) -> ServiceResult:
    config = config or ServiceConfig()
    began = time.perf_counter()
    write_specs(workdir / "specs", config)
    services = load_services([workdir / "specs"])
    slos = [slo for service in services for slo in service.slos]
    minutes = config.cycles + 15
    end = (int(time.time()) - config.clearance_hours * HOUR) // MINUTE * MINUTE
    first = end - (minutes - 1) * MINUTE
    (workdir / "openmetrics").mkdir(parents=True, exist_ok=True)
    data = workdir / "openmetrics" / "ratios.om"
    samples = write_openmetrics(data, slos, first, minutes, config)
    server = PrometheusServer(prometheus, workdir / "prometheus")
    backfill(promtool, data, server.data_dir)
    setup = time.perf_counter() - began
    log(f"  {len(slos)} SLOs, {samples:,} recorded samples backfilled in {setup:.0f} s")

    instants = [datetime.fromtimestamp(first + (15 + i) * MINUTE - 30, UTC)
                for i in range(config.cycles)]
    clock = {"now": instants[0]}
    server.start()
    try:
        engine_config = EngineConfig.model_validate({
            "apiVersion": "slo-engine/v1", "kind": "EngineConfig",
            "slo_files": [str(workdir / "specs")], "prometheus": {"url": server.url},
            "slack": {"dry_run": True, "fallback_channel": "#slo"},
            "state": {"path": str(workdir / "state" / "state.db")}})
        with open(os.devnull, "w", encoding="utf-8") as devnull:
            delivery = DryRunDelivery(Console(file=devnull))
            engine = Engine(engine_config, services, StateDB(engine_config.state.path),
                            delivery, clock=lambda: clock["now"])
            cycle_seconds: list[float] = []
            rss: list[int] = []
            firing_at: list[int] = []
            changed_at: list[int] = []
            for at in instants:
                clock["now"] = at
                start = time.perf_counter()
                changed_at.append(len(engine.evaluate()))
                cycle_seconds.append(time.perf_counter() - start)
                rss.append(_rss())
                firing_at.append(len(engine.firing()))
            pages = int(engine.telemetry.registry.get_sample_value(
                "slo_engine_notifications_total", {"outcome": "sent"}) or 0)
            engine.close()
        transitions = sum(changed_at)
        log(f"  engine: {statistics.median(cycle_seconds[config.warmup:]):.3f} s per cycle "
            f"(median), {max(cycle_seconds):.3f} s slowest, {transitions} transitions, "
            f"RSS {rss[config.warmup] / 1e6:.0f} → {rss[-1] / 1e6:.0f} MB")
        naive_seconds: list[float] = []
        same = True
        naive_queries = 0
        step = max(1, config.cycles // max(1, config.naive_cycles))
        with PrometheusSource(server.url) as source:
            for index in range(0, config.cycles, step)[:config.naive_cycles]:
                at = instants[index]
                start = time.perf_counter()
                found, naive_queries = _naive_cycle(source, slos, at)
                naive_seconds.append(time.perf_counter() - start)
                ours = firing_tiers(slos, {name: source.instant(query, at) for name, query
                                           in burn_queries(slos).items()}, at)
                same = same and set(found) == set(ours) and len(ours) == firing_at[index]
        if naive_seconds:
            log(f"  naive: {statistics.median(naive_seconds):.2f} s per cycle, "
                f"{naive_queries:,} queries; same firing tiers: {same}")
    finally:
        server.stop()
    return ServiceResult(config, len(burn_queries(slos)), cycle_seconds, rss, transitions,
                         pages, naive_queries, naive_seconds, same, samples, setup, firing_at,
                         changed_at)


# The sizes measured, the naive loop at the first only. 10,000 SLOs run half an hour of
# evaluations, enough for its incidents to start and stop.
SIZES = (ServiceConfig(services=50, cycles=60),
         ServiceConfig(services=200, cycles=60, naive_cycles=0),
         ServiceConfig(services=1000, cycles=30, naive_cycles=0))


def run_sizes(workdir: Path, prometheus: str, promtool: str, cycles: int | None = None,
              log: Callable[[str], None] = print) -> list[ServiceResult]:
    """`run` at each of SIZES, one Prometheus after the other; `cycles` (if given)
    replaces every size's."""
    results = []
    for config in SIZES:
        config = replace(config, cycles=cycles) if cycles else config
        log(f" {config.slos:,} SLOs:")
        results.append(run(workdir / f"slos-{config.slos}", prometheus, promtool, config,
                           log=log))
    return results


def cycle_stats(seconds: list[float]) -> tuple[float, float, float]:
    """Median, 95th percentile and maximum of cycle times."""
    ordered = sorted(seconds)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return statistics.median(ordered), p95, ordered[-1]
