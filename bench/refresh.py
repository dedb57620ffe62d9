"""One budget refresh of 1,000 SLOs over 30 days, against the per-SLO loop it replaces.

A real Prometheus holds 30 days of the compiler's recorded series for every SLO
(`slo:total_events:rate5m` and `slo:bad_events:rate5m`, labels `service` and `slo`),
backfilled from OpenMetrics with promtool. Three things are measured in one run:

- cold: `PrometheusSource(cache_dir=empty).fetch_ledger(every service, at − 30d, at)` and
  `budget.report` on its ledger, as `slo-engine report` runs them;
- warm: the same one step later with a new source on the same cache directory, as the next
  run of a periodic refresh (only the new buckets are fetched);
- the loop: what slo-generator does, two instant queries (bad and total) per SLO per window
  (each alert tier's long window and the period), through one keep-alive `requests.Session`.
  The loop runs over the SLOs in random order until all are done or its time budget is
  spent, and is then extrapolated linearly (the table says so).

"Now" (`at`) is a few hours before the wall clock: backfilled blocks must stay clear of the
head block, whose range a running Prometheus is still writing. The data is written as one
OpenMetrics file per promtool block and backfilled by one promtool per core: promtool reads
its whole input once per block, so one 30-day file would be read 42 times (18h blocks).
Blocks are 486h, the size Prometheus itself compacts smaller blocks to under the harness'
retention, a minute after start, which would land in the middle of the measurements.
"""

from __future__ import annotations

import cProfile
import io
import math
import os
import pstats
import random
import re
import resource
import shutil
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import requests
import yaml

from slo_engine.budget import accounting as budget
from slo_engine.prometheus.cache import wait_for_cache_writes
from slo_engine.prometheus.source import PrometheusSource
from slo_engine.spec.conventions import BAD_EVENTS_RATE, TOTAL_EVENTS_RATE
from slo_engine.spec.durations import parse_duration
from slo_engine.spec.loader import load_services
from slo_engine.spec.model import SLO, Service
from tests.support.prometheus import PrometheusServer

DAY = 86_400
HOUR = 3_600
TARGET_QUERIES = 10
TARGET_WARM_SECONDS = 2.0
WARM_RUNS = 3
# promtool's largest block (2h × 3⁵): Prometheus compacts smaller ones (module docstring).
BLOCK_SECONDS = 486 * HOUR
SAMPLE_OFFSET = 17  # seconds past each sample interval: no sample on a window's edge


@dataclass(frozen=True)
class RefreshConfig:
    services: int = 100
    slos_per_service: int = 10
    days: int = 30  # the refresh's range (the SLOs' period)
    sample_seconds: int = 300  # one recorded sample per this many seconds
    step_seconds: int = 300  # the ledger's bucket (fetch step), ≥ sample_seconds
    lead_days: int = 1  # data before the range, so the first bucket is full
    tail_hours: int = 1  # data after `at`, so the warm refresh has new buckets to fetch
    clearance_hours: int = 4  # `at` this long before the wall clock (head block clear)
    loop_seconds: float = 180.0  # time budget of the per-SLO loop before extrapolating
    seed: int = 7

    @property
    def slos(self) -> int:
        return self.services * self.slos_per_service


@dataclass
class Refresh:
    """One fetch_ledger + budget.report."""

    fetch_seconds: float
    report_seconds: float
    queries: int
    bytes: int
    points: int
    rows: int  # ledger rows returned
    cached_rows: int
    statuses: list[budget.BudgetStatus] = field(repr=False, default_factory=list)

    @property
    def seconds(self) -> float:
        return self.fetch_seconds + self.report_seconds


@dataclass
class Loop:
    """The per-SLO, per-window loop: what was run, and the figures for all SLOs."""

    slos_run: int
    slos_all: int
    windows: tuple[str, ...]
    seconds_run: float
    queries_run: int
    bytes_run: int
    points_run: int
    sums: dict[tuple[str, str], tuple[float, float]]  # (service, slo) → period (bad, total)

    @property
    def scale(self) -> float:
        return self.slos_all / self.slos_run if self.slos_run else math.nan

    @property
    def extrapolated(self) -> bool:
        return self.slos_run < self.slos_all

    @property
    def seconds(self) -> float:
        return self.seconds_run * self.scale

    @property
    def queries(self) -> float:
        return self.queries_run * self.scale

    @property
    def bytes(self) -> float:
        return self.bytes_run * self.scale

    @property
    def points(self) -> float:
        return self.points_run * self.scale


# Where a refresh's time goes: (file suffix, function) → how the table names it.
PROFILED = {
    ("prometheus/cache.py", "load"): "cache.load (Arrow read + normalise)",
    ("budget/ledger.py", "normalise"): "ledger.normalise (sort by key and time)",
    ("prometheus/cache.py", "merge"): "cache.merge (concat + drop_duplicates)",
    ("prometheus/cache.py", "save"): "cache.save (whole Arrow file rewritten)",
    ("prometheus/source.py", "_recorded"): "source._recorded (HTTP, JSON, rows)",
    ("budget/accounting.py", "report"): "budget.report",
}


@dataclass(frozen=True)
class Profiled:
    name: str
    calls: int
    seconds: float  # cumulative, under cProfile


@dataclass
class RefreshResult:
    config: RefreshConfig
    at: datetime
    series: int
    samples: int
    openmetrics_bytes: int
    generate_seconds: float
    backfill_seconds: float
    cold: Refresh
    warm: Refresh
    loop: Loop
    max_period_difference: float  # relative, ours vs the loop, over the SLOs the loop ran
    warm_profile: str  # top of cProfile for the warm refresh, when over the target
    warm_breakdown: list[Profiled]  # the PROFILED functions in that profile
    blocks: int  # TSDB blocks the server loaded
    compactions: int  # while measuring (0: no compaction disturbed the figures)
    peak_rss_bytes: int  # of this process, read right after the cold refresh

    @property
    def setup_seconds(self) -> float:
        return self.generate_seconds + self.backfill_seconds


# --- data ------------------------------------------------------------------------------


def service_name(index: int) -> str:
    return f"svc-{index:03d}"


def slo_name(index: int) -> str:
    return f"slo-{index:02d}"


def write_specs(directory: Path, config: RefreshConfig) -> None:
    """Ratio SLOs over raw counters (never read here: the recorded series are backfilled),
    30-day period, the default four tiers."""
    directory.mkdir(parents=True, exist_ok=True)
    for s in range(config.services):
        service = service_name(s)
        slos = [{"name": slo_name(i), "objective": (99.0, 99.5, 99.9, 99.95)[i % 4],
                 "period": f"{config.days}d",
                 "sli": {"ratio": {
                     "bad": f'http_requests_total{{service="{service}", route="r{i}", '
                            'code=~"5.."}',
                     "total": f'http_requests_total{{service="{service}", route="r{i}"}}'}}}
                for i in range(config.slos_per_service)]
        spec = {"apiVersion": "slo-engine/v1", "service": service, "owner": "bench",
                "slos": slos}
        (directory / f"{service}.yaml").write_text(yaml.safe_dump(spec, sort_keys=False),
                                                   encoding="utf-8")


def _rates(stamps: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(total, bad) events per second of one SLO: diurnal traffic, a small base error ratio
    with noise, and a two-hour incident somewhere in the data."""
    peak = rng.uniform(5, 500)
    phase = rng.uniform(0, 2 * math.pi)
    total = peak * (0.55 + 0.45 * np.sin(2 * math.pi * stamps / DAY + phase))
    total *= rng.uniform(0.9, 1.1, size=len(stamps))
    ratio = rng.uniform(0.0001, 0.002) * rng.uniform(0.5, 1.5, size=len(stamps))
    begin = rng.integers(0, len(stamps))
    ratio[begin:begin + 2 * HOUR // max(1, int(stamps[1] - stamps[0]))] = rng.uniform(0.01, 0.1)
    return total, total * ratio


def write_openmetrics(directory: Path, config: RefreshConfig, first: int,
                      last: int) -> tuple[list[Path], int]:
    """Recorded rates of every SLO at `sample_seconds` over [first, last] (plus the offset),
    one OpenMetrics file per promtool block (gauge families kept together, `# EOF` last), so
    that promtool reads each file once. Returns the files and the number of samples."""
    rng = np.random.default_rng(config.seed)
    stamps = np.arange(first, last + 1, config.sample_seconds) + SAMPLE_OFFSET
    rates = {(s, i): _rates(stamps, rng)
             for s in range(config.services) for i in range(config.slos_per_service)}
    blocks = stamps // BLOCK_SECONDS
    directory.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []
    samples = 0
    for block in np.unique(blocks).tolist():
        part = np.flatnonzero(blocks == block)
        lo, hi = int(part[0]), int(part[-1]) + 1
        suffixes = [f" {t}\n" for t in stamps[lo:hi].tolist()]
        path = directory / f"recorded-{block}.om"
        files.append(path)
        with path.open("w", encoding="utf-8") as out:
            for kind, family in enumerate((TOTAL_EVENTS_RATE, BAD_EVENTS_RATE)):
                out.write(f"# HELP {family} Recorded event rate.\n# TYPE {family} gauge\n")
                for (s, i), pair in rates.items():
                    prefix = f'{family}{{service="{service_name(s)}",slo="{slo_name(i)}"}} '
                    values = np.round(pair[kind][lo:hi], 4).tolist()
                    out.write("".join([f"{prefix}{v}{t}" for v, t in zip(values, suffixes,
                                                                          strict=True)]))
                    samples += len(values)
            out.write("# EOF\n")
    return files, samples


def backfill(promtool: str, files: list[Path], data_dir: Path) -> None:
    """`promtool tsdb create-blocks-from openmetrics` of each file, as many at once as there
    are cores, blocks of BLOCK_SECONDS (see the module docstring)."""
    data_dir.mkdir(parents=True, exist_ok=True)

    def one(path: Path) -> None:
        result = subprocess.run(
            [promtool, "tsdb", "create-blocks-from", "openmetrics",
             f"--max-block-duration={BLOCK_SECONDS // HOUR}h", "-q", str(path),
             str(data_dir)], capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"promtool backfill of {path.name} exited {result.returncode}:"
                               f"\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}")
        path.unlink()

    with ThreadPoolExecutor(max_workers=min(len(files), os.cpu_count() or 1)) as pool:
        list(pool.map(one, files))


# --- the three measurements ------------------------------------------------------------


def refresh(url: str, services: list[Service], at: datetime, cache_dir: Path,
            config: RefreshConfig) -> Refresh:
    """A new source (as a new `slo-engine report` process would make) on `cache_dir`."""
    began = time.perf_counter()
    with PrometheusSource(url, cache_dir=cache_dir, timeout=300) as source:
        frame, stats = source.fetch_ledger(services, at - timedelta(days=config.days), at,
                                           config.step_seconds)
    fetched = time.perf_counter()
    statuses = budget.report(services, frame, at)
    done = time.perf_counter()
    if stats.missing or stats.fallback or stats.partial:
        raise RuntimeError(f"refresh at {at}: {stats.summary()}; {stats.warnings}")
    return Refresh(fetched - began, done - fetched, stats.queries, stats.bytes, stats.points,
                   len(frame), stats.cached_rows, statuses)


def loop_windows(slo: SLO) -> tuple[str, ...]:
    """The windows slo-generator would be configured with: each tier's long window and the
    period, longest last."""
    seconds = {t.long_seconds: t.long_window for t in slo.tiers}
    seconds[slo.period_seconds] = slo.period
    return tuple(seconds[s] for s in sorted(seconds))


def per_slo_loop(url: str, services: list[Service], at: datetime,
                 config: RefreshConfig) -> Loop:
    """Two instant queries per SLO and window, one SLO after another, until done or out of
    time; SLOs in random order so a partial run is a fair sample."""
    slos = [slo for service in services for slo in service.slos]
    order = random.Random(config.seed).sample(slos, len(slos))
    when = f"{at.timestamp():.3f}"
    sums: dict[tuple[str, str], tuple[float, float]] = {}
    queries = received = points = done = 0
    windows: set[str] = set()
    began = time.perf_counter()
    with requests.Session() as session:
        for slo in order:
            selector = f'{{slo="{slo.name}",service="{slo.service}"}}'
            for window in loop_windows(slo):
                windows.add(window)
                values = []
                for metric in (BAD_EVENTS_RATE, TOTAL_EVENTS_RATE):
                    response = session.get(f"{url}/api/v1/query", timeout=60, params={
                        "query": f"sum_over_time({metric}{selector}[{window}])",
                        "time": when})
                    response.raise_for_status()
                    received += len(response.content)
                    queries += 1
                    result = response.json()["data"]["result"]
                    points += len(result)
                    values.append(float(result[0]["value"][1]) * config.sample_seconds
                                  if result else 0.0)
                if window == slo.period:
                    sums[(slo.service, slo.name)] = (values[0], values[1])
            done += 1
            if time.perf_counter() - began > config.loop_seconds:
                break
    return Loop(done, len(slos), tuple(sorted(windows, key=parse_duration)),
                time.perf_counter() - began, queries, received, points, sums)


def max_difference(statuses: list[budget.BudgetStatus],
                   sums: dict[tuple[str, str], tuple[float, float]]) -> float:
    """Largest relative difference of period bad or total events, ours vs the loop's."""
    worst = 0.0
    for row in statuses:
        loop = sums.get((row.service, row.slo))
        if loop is None:
            continue
        for ours, theirs in ((row.bad_events, loop[0]), (row.total_events, loop[1])):
            if theirs:
                worst = max(worst, abs(ours / theirs - 1))
    return worst


def profile_refresh(url: str, services: list[Service], at: datetime, cache_dir: Path,
                    config: RefreshConfig, lines: int = 30) -> tuple[str, list[Profiled]]:
    """cProfile of one more warm refresh (on a copy of the cache): where its time goes, as
    text (top functions by cumulative time) and as the PROFILED functions' totals."""
    copy = cache_dir.with_name(cache_dir.name + "-profile")
    shutil.copytree(cache_dir, copy)
    profiler = cProfile.Profile()
    try:
        profiler.enable()
        refresh(url, services, at, copy, config)
        profiler.disable()
    finally:
        shutil.rmtree(copy, ignore_errors=True)
    text = io.StringIO()
    stats = pstats.Stats(profiler, stream=text)
    stats.sort_stats("cumulative").print_stats(lines)
    found: list[Profiled] = []
    table = stats.stats  # type: ignore[attr-defined]
    for (path, _line, function), (_cc, calls, _tt, cumulative, _callers) in table.items():
        name = next((label for (suffix, func), label in PROFILED.items()
                     if function == func and path.endswith(suffix)), None)
        if name is not None:
            found.append(Profiled(name, calls, cumulative))
    order = list(PROFILED.values())
    return text.getvalue(), sorted(found, key=lambda p: order.index(p.name))


def run(workdir: Path, prometheus: str, promtool: str, config: RefreshConfig | None = None,
        log: Callable[[str], None] = print) -> RefreshResult:
    config = config or RefreshConfig()
    if config.step_seconds < config.sample_seconds or config.step_seconds % config.sample_seconds:
        raise ValueError("the fetch step must be a multiple of the sample interval")
    step = config.step_seconds
    at_s = (int(time.time()) - config.clearance_hours * HOUR) // step * step
    at = datetime.fromtimestamp(at_s, UTC)
    first = at_s - (config.days + config.lead_days) * DAY
    last = at_s + config.tail_hours * HOUR

    write_specs(workdir / "specs", config)
    services = load_services([workdir / "specs"])

    began = time.perf_counter()
    files, samples = write_openmetrics(workdir / "openmetrics", config, first, last)
    size = sum(f.stat().st_size for f in files)
    generated = time.perf_counter()
    log(f"  {config.slos:,} SLOs: {samples:,} samples, {size / 1e9:.2f} GB of OpenMetrics "
        f"in {generated - began:.0f} s")
    server = PrometheusServer(prometheus, workdir / "prometheus")
    backfill(promtool, files, server.data_dir)
    backfilled = time.perf_counter()
    log(f"  backfilled in {backfilled - generated:.0f} s")

    server.start()
    try:
        blocks, compactions = _tsdb(server)
        cache = workdir / "cache"
        cold = refresh(server.url, services, at, cache, config)
        wait_for_cache_writes()  # the write-behind cache: on disk before the next refresh
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
        log(f"  cold refresh {cold.seconds:.2f} s, {cold.queries} queries, "
            f"{cold.bytes / 1e6:.1f} MB")
        # Three periodic refreshes, one step apart; the median is reported.
        warms = []
        for n in range(1, WARM_RUNS + 1):
            warms.append(refresh(server.url, services, at + timedelta(seconds=n * step), cache,
                                 config))
            wait_for_cache_writes()
        warm = sorted(warms, key=lambda r: r.seconds)[len(warms) // 2]
        warm_at = at + timedelta(seconds=WARM_RUNS * step)
        log(f"  warm refresh {warm.seconds:.2f} s (median of "
            f"{', '.join(f'{r.seconds:.2f}' for r in warms)}), {warm.queries} queries, "
            f"{warm.bytes / 1e6:.3f} MB")
        profile: tuple[str, list[Profiled]] = ("", [])
        if warm.seconds > TARGET_WARM_SECONDS:
            profile = profile_refresh(server.url, services, warm_at, cache, config)
            log(f"  warm refresh over {TARGET_WARM_SECONDS:g} s; cProfile of another one:\n"
                + "\n".join(f"    {line}" for line in profile[0].strip().splitlines()))
        loop = per_slo_loop(server.url, services, at, config)
        log(f"  per-SLO loop: {loop.slos_run:,} of {loop.slos_all:,} SLOs, "
            f"{loop.queries_run:,} queries in {loop.seconds_run:.1f} s")
        compactions = _tsdb(server)[1] - compactions
    finally:
        server.stop()
    return RefreshResult(config, at, 2 * config.slos, samples, size,
                         generated - began, backfilled - generated, cold, warm, loop,
                         max_difference(cold.statuses, loop.sums), *profile, blocks,
                         compactions, peak)


def _tsdb(server: PrometheusServer) -> tuple[int, int]:
    """Blocks loaded and compactions so far, from Prometheus' own metrics."""
    found = dict(re.findall(r"^(prometheus_tsdb_(?:blocks_loaded|compactions_total)) (\S+)$",
                            server.metrics_text(), re.MULTILINE))
    return (int(float(found.get("prometheus_tsdb_blocks_loaded", "-1"))),
            int(float(found.get("prometheus_tsdb_compactions_total", "-1"))))
