"""Budget refresh for a report: 1,000 SLOs over 30 days against the per-SLO loop it replaces,
and 10,000 SLOs for sizing.

A real Prometheus holds 30 days of the compiler's recorded series for every SLO
(`slo:total_events:rate5m` and `slo:bad_events:rate5m`, labels `service` and `slo`),
backfilled from OpenMetrics with promtool. Measured in one run:

- cold: what `slo-engine report --prometheus-url` runs, `windows.fetch_report_ledger` (the
  report's window sums, see `prometheus/windows.py`) and `budget.report` on its ledger, in
  a new process with an empty `--state-dir`, whose peak resident memory is read at its end;
- warm: the same one step later in another new process on that state directory, as the next
  run of a periodic refresh (only the stretch each window edge moved is fetched);
- the loop (1,000 SLOs only): what slo-generator does, two instant queries (bad and total)
  per SLO per window (each alert tier's long window and the period), through one keep-alive
  `requests.Session`. The loop runs over the SLOs in random order until all are done or its
  time budget is spent, and is then extrapolated linearly (the table says so).

"Now" (`at`) is a few hours before the wall clock: backfilled blocks must stay clear of the
head block, whose range a running Prometheus is still writing. The data is written as one
OpenMetrics file per promtool block (promtool reads its whole input once per block) by one
process per core, each SLO's series drawn from its own seed so that any process can write
any block; each file is backfilled by promtool as soon as it is written. Blocks are 486h,
the size Prometheus itself compacts smaller blocks to under the harness' retention, a minute
after start, which would land in the middle of the measurements.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import random
import re
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import requests
import yaml

from slo_engine import app
from slo_engine.budget import accounting as budget
from slo_engine.prometheus.source import PrometheusSource
from slo_engine.prometheus.windows import fetch_report_ledger
from slo_engine.spec.conventions import BAD_EVENTS_RATE, TOTAL_EVENTS_RATE
from slo_engine.spec.durations import parse_duration
from slo_engine.spec.loader import load_services
from slo_engine.spec.model import SLO, Service
from tests.support.prometheus import PrometheusServer

DAY = 86_400
HOUR = 3_600
# Targets (issue 14): cold ≤ 1/10 of the loop and ≤ 1 GB at 1,000 SLOs; at 10,000 SLOs cold
# within 60 s and 4 GB, warm within 10 s.
TARGET_COLD_RATIO = 0.1
TARGET_COLD_RSS = 1e9
TARGET_LARGE_COLD_SECONDS = 60.0
TARGET_LARGE_RSS = 4e9
TARGET_LARGE_WARM_SECONDS = 10.0
# promtool's largest block (2h × 3⁵): Prometheus compacts smaller ones (module docstring).
BLOCK_SECONDS = 486 * HOUR
SAMPLE_OFFSET = 17  # seconds past each sample interval: no sample on a window's edge
ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class RefreshConfig:
    services: int = 100
    slos_per_service: int = 10
    large_services: int = 1000  # the sizing run, 10 SLOs each (0: none)
    days: int = 30  # the refresh's range (the SLOs' period)
    sample_seconds: int = 300  # one recorded sample per this many seconds
    step_seconds: int = 300  # the ledger's bucket, ≥ sample_seconds
    lead_days: int = 1  # data before the range, so the first bucket is full
    tail_hours: int = 1  # data after `at`, so the warm refresh has new buckets
    clearance_hours: int = 4  # `at` this long before the wall clock (head block clear)
    loop_seconds: float = 180.0  # time budget of the per-SLO loop before extrapolating
    seed: int = 7

    @property
    def slos(self) -> int:
        return self.services * self.slos_per_service


@dataclass
class Refresh:
    """One report refresh (window sums + budget.report) in a process of its own."""

    fetch_seconds: float
    report_seconds: float
    queries: int
    bytes: int
    points: int
    rows: int  # ledger rows
    peak_rss_bytes: int  # of that process, at its end
    sums: dict[tuple[str, str], tuple[float, float]] = field(repr=False, default_factory=dict)

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


@dataclass
class Sized:
    """One data set of `slos` SLOs: its setup and the refreshes over it."""

    slos: int
    series: int
    samples: int
    openmetrics_bytes: int
    generate_seconds: float  # until the last file was written
    backfill_seconds: float  # after that, until the last block was written
    blocks: int
    compactions: int  # while measuring (0: no compaction disturbed the figures)
    cold: Refresh
    warm: Refresh


@dataclass
class RefreshResult:
    config: RefreshConfig
    at: datetime
    small: Sized
    loop: Loop
    max_period_difference: float  # relative, ours vs the loop, over the SLOs the loop ran
    large: Sized | None


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


def _slo_rates(config: RefreshConfig, s: int, i: int,
               stamps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One SLO's rates from its own seed: the same whichever process draws them."""
    return _rates(stamps, np.random.default_rng([config.seed, s, i]))


def _write_block(config: RefreshConfig, services: int, stamps: np.ndarray, lo: int, hi: int,
                 path: Path) -> int:
    """The OpenMetrics file of samples [lo, hi) of every SLO (gauge families kept together,
    `# EOF` last); returns its number of samples."""
    suffixes = [f" {t}\n" for t in stamps[lo:hi].tolist()]
    samples = 0
    with path.open("w", encoding="utf-8") as out:
        for kind, family in enumerate((TOTAL_EVENTS_RATE, BAD_EVENTS_RATE)):
            out.write(f"# HELP {family} Recorded event rate.\n# TYPE {family} gauge\n")
            for s in range(services):
                for i in range(config.slos_per_service):
                    pair = _slo_rates(config, s, i, stamps)
                    prefix = f'{family}{{service="{service_name(s)}",slo="{slo_name(i)}"}} '
                    values = np.round(pair[kind][lo:hi], 4).tolist()
                    out.write("".join([f"{prefix}{v}{t}" for v, t in zip(values, suffixes,
                                                                          strict=True)]))
                    samples += len(values)
        out.write("# EOF\n")
    return samples


def generate_and_backfill(directory: Path, config: RefreshConfig, services: int, first: int,
                          last: int, promtool: str, data_dir: Path,
                          ) -> tuple[int, int, float, float]:
    """Recorded rates of every SLO at `sample_seconds` over [first, last] (plus the offset),
    one file per promtool block written by one process per core, each backfilled as soon as
    it is written. Returns samples, bytes, and the seconds of generation and of the
    backfill after it."""
    stamps = np.arange(first, last + 1, config.sample_seconds) + SAMPLE_OFFSET
    blocks = stamps // BLOCK_SECONDS
    directory.mkdir(parents=True, exist_ok=True)
    data_dir.mkdir(parents=True, exist_ok=True)
    cores = os.cpu_count() or 1
    began = time.perf_counter()
    written: list[Future[int]] = []
    loaded: list[Future[None]] = []
    size = 0
    with ProcessPoolExecutor(max_workers=cores) as writers, \
            ThreadPoolExecutor(max_workers=cores) as loaders:
        for block in np.unique(blocks).tolist():
            part = np.flatnonzero(blocks == block)
            path = directory / f"recorded-{block}.om"
            future = writers.submit(_write_block, config, services, stamps, int(part[0]),
                                    int(part[-1]) + 1, path)
            future.add_done_callback(lambda _, path=path: loaded.append(
                loaders.submit(backfill, promtool, path, data_dir)))
            written.append(future)
        samples = 0
        for future in written:
            samples += future.result()
        generated = time.perf_counter()
        size = sum(f.stat().st_size for f in directory.glob("*.om"))
        while len(loaded) < len(written):
            time.sleep(0.05)
        for job in list(loaded):
            job.result()
    return samples, size, generated - began, time.perf_counter() - generated


def backfill(promtool: str, path: Path, data_dir: Path) -> None:
    """`promtool tsdb create-blocks-from openmetrics` of one file, blocks of BLOCK_SECONDS."""
    size = path.stat().st_size
    result = subprocess.run(
        [promtool, "tsdb", "create-blocks-from", "openmetrics",
         f"--max-block-duration={BLOCK_SECONDS // HOUR}h", "-q", str(path), str(data_dir)],
        capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"promtool backfill of {path.name} ({size} bytes) exited "
                           f"{result.returncode}:\n{result.stdout[-2000:]}\n"
                           f"{result.stderr[-3000:]}")
    path.unlink()


# --- the measurements ------------------------------------------------------------------


def refresh(url: str, specs: Path, at: datetime, cache_dir: Path,
            config: RefreshConfig) -> Refresh:
    """What `slo-engine report --prometheus-url URL --state-dir cache_dir` runs, in this
    process (see `refresh_in_child`). The bench's recorded rates are one sample every
    `sample_seconds`, where the rules record one a minute: the sums are scaled by that."""
    services = load_services([specs])
    start, _ = app.report_window(services, at)
    began = time.perf_counter()
    with PrometheusSource(url, cache_dir=cache_dir, timeout=300) as source:
        frame, stats = fetch_report_ledger(source, services, start, at, config.step_seconds,
                                           sample_seconds=config.sample_seconds)
    fetched = time.perf_counter()
    statuses = budget.report(services, frame, at)
    done = time.perf_counter()
    if stats.missing or stats.fallback or stats.partial:
        raise RuntimeError(f"refresh at {at}: {stats.summary()}; {stats.warnings}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    return Refresh(fetched - began, done - fetched, stats.queries, stats.bytes, stats.points,
                   len(frame), peak, {(r.service, r.slo): (r.bad_events, r.total_events)
                                      for r in statuses})


def refresh_in_child(url: str, specs: Path, at: datetime, cache_dir: Path,
                     config: RefreshConfig) -> Refresh:
    """`refresh` in a new Python process, as a new `slo-engine report` would run: its peak
    memory is its own, not the bench's."""
    with tempfile.TemporaryDirectory(prefix="slo-bench-refresh-") as scratch:
        out = Path(scratch) / "refresh.pickle"
        arguments = json.dumps([url, str(specs), at.timestamp(), str(cache_dir),
                                config.__dict__, str(out)])
        subprocess.run([sys.executable, "-c", "import sys, bench.refresh as r; "
                        "r.child_main(sys.argv[1])", arguments], check=True, cwd=ROOT)
        with out.open("rb") as stream:
            result: Refresh = pickle.load(stream)
        return result


def child_main(arguments: str) -> None:
    url, specs, at, cache_dir, config, out = json.loads(arguments)
    result = refresh(url, Path(specs), datetime.fromtimestamp(at, UTC), Path(cache_dir),
                     RefreshConfig(**config))
    with Path(out).open("wb") as stream:
        pickle.dump(result, stream)


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


def max_difference(sums: dict[tuple[str, str], tuple[float, float]],
                   loop: dict[tuple[str, str], tuple[float, float]]) -> float:
    """Largest relative difference of period bad or total events, ours vs the loop's."""
    worst = 0.0
    for key, theirs in loop.items():
        ours = sums.get(key)
        if ours is None:
            return math.inf
        for a, b in zip(ours, theirs, strict=True):
            if b:
                worst = max(worst, abs(a / b - 1))
    return worst


def measure(workdir: Path, prometheus: str, promtool: str, config: RefreshConfig,
            services: int, at: datetime, log: Callable[[str], None],
            loop: bool) -> tuple[Sized, Loop | None]:
    """Data for `services` × slos_per_service SLOs, then cold, warm (and the loop)."""
    step = config.step_seconds
    at_s = int(at.timestamp())
    first = at_s - (config.days + config.lead_days) * DAY
    last = at_s + config.tail_hours * HOUR
    sized = RefreshConfig(**{**config.__dict__, "services": services})
    write_specs(workdir / "specs", sized)
    server = PrometheusServer(prometheus, workdir / "prometheus")
    samples, size, generate, load = generate_and_backfill(
        workdir / "openmetrics", config, services, first, last, promtool, server.data_dir)
    slos = services * config.slos_per_service
    log(f"  {slos:,} SLOs: {samples:,} samples, {size / 1e9:.2f} GB of OpenMetrics "
        f"generated in {generate:.0f} s, backfilled {load:.0f} s after")
    server.start()
    try:
        blocks, compactions = _tsdb(server)
        cache = workdir / "cache"
        cold = refresh_in_child(server.url, workdir / "specs", at, cache, sized)
        log(f"  cold refresh {cold.seconds:.2f} s ({cold.fetch_seconds:.2f} s fetch), "
            f"{cold.queries} queries, {cold.bytes / 1e6:.1f} MB, peak "
            f"{cold.peak_rss_bytes / 1e9:.2f} GB")
        warm = refresh_in_child(server.url, workdir / "specs", at + timedelta(seconds=step),
                                cache, sized)
        log(f"  warm refresh {warm.seconds:.2f} s, {warm.queries} queries, "
            f"{warm.bytes / 1e6:.1f} MB, peak {warm.peak_rss_bytes / 1e9:.2f} GB")
        looped = None
        if loop:
            looped = per_slo_loop(server.url, load_services([workdir / "specs"]), at, config)
            log(f"  per-SLO loop: {looped.slos_run:,} of {looped.slos_all:,} SLOs, "
                f"{looped.queries_run:,} queries in {looped.seconds_run:.1f} s")
        compactions = _tsdb(server)[1] - compactions
    finally:
        server.stop()
    return Sized(slos, 2 * slos, samples, size, generate, load, blocks, compactions, cold,
                 warm), looped


def run(workdir: Path, prometheus: str, promtool: str, config: RefreshConfig | None = None,
        log: Callable[[str], None] = print) -> RefreshResult:
    config = config or RefreshConfig()
    if config.step_seconds < config.sample_seconds or config.step_seconds % config.sample_seconds:
        raise ValueError("the fetch step must be a multiple of the sample interval")
    step = config.step_seconds
    at = datetime.fromtimestamp(
        (int(time.time()) - config.clearance_hours * HOUR) // step * step, UTC)
    small, loop = measure(workdir / "small", prometheus, promtool, config, config.services, at,
                          log, loop=True)
    assert loop is not None
    large = None
    if config.large_services:
        large, _ = measure(workdir / "large", prometheus, promtool, config,
                           config.large_services, at, log, loop=False)
    return RefreshResult(config, at, small, loop, max_difference(small.cold.sums, loop.sums),
                         large)


def _tsdb(server: PrometheusServer) -> tuple[int, int]:
    """Blocks loaded and compactions so far, from Prometheus' own metrics."""
    found = dict(re.findall(r"^(prometheus_tsdb_(?:blocks_loaded|compactions_total)) (\S+)$",
                            server.metrics_text(), re.MULTILINE))
    return (int(float(found.get("prometheus_tsdb_blocks_loaded", "-1"))),
            int(float(found.get("prometheus_tsdb_compactions_total", "-1"))))
