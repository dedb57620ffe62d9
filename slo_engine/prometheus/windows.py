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

With a cache directory, each key's sums from the oldest edge to every edge are kept (`Sums`),
and a later refresh adds to the newest kept edge before each new edge the stretch between
them: a periodic refresh 5 minutes on reads about 5 minutes per edge instead of the period.
The newest edge is never kept (its samples may still arrive), and anything else (other
SLOs or SLIs, an edge before the kept ones, an unreadable file) sums afresh.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from slo_engine.budget import accounting, ledger
from slo_engine.prometheus.cache import fingerprint
from slo_engine.prometheus.client import Result, short, utc
from slo_engine.prometheus.source import (
    KINDS,
    REFETCH_SECONDS,
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
STATE_VERSION = 1


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
    nothing else should read this ledger (charts and backtests need every bucket). With the
    source's `cache_dir`, the sums at each edge are kept, and the next refresh asks only for
    the stretch each edge moved. Raises SourceUnavailable or QueryError as `fetch_ledger`
    does.
    """
    step = whole_step(step_seconds)
    slos = {slo_id(s): s for service in services for s in service.slos}
    points = edges(services, start, at, step)
    if not slos or len(points) < 2:
        return source.fetch_ledger(services, start, at, step)
    stats = FetchStats()
    path = _state_path(source, step)
    meta = {"version": STATE_VERSION, "url": source.shown_url, "step": step,
            "sample_seconds": sample_seconds,
            "slos": {i: fingerprint(s) for i, s in sorted(slos.items())}}
    state = _load(path, meta, stats.warnings)
    sums = None if state is None else _moved(source, slos, state, points, step, stats)
    if sums is None:
        sums = _summed(source, slos, points, step, stats)
    if path is not None:
        _save(path, meta, sums, stats.warnings)
    frame, summed = _rows(sums, slos, points, sample_seconds)
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


Key = tuple[str, str, str]  # service, slo, group


@dataclass
class Sums:
    """Each key's recorded total and bad rates summed from `edges[0]` to each edge."""

    edges: list[int]
    keys: list[Key]
    total: npt.NDArray[np.float64]  # (keys, edges), cumulative
    bad: npt.NDArray[np.float64]
    complete: set[Key]  # a total recorded in the range's first bucket
    lacking: dict[tuple[str, str], int]  # latency pairs missing a bad rate → until when


def _summed(source: PrometheusSource, slos: Mapping[str, SLO], points: Sequence[int],
            step: int, stats: FetchStats) -> Sums:
    """Cold: every segment between the edges (long ones split) summed by Prometheus."""
    cut = split(points, step)
    queries = segment_queries(slos.values(), list(itertools.pairwise(cut)))
    latency = [s for s in slos.values() if isinstance(s.sli, LatencySLI)]
    if latency:
        queries.append(("check", cut[-1], lacking_bad_query(latency, cut[0], cut[-1])))
    answers = _instant_all(source, [(query, when) for _, when, query in queries], stats)
    index = {t: n for n, t in enumerate(cut)}
    table = _Table(slos, len(cut))
    for (kind, hi, _), answer in zip(queries, answers, strict=True):
        if kind == "check":
            table.lacking.update(dict.fromkeys(table.pairs(answer), cut[-1]))
        else:
            table.add(kind, index[hi], answer)
            if kind == "total" and hi == cut[0] + step:
                table.complete.update(table.keyed(answer))
    return table.sums(cut, None)


def _moved(source: PrometheusSource, slos: Mapping[str, SLO], state: Sums,
           points: Sequence[int], step: int, stats: FetchStats) -> Sums | None:
    """Warm: each edge's sums from the newest kept edge before it plus the stretch between
    them; None when an edge lies before the kept ones (a report further back: cold)."""
    kept = [t for t in state.edges if t <= state.edges[-1] - REFETCH_SECONDS]
    if not kept or points[0] < kept[0]:
        return None
    bases = {p: max(t for t in kept if t <= p) for p in points}
    pieces = sorted({(b, p) for p, b in bases.items() if b != p})
    queries = segment_queries(slos.values(), pieces)
    queries.append(("first", points[0] + step,
                    f"count_over_time({names.TOTAL_EVENTS_RATE}{selector(slos.values())}"
                    f"[{step * 1000 - 1}ms])"))
    latency = [s for s in slos.values() if isinstance(s.sli, LatencySLI)]
    if latency:
        queries += [("check", hi, lacking_bad_query(latency, lo, hi)) for lo, hi in pieces]
    answers = _instant_all(source, [(query, when) for _, when, query in queries], stats)
    table = _Table(slos, len(points), state)
    where = {p: n for n, p in enumerate(points)}
    # Pieces are summed into the column of their end; kept edges copy their sums.
    for (kind, hi, _), answer in zip(queries, answers, strict=True):
        if kind == "check":
            table.lacking.update(dict.fromkeys(table.pairs(answer), hi))
        elif kind == "first":
            table.complete.update(table.keyed(answer))
        else:
            table.add(kind, where[hi], answer)
    column = {t: n for n, t in enumerate(state.edges)}
    base = np.array([column[bases[p]] for p in points])
    table.lacking = {pair: until for pair, until in table.lacking.items() if until > points[0]}
    return table.sums(points, base)


class _Table:
    """Sums per key and edge being gathered from answers, keyed as the bucket ledger is."""

    def __init__(self, slos: Mapping[str, SLO], width: int, state: Sums | None = None) -> None:
        self.by_pair = {(s.service, s.name): s for s in slos.values()}
        self.width = width
        self.state = state
        self.index: dict[Key, int] = {k: n for n, k in enumerate(state.keys)} if state else {}
        self.rows: dict[str, list[tuple[int, int, float]]] = {"total": [], "bad": []}
        self.complete: set[Key] = set()
        self.lacking: dict[tuple[str, str], int] = dict(state.lacking) if state else {}

    def key(self, labels: Mapping[str, str]) -> Key | None:
        slo = self.by_pair.get((labels.get(names.SERVICE_LABEL, ""),
                                labels.get(names.SLO_LABEL, "")))
        if slo is None:
            return None
        return slo.service, slo.name, ledger.series_group(slo, labels)

    def keyed(self, answer: Result) -> Iterable[Key]:
        return (k for k in (self.key(item["metric"]) for item in answer) if k is not None)

    def pairs(self, answer: Result) -> Iterable[tuple[str, str]]:
        return (k[:2] for k in self.keyed(answer))

    def add(self, kind: str, column: int, answer: Result) -> None:
        rows = self.rows[kind]
        for item in answer:
            key = self.key(item["metric"])
            value = float(item["value"][1])
            if key is not None and math.isfinite(value):
                rows.append((self.index.setdefault(key, len(self.index)), column, value))

    def sums(self, points: Sequence[int], base: npt.NDArray[np.int64] | None) -> Sums:
        """Cold (`base` None): columns are segments, summed along. Warm: columns are pieces
        ending at each point, added to the kept sums at each point's `base` column."""
        out = {}
        for kind, rows in self.rows.items():
            piece = np.zeros((len(self.index), self.width))
            if rows:
                at = np.array([(r, c) for r, c, _ in rows], dtype=np.int64)
                np.add.at(piece, (at[:, 0], at[:, 1]), np.array([v for _, _, v in rows]))
            if self.state is None or base is None:
                out[kind] = np.cumsum(piece, axis=1)
            else:
                old = self.state.total if kind == "total" else self.state.bad
                grown = np.zeros((len(self.index), old.shape[1]))
                grown[:len(old)] = old
                out[kind] = grown[:, base] + piece
        return Sums(list(points), list(self.index), out["total"], out["bad"], self.complete,
                    self.lacking)


def _rows(sums: Sums, slos: Mapping[str, SLO], points: Sequence[int],
          sample_seconds: int) -> tuple[pd.DataFrame, set[tuple[str, str]]]:
    """Ledger rows between the report's edges of every pair all of whose keys were recorded
    in the range's first bucket (so none begins late: its first row is the bucket ledger's),
    and those pairs."""
    pairs = {(s.service, s.name) for s in slos.values()}
    late = {k[:2] for k in sums.keys if k not in sums.complete}
    summed = ({k[:2] for k in sums.complete} & pairs) - late - set(sums.lacking)
    rows = [n for n, k in enumerate(sums.keys) if k[:2] in summed]
    if not rows:
        return ledger.empty(), summed
    column = {t: n for n, t in enumerate(sums.edges)}
    at = np.array([column[p] for p in points])
    total = np.diff(sums.total[rows][:, at], axis=1)
    bad = np.diff(sums.bad[rows][:, at], axis=1)
    total = np.clip(total, 0, None)
    bad = np.minimum(np.clip(bad, 0, None), total)
    keys = [sums.keys[n] for n in rows]
    count, width = len(keys), len(points) - 1
    key_of = np.tile(np.repeat(np.arange(count, dtype=np.int64), width), 2)
    kind_of = np.repeat(np.array([KINDS["total"], KINDS["bad"]], dtype=np.int64), count * width)
    stamps = np.tile(np.array(points[1:], dtype=np.float64), 2 * count)
    frame = points_frame(keys, key_of, kind_of, stamps,
                         np.concatenate([total.ravel(), bad.ravel()]), sample_seconds,
                         good_based=False)
    return frame, summed


def _state_path(source: PrometheusSource, step: int) -> Path | None:
    path = source.cache_path(step)
    return None if path is None else path.with_name(
        path.name.replace("ledger-", "windows-").replace(".arrow", ".npz"))


def _load(path: Path | None, meta: Mapping[str, Any], warnings: list[str]) -> Sums | None:
    """The sums kept by the last refresh of the same SLOs, server, step and interval; None
    (cold) otherwise, with a warning when a file was there but unreadable."""
    if path is None or not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as saved:
            stored = json.loads(str(saved["meta"]))
            if stored.get("meta") != json.loads(json.dumps(meta)):
                return None  # other SLOs or definitions: sum them afresh
            keys = list(zip(*(saved[c].tolist() for c in ("service", "slo", "group")),
                            strict=True))
            sums = Sums([int(t) for t in saved["edges"]], keys, saved["total"], saved["bad"],
                        {keys[n] for n in np.flatnonzero(saved["complete"])},
                        {(a, b): int(t) for a, b, t in stored["lacking"]})
        if sums.total.shape != (len(keys), len(sums.edges)) or sums.bad.shape != \
                sums.total.shape or len(sums.edges) < 2:
            raise ValueError("arrays of the wrong shape")
    except Exception as error:  # a cache is only an optimisation: any fault → cold
        warnings.append(f"cache {path} unreadable ({short(str(error))}); summed the whole "
                        "range again")
        return None
    return sums


def _save(path: Path, meta: Mapping[str, Any], sums: Sums, warnings: list[str]) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp.npz")
    columns = list(zip(*sums.keys, strict=True)) if sums.keys else [(), (), ()]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, npt.NDArray[Any]] = {
            name: np.array(column, dtype=str)
            for name, column in zip(("service", "slo", "group"), columns, strict=True)}
        arrays.update(
            meta=np.array(json.dumps({"meta": meta, "lacking": [
                [a, b, t] for (a, b), t in sorted(sums.lacking.items())]})),
            edges=np.array(sums.edges, dtype=np.int64), total=sums.total, bad=sums.bad,
            complete=np.array([k in sums.complete for k in sums.keys], dtype=bool))
        np.savez(tmp, **arrays)  # type: ignore[arg-type]
        os.replace(tmp, path)
    except OSError as error:
        tmp.unlink(missing_ok=True)
        warnings.append(f"cache {path} not written: {short(str(error))}")


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
