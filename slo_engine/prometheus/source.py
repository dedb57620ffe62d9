"""Prometheus as the ledger's source: the compiler's recorded rates, read in bulk.

`PrometheusSource.fetch_ledger` reads `slo:total_events:rate5m` and `slo:bad_events:rate5m`
of every SLO with one range query per metric and time chunk, whatever the number of SLOs; a
chunk holds at most 11,000 points per series, the most Prometheus answers. A bucket's
timestamp is its end: the row at t holds the events of (t − step, t], t a multiple of the
step, and its count is the mean of the recorded rate samples in that interval × step
(`avg_over_time(rate[step − 1ms]) × step`; 1 ms short of the step so that adjacent buckets
never share a sample, whatever the range-selector semantics of the Prometheus version).

Why the mean rather than the one sample a plain range query would pick: summed over buckets
it equals the sum of every recorded sample × the evaluation interval, i.e. exactly what the
alert windows' `sum_over_time` reads, at any step that is a multiple of the rules'
evaluation interval (the step must not be shorter than that interval). One sample per 300 s
bucket sees a 5m rate whose samples span only 4 of the 5 minutes, and scales it up: unbiased,
but measured −0.76 % off on 5,900 bad events over 8 days, where the mean is within 0.002 %.

SLOs with no recorded history in the range (rules not deployed yet, or deployed after the
range starts) are read from their SLI's raw series instead, one query per SLO and series;
`FetchStats.fallback` names them. With a `cache_dir`, what was fetched is kept (Arrow IPC) per
(URL, tenant, step), and a refresh asks only for what is new (from one bucket before the
newest cached one, which may have been incomplete).

HTTP, retries and the mapping of failures to SourceUnavailable and QueryError live in
`prometheus/client.py` (what happens when Prometheus is down is answered there); the cache
file in `prometheus/cache.py`. This module plans the queries and turns answers into rows.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from slo_engine.budget import ledger
from slo_engine.errors import QueryError
from slo_engine.prometheus import cache
from slo_engine.prometheus.cache import bucket_time, pair_mask
from slo_engine.prometheus.client import PrometheusClient, Result, utc
from slo_engine.rules.compile import bool_gauge_rates, error_ratio_rates, le_matcher
from slo_engine.spec import conventions as names
from slo_engine.spec.model import (
    SLO,
    BoolGaugeSLI,
    ErrorRatioSLI,
    LatencySLI,
    QuerySLI,
    RatioSLI,
    Service,
)
from slo_engine.spec.promql import WINDOW_PLACEHOLDER, number

__all__ = ["KINDS", "POINTS_PER_QUERY", "FetchStats", "Keyed", "PrometheusSource",
           "events_frame", "fallback_queries", "ledger_pairs", "points_frame",
           "recorded_queries", "selector", "slo_id", "whole_step"]

# Prometheus refuses a range query over more than 11,000 points per series.
POINTS_PER_QUERY = 11_000
MAX_MATCHER_CHARS = 16_000  # longer slo/service regexes are left out (rows are filtered anyway)
REFETCH_SECONDS = 300  # a refresh asks again for this much (≥ a bucket) of the newest cache

_TOTAL, _BAD, _GOOD = 0, 1, 2
KINDS = {"total": _TOTAL, "bad": _BAD, "good": _GOOD}


def slo_id(slo: SLO) -> str:
    """How FetchStats and messages name an SLO: `service/slo`."""
    return f"{slo.service}/{slo.name}"


@dataclass
class FetchStats:
    """What one fetch cost and what it could not do; the CLI prints `summary()`."""

    queries: int = 0  # HTTP queries sent (retries of one query not counted)
    bytes: int = 0  # response bytes received
    points: int = 0  # samples received
    fallback: list[str] = field(default_factory=list)  # SLO ids read from their raw series
    unrecorded: list[str] = field(default_factory=list)  # recorded late, nothing raw before
    missing: list[str] = field(default_factory=list)  # SLO ids with no data in the range
    partial: bool = False  # may lack data beyond `missing`: server warnings, failed fallback
    warnings: list[str] = field(default_factory=list)
    ranges: list[tuple[datetime, datetime]] = field(default_factory=list)  # fetched, not cached
    cached_rows: int = 0  # ledger rows served from the cache

    def summary(self) -> str:
        text = f"{self.queries} queries, {self.bytes / 1e6:.2f} MB, {self.points:,} points"
        if self.cached_rows:
            text += f", {self.cached_rows:,} rows from cache"
        if self.fallback:
            text += (f"; read from raw series (no recorded series for all or part of the "
                     f"range): {', '.join(self.fallback)}; deploy the generated rules to make "
                     "this cheap")
        if self.unrecorded:
            text += (f"; history begins after the range does (nothing recorded or raw "
                     f"before): {', '.join(self.unrecorded)}; if they served earlier, "
                     "`slo-engine backfill` writes that history")
        if self.missing:
            text += f"; no data: {', '.join(self.missing)}"
        if self.partial:
            text += "; PARTIAL"
        return text


class PrometheusSource:
    """Reads event ledgers and instant queries from Prometheus (or Thanos, Mimir).

    `headers` go with every request (e.g. `X-Scope-OrgID` for a Mimir tenant, or an
    Authorization header); `timeout` bounds each HTTP request and the server's evaluation;
    failed connections and 502/503/504 answers are retried `retries` times (see
    `prometheus/client.py`). Not thread-safe: give each thread its own source.
    """

    def __init__(self, url: str, headers: Mapping[str, str] | None = None,
                 timeout: float = 30.0, *, cache_dir: Path | None = None,
                 retries: int = 2) -> None:
        self.client = PrometheusClient(url, headers, timeout, retries=retries)
        self._client_args = (url, dict(headers or {}), timeout, retries)
        self.url = self.client.url
        self.shown_url = self.client.shown_url  # what messages and logs may show
        self.timeout = self.client.timeout
        self.cache_dir = cache_dir

    def close(self) -> None:
        self.client.close()

    def new_client(self) -> PrometheusClient:
        """Another client of the same server, for a thread of concurrent queries."""
        url, headers, timeout, retries = self._client_args
        return PrometheusClient(url, headers, timeout, retries=retries)

    def __enter__(self) -> PrometheusSource:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    # --- queries ----------------------------------------------------------------------

    def instant(self, query: str, at: datetime | None = None) -> Result:
        """An instant query at `at` (default: now) as Prometheus' result list: dicts with
        `metric` (labels) and `value` ([unix seconds, "value"]); scalars have no labels."""
        return self.client.instant(query, at)

    def query_range(self, query: str, start: datetime, end: datetime,
                    step_seconds: int = ledger.DEFAULT_STEP_SECONDS,
                    stats: FetchStats | None = None) -> Result:
        """A range query split into chunks of ≤ POINTS_PER_QUERY points; chunks of one
        series are merged, so each label set appears once with all its `values`."""
        step = whole_step(step_seconds)
        lo = math.ceil(utc(start, "start").timestamp() / step) * step
        hi = math.floor(utc(end, "end").timestamp() / step) * step
        merged: dict[tuple[tuple[str, str], ...], dict[str, Any]] = {}
        if hi < lo:
            return []
        for item in self._range(query, lo, hi, step, stats or FetchStats()):
            key = tuple(sorted(item["metric"].items()))
            series = merged.setdefault(key, {"metric": item["metric"], "values": []})
            series["values"].extend(item["values"])
        return list(merged.values())

    # --- the ledger -------------------------------------------------------------------

    def fetch_ledger(self, services: Iterable[Service], start: datetime, end: datetime,
                     step_seconds: int = ledger.DEFAULT_STEP_SECONDS,
                     ) -> tuple[pd.DataFrame, FetchStats]:
        """Bad and total events of every SLO of `services` per bucket of `step_seconds`, for
        the buckets ending in (start, end], as a ledger frame, and what it cost. Each key's
        rows are in time order; keys may interleave after a cached refresh (every consumer
        groups by key itself; `ledger.by_key` orders them).

        Raises SourceUnavailable or QueryError when the recorded series cannot be read; a
        failing fallback query of one SLO only makes the result partial (see its warnings).
        """
        step = whole_step(step_seconds)
        first, last = _bucket_bounds(utc(start, "start"), utc(end, "end"), step)
        slos = {slo_id(s): s for service in services for s in service.slos}
        stats = FetchStats()
        received, warned = self.client.received, len(self.client.server_warnings)
        try:
            frame = self._fetch(slos, first, last, step, stats) \
                if slos and first <= last else ledger.empty()
        finally:
            stats.bytes = self.client.received - received
            server = self.client.server_warnings[warned:]
            if server:
                stats.partial = True
                stats.warnings.extend(f"Prometheus at {self.shown_url} warned: {w}"
                                      for w in server)
        present = ledger_pairs(frame)
        stats.missing = sorted(i for i, s in slos.items() if (s.service, s.name) not in present)
        stats.fallback = sorted(set(stats.fallback))
        stats.unrecorded = sorted(set(stats.unrecorded) - set(stats.fallback))
        return frame, stats

    def _fetch(self, slos: Mapping[str, SLO], first: int, last: int, step: int,
               stats: FetchStats) -> pd.DataFrame:
        cached = cache.load(self.cache_path(step), self.shown_url, step, stats.warnings)
        spans: dict[str, tuple[int, int] | None] = {}
        for sid, slo in slos.items():
            span = cached.coverage.get(sid)
            same = span is not None and span.fingerprint == cache.fingerprint(slo)
            spans[sid] = (span.first, span.last) if span is not None and same else None
        plan, reset = _plan(spans, first, last, step)
        fresh: list[pd.DataFrame] = []
        failed: set[str] = set()
        for (lo, hi), ids in sorted(plan.items()):
            stats.ranges.append((_at(lo), _at(hi)))
            group = [slos[i] for i in ids]
            recorded = self._recorded(group, lo, hi, step, stats)
            fresh.append(recorded)
            for slo, (raw_lo, raw_hi) in _needs_fallback(group, recorded, lo, hi, step):
                try:
                    raw = self._fallback(slo, raw_lo, raw_hi, step, stats)
                except QueryError as error:
                    stats.partial = True
                    stats.warnings.append(f"{slo_id(slo)}: {error}")
                    failed.add(slo_id(slo))
                    continue
                if not raw.empty:
                    stats.fallback.append(slo_id(slo))
                    fresh.append(raw)
                elif raw_hi < hi:  # its recorded series begin within the range
                    stats.unrecorded.append(slo_id(slo))
        merged = cache.merge(cached.frame, fresh, plan, reset, first, slos)
        wanted = pair_mask(merged, [(s.service, s.name) for s in slos.values()])
        result = merged[wanted & (merged["timestamp"] <= bucket_time(last)).to_numpy()]
        stats.cached_rows = max(0, len(result) - sum(len(f) for f in fresh))
        path = self.cache_path(step)
        if path is not None:
            # Buckets after now may still fill: never count them as fetched.
            newest = min(last, math.floor(time.time() / step) * step)
            coverage = cache.new_coverage(cached.coverage, slos, reset, first, newest)
            for sid in failed:  # fetched in full next time rather than left with a hole
                coverage.pop(sid, None)
            keep = pair_mask(merged, [(sid.split("/", 1)[0], sid.split("/", 1)[1])
                                      for sid in coverage])
            cache.save(path, self.shown_url, step, merged[keep], coverage, stats.warnings)
        if result.empty:
            return ledger.empty()
        return result.reset_index(drop=True)

    def _recorded(self, group: Sequence[SLO], lo: int, hi: int, step: int,
                  stats: FetchStats) -> pd.DataFrame:
        """The recorded bad and total rates of `group` over buckets [lo, hi], as counts."""
        by_pair = {(s.service, s.name): s for s in group}
        keyed: list[Keyed] = []
        for kind, query in recorded_queries(group, step).items():
            for item in self._range(query, lo, hi, step, stats):
                labels = item["metric"]
                slo = by_pair.get((labels.get(names.SERVICE_LABEL, ""),
                                   labels.get(names.SLO_LABEL, "")))
                if slo is not None:
                    key = (slo.service, slo.name, ledger.series_group(slo, labels))
                    keyed.append((key, KINDS[kind], item["values"]))
        return events_frame(_recorded_buckets_present(by_pair, keyed, stats), step,
                            good_based=False)

    def _fallback(self, slo: SLO, lo: int, hi: int, step: int,
                  stats: FetchStats) -> pd.DataFrame:
        """One SLO's events over buckets [lo, hi] from its SLI's raw series."""
        queries = fallback_queries(slo, step)
        keyed: list[Keyed] = []
        for kind, query in queries.items():
            keyed.extend(((slo.service, slo.name, ledger.series_group(slo, item["metric"])),
                          KINDS[kind], item["values"])
                         for item in self._range(query, lo, hi, step, stats))
        if isinstance(slo.sli, LatencySLI):
            keyed = _without_missing_bucket(slo, slo.sli, keyed, stats)
        return events_frame(keyed, step, good_based="good" in queries)

    # --- range queries in chunks ------------------------------------------------------

    def _range(self, query: str, lo: int, hi: int, step: int, stats: FetchStats) -> Result:
        result: Result = []
        for a, b in _chunks(lo, hi, step):
            stats.queries += 1
            part = self.client.range_query(query, _at(a), _at(b), step)
            stats.points += sum(len(item["values"]) for item in part)
            result.extend(part)
        return result

    def cache_path(self, step_seconds: int = ledger.DEFAULT_STEP_SECONDS) -> Path | None:
        """The file caching this source's ledger at that step (None: no cache)."""
        if self.cache_dir is None:
            return None
        return cache.path_for(self.cache_dir, self.shown_url, self.client.tenant,
                              whole_step(step_seconds))


# --- queries ---------------------------------------------------------------------------


def recorded_queries(slos: Iterable[SLO], step_seconds: int) -> dict[str, str]:
    """The mean recorded total and bad rate of `slos` per bucket (see the module docstring);
    services and names are matched by regexes, left out when very long: rows are filtered
    by exact service and SLO anyway."""
    match = selector(slos)
    window = f"{whole_step(step_seconds) * 1000 - 1}ms"
    return {kind: f"avg_over_time({metric}{match}[{window}])"
            for kind, metric in (("total", names.TOTAL_EVENTS_RATE),
                                 ("bad", names.BAD_EVENTS_RATE))}


def selector(slos: Iterable[SLO]) -> str:
    """The label matchers of the recorded series of `slos`: services and names by regexes,
    left out when very long (rows are filtered by exact service and SLO anyway)."""
    slos = list(slos)
    matchers = []
    for label, values in ((names.SERVICE_LABEL, {s.service for s in slos}),
                          (names.SLO_LABEL, {s.name for s in slos})):
        pattern = _regex(values)
        if values and len(pattern) <= MAX_MATCHER_CHARS:
            matchers.append(f'{label}=~"{pattern}"')
    return "{" + ", ".join(matchers) + "}" if matchers else ""


def fallback_queries(slo: SLO, step_seconds: int) -> dict[str, str]:
    """Per-second event rates of an SLO from its raw series, by kind (total, bad or good).

    The rate window is the step, but never under the rules' 5m (a 60 s window may hold a
    single sample, which rate() cannot use): × step, that is `increase(...[step])` at steps
    of 5m or more, and at shorter steps overlapping 5m rates whose sum over the buckets
    still counts every event once, as the recorded rates do.
    """
    window = f"{max(whole_step(step_seconds), 300)}s"
    sli = slo.sli
    if isinstance(sli, QuerySLI):
        out = {"total": sli.total.replace(WINDOW_PLACEHOLDER, window).strip()}
        if sli.bad is not None:
            out["bad"] = sli.bad.replace(WINDOW_PLACEHOLDER, window).strip()
        elif sli.good is not None:
            out["good"] = sli.good.replace(WINDOW_PLACEHOLDER, window).strip()
        return out
    if isinstance(sli, BoolGaugeSLI | ErrorRatioSLI):
        # The rules' own expressions over the step's window: a gauge's samples and zeros per
        # second, or (error_ratio) one event per second and the window's ratio of it.
        total, bad = bool_gauge_rates(sli, window, int(window[:-1])) \
            if isinstance(sli, BoolGaugeSLI) else error_ratio_rates(sli, window)
        return {"total": total, "bad": bad}
    by = f"sum by ({', '.join(sli.group_by)}) " if sli.group_by else "sum"

    def rate(selector: str) -> str:
        return f"{by}(rate({selector}[{window}]))"

    if isinstance(sli, LatencySLI):
        return {"total": rate(sli.count.render()),
                "good": rate(sli.bucket.render((le_matcher(sli.threshold_seconds),)))}
    assert isinstance(sli, RatioSLI)
    out = {"total": rate(sli.total.render())}
    if sli.bad is not None:
        out["bad"] = rate(sli.bad.render())
    elif sli.good is not None:
        out["good"] = rate(sli.good.render())
    return out


# --- frames ----------------------------------------------------------------------------

Keyed = tuple[tuple[str, str, str], int, list[Any]]  # (service, slo, group), kind, values


def events_frame(series: Iterable[Keyed], seconds: int, *, good_based: bool) -> pd.DataFrame:
    """Rate series of a range query → ledger rows (not yet normalised): values of one
    (service, slo, group) and kind are summed, × `seconds` (a bucket's step for mean rates,
    the sample interval for sums of samples); no bad series → bad 0; `good_based`:
    bad = total − good (no good series → all bad); no total → no row; 0 ≤ bad ≤ total."""
    keys: dict[tuple[str, str, str], int] = {}
    codes: list[npt.NDArray[np.int64]] = []
    kinds: list[npt.NDArray[np.int64]] = []
    stamps: list[npt.NDArray[np.float64]] = []
    values: list[npt.NDArray[np.float64]] = []
    for key, kind, pairs in series:
        if not pairs:
            continue
        points = np.asarray(pairs, dtype=np.float64).reshape(-1, 2)
        points = points[np.isfinite(points[:, 1])]
        codes.append(np.full(len(points), keys.setdefault(key, len(keys)), dtype=np.int64))
        kinds.append(np.full(len(points), kind, dtype=np.int64))
        stamps.append(points[:, 0])
        values.append(points[:, 1])
    if not keys:
        return ledger.empty()
    return points_frame(list(keys), np.concatenate(codes), np.concatenate(kinds),
                        np.concatenate(stamps), np.concatenate(values), seconds,
                        good_based=good_based)


def points_frame(keys: Sequence[tuple[str, str, str]], key_of: npt.NDArray[np.int64],
                 kind_of: npt.NDArray[np.int64], stamps: npt.NDArray[np.float64],
                 value: npt.NDArray[np.float64], seconds: int, *,
                 good_based: bool) -> pd.DataFrame:
    """`events_frame` of points given as flat arrays: each point's index into `keys`, kind,
    unix time and finite value."""
    if not len(keys):
        return ledger.empty()
    ts = np.rint(stamps).astype(np.int64)
    # One row per (key, timestamp): a composite integer, unique'd and summed per kind.
    t0, width = int(ts.min()), int(ts.max() - ts.min()) + 1
    rows, inverse = np.unique(key_of * width + (ts - t0), return_inverse=True)
    sums, present = {}, {}
    for k in (_TOTAL, _BAD, _GOOD):
        mask = kind_of == k
        sums[k] = np.bincount(inverse[mask], weights=value[mask], minlength=len(rows))
        present[k] = np.bincount(inverse[mask], minlength=len(rows)) > 0
    keep = present[_TOTAL]
    total = np.clip(sums[_TOTAL][keep], 0, None)
    bad = total - sums[_GOOD][keep] if good_based else sums[_BAD][keep]
    bad = np.minimum(np.clip(bad, 0, None), total)
    row_key, row_ts = rows[keep] // width, rows[keep] % width + t0

    def column(part: int) -> pd.Series:
        """Strings per row through categories: converting one string per row is slow."""
        categories, of_key = np.unique([key[part] for key in keys], return_inverse=True)
        return pd.Series(pd.Categorical.from_codes(of_key[row_key],
                                                   pd.Index(categories, dtype=str)))

    return pd.DataFrame({
        "timestamp": pd.to_datetime(row_ts, unit="s", utc=True),
        "service": column(0), "slo": column(1), "group": column(2),
        "total": total * seconds, "bad": bad * seconds,
    })


def _recorded_buckets_present(by_pair: Mapping[tuple[str, str], SLO], keyed: list[Keyed],
                              stats: FetchStats) -> list[Keyed]:
    """Recorded latency totals only where a bad rate was recorded too.

    The rules record a latency SLI's bad rate as `clamp_min(total - good, 0)`, so a missing
    threshold bucket leaves a total without a bad sample; counting that as 0 bad would show
    the group healthy while the rules fire SLODataAbsent. Such a group and bucket is
    missing data, as in the raw fallback.
    """
    by_slo: dict[tuple[str, str], list[Keyed]] = {}
    for entry in keyed:
        by_slo.setdefault(entry[0][:2], []).append(entry)
    kept: list[Keyed] = []
    for pair, entries in by_slo.items():
        slo = by_pair[pair]
        if isinstance(slo.sli, LatencySLI):
            entries = _without_missing_bucket(slo, slo.sli, entries, stats, marker=_BAD)
        kept.extend(entries)
    return kept


def _without_missing_bucket(slo: SLO, sli: LatencySLI, keyed: list[Keyed],
                            stats: FetchStats, marker: int = _GOOD) -> list[Keyed]:
    """Latency totals only where the threshold's bucket has a sample, as the rules do.

    A threshold that is no bucket bound matches no `le` series: read as "no request was
    fast" it would count every event as bad, an outage on healthy traffic. Like the rules'
    `clamp_min(total - good, 0)`, such a group and bucket gets no events at all (missing
    data), and the fetch notes name the bucket. `marker` is the kind whose sample shows the
    bucket: the good rate of raw series, the bad rate the rules derive from it.
    """
    present = {(key, t) for key, kind, pairs in keyed if kind == marker
               for t, value in pairs if math.isfinite(float(value))}
    kept: list[Keyed] = []
    lacking: set[str] = set()
    for key, kind, pairs in keyed:
        if kind == _TOTAL:
            with_bucket = [p for p in pairs if (key, p[0]) in present]
            if len(with_bucket) < len(pairs):
                lacking.add(key[2])
            pairs = with_bucket
        kept.append((key, kind, pairs))
    if lacking:
        where = f" for {', '.join(sorted(lacking))}" if lacking != {""} else ""
        le = number(sli.threshold_seconds)
        note = (f"{slo_id(slo)}: {sli.bucket.metric}{{le=\"{le}\"}} is missing{where}, so "
                f"the {le}s threshold has no good events there; those events are left out "
                "(no data), not counted as slow. The threshold must be a bucket bound of the "
                "histogram: `slo-engine validate --prometheus-url URL` lists them")
        if note not in stats.warnings:
            stats.warnings.append(note)
    return kept


def _needs_fallback(group: Sequence[SLO], recorded: pd.DataFrame, lo: int, hi: int,
                    step: int) -> Iterator[tuple[SLO, tuple[int, int]]]:
    """SLOs whose recorded series are absent over [lo, hi] or start late in it, with the
    buckets their raw series must fill."""
    earliest: dict[tuple[str, str], int] = {}
    if len(recorded):
        firsts = recorded.groupby(["service", "slo"], observed=True)["timestamp"].min()
        earliest = {(str(k[0]), str(k[1])): int(t.timestamp())  # type: ignore[index]
                    for k, t in firsts.items()}
    for slo in group:
        begins = earliest.get((slo.service, slo.name))
        if begins is None:
            yield slo, (lo, hi)
        elif begins > lo:
            yield slo, (lo, begins - step)


def _plan(coverage: Mapping[str, tuple[int, int] | None], first: int, last: int,
          step: int) -> tuple[dict[tuple[int, int], list[str]], set[str]]:
    """Bucket ranges to fetch → the SLO ids that need them; and the SLOs whose cache is
    useless (none, or disjoint from the range). A cached SLO needs what precedes its cache,
    and everything from REFETCH_SECONDS (at least a bucket) before its newest cached bucket:
    that one may have been read before the rules evaluated, or a remote store ingested."""
    margin = math.ceil(REFETCH_SECONDS / step) * step
    plan: dict[tuple[int, int], list[str]] = {}
    reset: set[str] = set()
    for sid, cov in coverage.items():
        if cov is None or cov[1] < first - step or cov[0] > last + step:
            ranges = [(first, last)]
            reset.add(sid)
        else:
            cached_from, cached_to = cov
            suffix = max(first, cached_to - margin)
            ranges = [(suffix, last)] if last >= suffix else []
            if first < min(cached_from, suffix):
                ranges.insert(0, (first, min(cached_from, suffix) - step))
        for one in ranges:
            plan.setdefault(one, []).append(sid)
    return plan, reset


# --- small helpers ---------------------------------------------------------------------


def whole_step(step_seconds: float) -> int:
    if not float(step_seconds).is_integer() or step_seconds <= 0:
        raise ValueError(f"step_seconds must be a whole number of seconds > 0, "
                         f"got {step_seconds!r}")
    return int(step_seconds)


def _bucket_bounds(start: datetime, end: datetime, step: int) -> tuple[int, int]:
    """First and last bucket (end times, multiples of step) inside (start, end]."""
    first = (math.floor(start.timestamp() / step) + 1) * step
    last = math.floor(end.timestamp() / step) * step
    return first, last


def _chunks(lo: int, hi: int, step: int) -> Iterator[tuple[int, int]]:
    size = (POINTS_PER_QUERY - 1) * step  # a chunk of n points spans (n − 1) steps
    while lo <= hi:
        yield lo, min(hi, lo + size)
        lo += size + step


def _at(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _regex(values: Iterable[str]) -> str:
    """An RE2 alternation of literal values, escaped for a double-quoted PromQL string."""
    pattern = "|".join(re.escape(v) for v in sorted(values))
    return pattern.replace("\\", "\\\\").replace('"', '\\"')


def ledger_pairs(frame: pd.DataFrame) -> set[tuple[str, str]]:
    """The (service, slo) pairs a ledger holds, from category codes (hashing a million
    rows of strings would take most of a warm refresh)."""
    if frame.empty:
        return set()
    codes, (service, slo) = ledger.key_codes(frame, ("service", "slo"))
    width = len(slo.categories) + 1
    return {(str(service.categories[c // width]), str(slo.categories[c % width]))
            for c in pd.unique(codes).tolist()}
