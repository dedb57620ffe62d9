"""The report's windows summed by Prometheus: a ledger of a few rows per SLO group.

A budget report reads each SLO's events over a handful of windows ending at `at` (each tier's
long and short window, the forecast's 1h, the period) and nothing in between. The bucket
ledger brings every 5m bucket of the period to the client for that: 8,640 points per series
over 30 days, 391 MB of JSON for 1,000 SLOs. Here Prometheus sums the recorded rates between
consecutive window edges instead, one instant query per edge pair and kind for every SLO:
`sum_over_time(rate[hi − lo − 1ms])` at `hi` (the samples in (lo, hi], as a bucket's
`avg_over_time` reads them) × the rules' evaluation interval, FAST_GROUP_INTERVAL: the
recorded 5m rates are one sample a minute, and this is the sum the alert windows read. Each
sum is one ledger row stamped at its segment's end, so `budget.report` on this ledger reads
every window as a union of whole segments: the same numbers as on the bucket ledger, whose
buckets hold a bucket's mean rate × step (equal wherever a bucket holds all its samples).

Edges are aligned to the step as the bucket ledger's are, and include each period's first
5 minutes (the report's `partial` test) and the range's first bucket: an SLO without a
recorded sample there (rules deployed within the range, a gap) is read by `fetch_ledger`,
bucket by bucket with its raw-series fallback, as is a latency SLO whose threshold bucket
lacks samples (its totals without a bad rate are no data, see `source`). The bucket ledger's
clamp 0 ≤ bad ≤ total holds per segment here; the recorded rates keep it per sample anyway.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from slo_engine.budget import accounting, ledger
from slo_engine.prometheus.client import Result, utc
from slo_engine.prometheus.source import (
    KINDS,
    FetchStats,
    PrometheusSource,
    ledger_pairs,
    points_frame,
    selector,
    slo_id,
    whole_step,
)
from slo_engine.spec import conventions as names
from slo_engine.spec.durations import parse_duration
from slo_engine.spec.model import SLO, LatencySLI, Service

# The recorded 5m rates' evaluation interval (the rules' fast group): × a sum of samples, the
# events in the summed span.
SAMPLE_SECONDS = int(parse_duration(names.FAST_GROUP_INTERVAL))
PARTIAL_SECONDS = 300  # accounting: a period whose first 5 minutes hold no row is partial
CONCURRENCY = 4  # instant queries in flight: Prometheus evaluates each on one core


def edges(services: Iterable[Service], start: datetime, at: datetime, step: int) -> list[int]:
    """Segment edges (unix s, multiples of `step`, ascending) in [the range's start, at]:
    every window's start a report at `at` reads, rolling and calendar periods, their first
    5 minutes, and the range's first bucket."""
    at = utc(at, "at")
    top = _floor(at.timestamp(), step)
    bottom = _floor(utc(start, "start").timestamp(), step)
    found = {top, bottom, bottom + step}
    for service in services:
        for slo in service.slos:
            for window in (*slo.windows, accounting.RATE_WINDOW):
                found.add(_floor((at - timedelta(seconds=parse_duration(window))).timestamp(),
                                 step))
            for calendar in (None, "week", "month"):
                begins = accounting.period_bounds(slo, at, calendar)[0].timestamp()
                found.update((_floor(begins, step), _floor(begins + PARTIAL_SECONDS, step)))
    return sorted(t for t in found if bottom <= t <= top)


def fetch_report_ledger(source: PrometheusSource, services: Sequence[Service], start: datetime,
                        at: datetime, step_seconds: int = ledger.DEFAULT_STEP_SECONDS,
                        sample_seconds: int = SAMPLE_SECONDS,
                        ) -> tuple[pd.DataFrame, FetchStats]:
    """What `budget.report` at `at` needs of every SLO of `services`, as a ledger whose rows
    are sums between the report's window edges (see the module docstring), and what it cost.

    Its report equals the one on `source.fetch_ledger(services, start, at, step_seconds)`;
    nothing else should read this ledger (charts and backtests need every bucket). Raises
    SourceUnavailable or QueryError as `fetch_ledger` does.
    """
    step = whole_step(step_seconds)
    slos = {slo_id(s): s for service in services for s in service.slos}
    points = edges(services, start, at, step)
    if not slos or len(points) < 2:
        return source.fetch_ledger(services, start, at, step)
    stats = FetchStats()
    queries = segment_queries(slos.values(), list(itertools.pairwise(split(points, step))))
    latency = [s for s in slos.values() if isinstance(s.sli, LatencySLI)]
    if latency:
        queries.append(("check", points[-1], lacking_bad_query(latency, points[0], points[-1])))
    answers = _instant_all(source, [(query, when) for _, when, query in queries], stats)
    by_pair = {(s.service, s.name): s for s in slos.values()}
    keys: dict[tuple[str, str, str], int] = {}
    key_of: list[int] = []
    kind_of: list[int] = []
    stamps: list[int] = []
    values: list[float] = []
    complete: set[tuple[str, str]] = set()  # a total recorded in the range's first bucket
    lacking: set[tuple[str, str]] = set()
    for (kind, hi, _), answer in zip(queries, answers, strict=True):
        for item in answer:
            labels = item["metric"]
            pair = (labels.get(names.SERVICE_LABEL, ""), labels.get(names.SLO_LABEL, ""))
            slo = by_pair.get(pair)
            if slo is None:
                continue
            if kind == "check":
                lacking.add(pair)
                continue
            if kind == "total" and hi == points[0] + step:
                complete.add(pair)
            key = (slo.service, slo.name, ledger.series_group(slo, labels))
            key_of.append(keys.setdefault(key, len(keys)))
            kind_of.append(KINDS[kind])
            stamps.append(hi)
            values.append(float(item["value"][1]))
    summed = complete - lacking
    codes = np.array(key_of, dtype=np.int64)
    wanted = np.array([k[:2] in summed for k in keys], dtype=bool)[codes] if keys else \
        np.zeros(0, dtype=bool)
    wanted &= np.isfinite(np.array(values, dtype=np.float64))
    frame = points_frame(list(keys), codes[wanted], np.array(kind_of, dtype=np.int64)[wanted],
                         np.array(stamps, dtype=np.float64)[wanted],
                         np.array(values, dtype=np.float64)[wanted], sample_seconds,
                         good_based=False)
    rest = [dataclasses.replace(service, slos=tuple(
        s for s in service.slos if (s.service, s.name) not in summed)) for service in services]
    if any(service.slos for service in rest):  # bucket by bucket, with the raw-series
        # fallback and the notes it makes
        fine, detail = source.fetch_ledger([s for s in rest if s.slos], start, at, step)
        frame = ledger.concat([frame, fine])
        _add(stats, detail)
    present = ledger_pairs(frame)
    stats.missing = sorted(i for i, s in slos.items() if (s.service, s.name) not in present)
    return frame, stats


def split(points: Sequence[int], step: int, parts: int = CONCURRENCY) -> list[int]:
    """`points` with long segments cut (at multiples of `step`) into pieces of at most 1/parts
    of the whole range: the period's long segment is most of Prometheus' work, and one query
    runs on one core. The ledger only gains rows inside windows, which sum them."""
    longest = max(step, math.ceil((points[-1] - points[0]) / parts / step) * step)
    out = [points[0]]
    for hi in points[1:]:
        out.extend(range(out[-1] + longest, hi, longest))
        out.append(hi)
    return out


def segment_queries(slos: Iterable[SLO], segments: Sequence[tuple[int, int]],
                    ) -> list[tuple[str, int, str]]:
    """(kind, evaluation time, query) of the recorded total and bad rates' sums over each
    segment (lo, hi], for every SLO of `slos` in one query."""
    match = selector(slos)
    return [(kind, hi, f"sum_over_time({metric}{match}[{(hi - lo) * 1000 - 1}ms])")
            for lo, hi in segments
            for kind, metric in (("total", names.TOTAL_EVENTS_RATE),
                                 ("bad", names.BAD_EVENTS_RATE))]


def lacking_bad_query(slos: Sequence[SLO], lo: int, hi: int) -> str:
    """Latency groups with more recorded totals than bad rates in (lo, hi]: their threshold's
    bucket lacked samples there, which the bucket ledger counts as no data."""
    match, span = selector(slos), f"[{(hi - lo) * 1000 - 1}ms]"
    total = f"count_over_time({names.TOTAL_EVENTS_RATE}{match}{span})"
    bad = f"count_over_time({names.BAD_EVENTS_RATE}{match}{span})"
    return f"({total} > {bad}) or ({total} unless {bad})"


def _instant_all(source: PrometheusSource, queries: Sequence[tuple[str, int]],
                 stats: FetchStats) -> list[Result]:
    """The instant queries, CONCURRENCY at a time, each thread with its own client."""
    def run(share: Sequence[tuple[int, tuple[str, int]]]) -> list[
            tuple[int, Result, int, list[str]]]:
        with source.new_client() as client:
            done = []
            for index, (query, when) in share:
                received, warned = client.received, len(client.server_warnings)
                answer = client.instant(query, datetime.fromtimestamp(when, UTC))
                done.append((index, answer, client.received - received,
                             client.server_warnings[warned:]))
            return done

    numbered = list(enumerate(queries))
    shares = [numbered[i::CONCURRENCY] for i in range(min(CONCURRENCY, len(numbered)))]
    answers: list[Result] = [[] for _ in queries]
    with ThreadPoolExecutor(max_workers=max(1, len(shares))) as pool:
        for done in pool.map(run, shares):
            for index, answer, received, warnings in done:
                answers[index] = answer
                stats.queries += 1
                stats.bytes += received
                stats.points += len(answer)
                if warnings:
                    stats.partial = True
                    stats.warnings.extend(f"Prometheus at {source.shown_url} warned: {w}"
                                          for w in warnings)
    return answers


def _add(stats: FetchStats, more: FetchStats) -> None:
    stats.queries += more.queries
    stats.bytes += more.bytes
    stats.points += more.points
    stats.fallback = sorted(set(stats.fallback) | set(more.fallback))
    stats.unrecorded = sorted(set(stats.unrecorded) | set(more.unrecorded))
    stats.partial = stats.partial or more.partial
    stats.warnings.extend(w for w in more.warnings if w not in stats.warnings)
    stats.ranges.extend(more.ranges)
    stats.cached_rows += more.cached_rows


def _floor(seconds: float, step: int) -> int:
    return math.floor(seconds / step) * step
