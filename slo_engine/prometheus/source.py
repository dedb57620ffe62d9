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

Every failure of prometheus-api-client and requests is translated here into
SourceUnavailable (refused, timeout, 5xx, retries exhausted, not a Prometheus API) or
QueryError (4xx) whose message names the URL and the query: no traceback for the user.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
import pandas as pd
import requests
from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException
from urllib3.util.retry import Retry

from slo_engine.budget import ledger
from slo_engine.errors import QueryError, SourceError, SourceUnavailable
from slo_engine.rules.compile import le_matcher
from slo_engine.spec import conventions as names
from slo_engine.spec.model import SLO, LatencySLI, QuerySLI, RatioSLI, Service
from slo_engine.spec.promql import WINDOW_PLACEHOLDER

__all__ = ["POINTS_PER_QUERY", "FetchStats", "PrometheusSource", "fallback_queries",
           "recorded_queries", "slo_id"]

# Prometheus refuses a range query over more than 11,000 points per series.
POINTS_PER_QUERY = 11_000
RETRY_STATUS = (502, 503, 504)
RETRY_BACKOFF = 0.5  # seconds; sleeps 0, 1, 2 … between attempts
QUERY_IN_MESSAGE = 500  # characters of a query quoted in an error message
MAX_MATCHER_CHARS = 16_000  # longer slo/service regexes are left out (rows are filtered anyway)
REFETCH_SECONDS = 300  # a refresh asks again for this much (≥ a bucket) of the newest cache
CACHE_VERSION = 3
CACHE_ATTR = "slo_engine_cache"
TENANT_HEADER = "x-scope-orgid"  # Mimir/Cortex tenant: part of the cache key

_TOTAL, _BAD, _GOOD = 0, 1, 2
_KINDS = {"total": _TOTAL, "bad": _BAD, "good": _GOOD}

Result = list[dict[str, Any]]


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


class _FormPostSession(requests.Session):
    """prometheus-api-client sends parameters with `params=`, which puts them in the URL even
    for POST; this moves them into a form body, so long queries do not hit URL limits."""

    def prepare_request(self, request: requests.Request) -> requests.PreparedRequest:
        if (request.method or "").upper() == "POST" and request.params and not request.data:
            request.data, request.params = request.params, {}
        return super().prepare_request(request)


class _Span(NamedTuple):
    """The buckets of one SLO in the cache, and the definition they were fetched with."""

    first: int  # unix s
    last: int
    fingerprint: str


@dataclass
class _Cache:
    frame: pd.DataFrame
    coverage: dict[str, _Span]  # by SLO id


_log = logging.getLogger(__name__)
_CACHE_WRITES: list[threading.Thread] = []


def wait_for_cache_writes() -> None:
    """Block until every cache write this process started is on disk."""
    while _CACHE_WRITES:
        _CACHE_WRITES.pop().join()


class PrometheusSource:
    """Reads event ledgers and instant queries from Prometheus (or Thanos, Mimir).

    `headers` go with every request (e.g. `X-Scope-OrgID` for a Mimir tenant, or an
    Authorization header); `timeout` bounds each HTTP request and the server's evaluation;
    failed connections and 502/503/504 answers are retried `retries` times. Not thread-safe:
    give each thread its own source.
    """

    def __init__(self, url: str, headers: Mapping[str, str] | None = None,
                 timeout: float = 30.0, *, cache_dir: Path | None = None,
                 retries: int = 2) -> None:
        if not re.match(r"^https?://[^/]", url):
            raise SourceError(f"Prometheus URL {url!r} must start with http:// or https://, "
                              "e.g. http://prometheus:9090", url=url)
        self.url = url.rstrip("/")
        self.shown_url = without_credentials(self.url)  # what messages and logs may show
        self.timeout = float(timeout)
        self.cache_dir = cache_dir
        self._tenant = next((v for k, v in (headers or {}).items()
                             if k.lower() == TENANT_HEADER), "")
        self._received = 0
        self._server_warnings: list[str] = []
        self._last_response: requests.Response | None = None
        session = _FormPostSession()
        session.hooks["response"].append(self._on_response)
        retry = Retry(total=retries, connect=retries, read=False, status=retries, other=0,
                      backoff_factor=RETRY_BACKOFF, status_forcelist=RETRY_STATUS,
                      allowed_methods=frozenset({"GET", "POST"}),
                      respect_retry_after_header=False, raise_on_status=True)
        self._client = PrometheusConnect(url=self.url, headers=dict(headers or {}) or None,
                                         retry=retry, session=session, timeout=self.timeout,
                                         method="POST")
        self._session = session

    def close(self) -> None:
        self._last_response = None  # it holds the socket until garbage collection otherwise
        self._session.close()

    def __enter__(self) -> PrometheusSource:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    # --- queries ----------------------------------------------------------------------

    def instant(self, query: str, at: datetime | None = None) -> Result:
        """An instant query at `at` (default: now) as Prometheus' result list: dicts with
        `metric` (labels) and `value` ([unix seconds, "value"]); scalars have no labels."""
        params = {"timeout": self._server_timeout()}
        detail = ""
        if at is not None:
            when = _utc(at, "at")
            params["time"] = f"{when.timestamp():.3f}"
            detail = f" at {_iso(when)}"
        result = self._call("query", query, detail, self._client.custom_query, query,
                            params=params)
        if isinstance(result, list) and len(result) == 2 and not isinstance(result[0], dict):
            return [{"metric": {}, "value": result}]  # a scalar or string result
        if not _is_result(result, "value"):
            raise self._not_prometheus("query", query, detail)
        return list(result)

    def query_range(self, query: str, start: datetime, end: datetime,
                    step_seconds: int = ledger.DEFAULT_STEP_SECONDS,
                    stats: FetchStats | None = None) -> Result:
        """A range query split into chunks of ≤ POINTS_PER_QUERY points; chunks of one
        series are merged, so each label set appears once with all its `values`."""
        step = _step(step_seconds)
        lo = math.ceil(_utc(start, "start").timestamp() / step) * step
        hi = math.floor(_utc(end, "end").timestamp() / step) * step
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
        step = _step(step_seconds)
        first, last = _bucket_bounds(_utc(start, "start"), _utc(end, "end"), step)
        slos = {slo_id(s): s for service in services for s in service.slos}
        stats = FetchStats()
        received, warned = self._received, len(self._server_warnings)
        try:
            frame = self._fetch(slos, first, last, step, stats) \
                if slos and first <= last else ledger.empty()
        finally:
            stats.bytes = self._received - received
            server = self._server_warnings[warned:]
            if server:
                stats.partial = True
                stats.warnings.extend(f"Prometheus at {self.shown_url} warned: {w}"
                                      for w in server)
        present = _pairs(frame)
        stats.missing = sorted(i for i, s in slos.items() if (s.service, s.name) not in present)
        stats.fallback = sorted(set(stats.fallback))
        stats.unrecorded = sorted(set(stats.unrecorded) - set(stats.fallback))
        return frame, stats

    def _fetch(self, slos: Mapping[str, SLO], first: int, last: int, step: int,
               stats: FetchStats) -> pd.DataFrame:
        cache = self._load_cache(step, stats)
        spans: dict[str, tuple[int, int] | None] = {}
        for sid, slo in slos.items():
            span = cache.coverage.get(sid)
            same = span is not None and span.fingerprint == _fingerprint(slo)
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
        merged = _merge(cache.frame, fresh, plan, reset, first, slos)
        wanted = _pair_mask(merged, [(s.service, s.name) for s in slos.values()])
        result = merged[wanted & (merged["timestamp"] <= _ts(last)).to_numpy()]
        stats.cached_rows = max(0, len(result) - sum(len(f) for f in fresh))
        if self.cache_dir is not None:
            # Buckets after now may still fill: never count them as fetched.
            newest = min(last, math.floor(time.time() / step) * step)
            coverage = _new_coverage(cache.coverage, slos, reset, first, newest)
            for sid in failed:  # fetched in full next time rather than left with a hole
                coverage.pop(sid, None)
            keep = _pair_mask(merged, [(sid.split("/", 1)[0], sid.split("/", 1)[1])
                                       for sid in coverage])
            self._save_cache(step, merged[keep], coverage, stats)
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
                    keyed.append(((slo.service, slo.name, _group(slo, labels)), _KINDS[kind],
                                  item["values"]))
        return _events(keyed, step, good_based=False)

    def _fallback(self, slo: SLO, lo: int, hi: int, step: int,
                  stats: FetchStats) -> pd.DataFrame:
        """One SLO's events over buckets [lo, hi] from its SLI's raw series."""
        queries = fallback_queries(slo, step)
        keyed: list[Keyed] = []
        for kind, query in queries.items():
            keyed.extend(((slo.service, slo.name, _group(slo, item["metric"])), _KINDS[kind],
                          item["values"]) for item in self._range(query, lo, hi, step, stats))
        return _events(keyed, step, good_based="good" in queries)

    # --- HTTP and error translation ---------------------------------------------------

    def _range(self, query: str, lo: int, hi: int, step: int, stats: FetchStats) -> Result:
        result: Result = []
        for a, b in _chunks(lo, hi, step):
            stats.queries += 1
            detail = f" ({_iso(_at(a))} to {_iso(_at(b))}, step {step}s)"
            part = self._call("query_range", query, detail, self._client.custom_query_range,
                              query, _at(a), _at(b), str(step),
                              params={"timeout": self._server_timeout()})
            if not _is_result(part, "values"):
                raise self._not_prometheus("query_range", query, detail)
            stats.points += sum(len(item["values"]) for item in part)
            result.extend(part)
        return result

    def _server_timeout(self) -> str:
        return f"{self.timeout:g}"  # seconds; Prometheus' durations take no fractions

    def _on_response(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        self._last_response = response
        content = response.content or b""
        self._received += len(content)
        if response.status_code == 200 and b'"warnings"' in content:
            try:
                warnings = json.loads(content).get("warnings") or []
            except (ValueError, AttributeError):
                return
            self._server_warnings.extend(str(w) for w in warnings)

    def _call(self, what: str, query: str, detail: str, function: Callable[..., Any],
              *args: Any, **kwargs: Any) -> Any:
        self._last_response = None
        try:
            return function(*args, **kwargs)
        except PrometheusApiClientException as error:
            raise self._http_error(what, query, detail, str(error)) from None
        except requests.exceptions.RetryError as error:
            status = re.search(r"too many (\d+) error responses", str(error))
            reason = f"HTTP {status.group(1)} on every attempt" if status else str(error)
            raise self._unavailable(what, query, detail, reason) from None
        except requests.exceptions.Timeout:
            reason = f"no answer within {self.timeout:g} s (timeout)"
            raise self._unavailable(what, query, detail, reason) from None
        except requests.exceptions.ConnectionError as error:
            raise self._unavailable(what, query, detail, _connection_reason(error)) from None
        except requests.exceptions.JSONDecodeError:
            raise self._not_prometheus(what, query, detail) from None
        except requests.exceptions.RequestException as error:
            raise self._unavailable(what, query, detail,
                                    f"{type(error).__name__}: {_short(str(error))}") from None
        except (ValueError, KeyError, TypeError):
            raise self._not_prometheus(what, query, detail) from None

    def _unavailable(self, what: str, query: str, detail: str, reason: str) -> SourceUnavailable:
        return SourceUnavailable(
            f"Prometheus at {self.shown_url} is unavailable: {reason}; {what} `{_quoted(query)}`"
            f"{detail}. Check that it is running and reachable at that URL, then retry.",
            url=self.shown_url, query=query)

    def _not_prometheus(self, what: str, query: str, detail: str) -> SourceUnavailable:
        return SourceUnavailable(
            f"{self.shown_url} did not answer like the Prometheus HTTP API (no JSON "
            f"`data.result`) to {what} `{_quoted(query)}`{detail}; the URL should be "
            "Prometheus' root, e.g. http://prometheus:9090 or a Thanos/Mimir Prometheus-API "
            "prefix, without /api/v1.", url=self.shown_url, query=query)

    def _http_error(self, what: str, query: str, detail: str, message: str) -> SourceError:
        response = self._last_response
        if response is not None:
            status, body = response.status_code, response.content or b""
        else:  # "HTTP Status Code 400 (b'...')"
            found = re.match(r"HTTP Status Code (\d+)", message)
            status, body = (int(found.group(1)) if found else 0), message.encode()
        reason = f"HTTP {status}" + _api_error(body)
        if status >= 500 or status in (408, 429):
            return self._unavailable(what, query, detail, reason)
        hint = {
            400: "Fix the query",
            401: "Check the credentials in the headers configured for this Prometheus",
            403: "Check the credentials (and tenant) in the headers configured for it",
            404: "Check the URL: it should be Prometheus' root, without /api/v1",
            422: "Prometheus could not evaluate it (a limit such as query.max-samples): "
                 "ask for a shorter range or a coarser step",
        }.get(status, "Check the query and the URL")
        return QueryError(f"Prometheus at {self.shown_url} rejected {what} "
                          f"`{_quoted(query)}`{detail}: {reason}. {hint}.",
                          url=self.shown_url, query=query)

    # --- cache ------------------------------------------------------------------------

    def cache_path(self, step_seconds: int = ledger.DEFAULT_STEP_SECONDS) -> Path | None:
        """The Arrow IPC file caching this source's ledger at that step (None: no cache).

        Arrow rather than Parquet: a periodic refresh rewrites the whole cache, and for
        1,000 SLOs over 30 days Arrow writes in 0.14 s where Parquet takes 0.51 s."""
        if self.cache_dir is None:
            return None
        key = hashlib.sha256(f"{self.shown_url}\n{self._tenant}".encode()).hexdigest()[:16]
        return self.cache_dir / f"ledger-{key}-{_step(step_seconds)}s.arrow"

    def _load_cache(self, step: int, stats: FetchStats) -> _Cache:
        wait_for_cache_writes()
        path = self.cache_path(step)
        if path is None or not path.exists():
            return _Cache(ledger.empty(), {})
        try:
            frame = pd.read_feather(path)
            meta = frame.attrs.get(CACHE_ATTR)
            if not isinstance(meta, dict) or meta.get("version") != CACHE_VERSION \
                    or meta.get("url") != self.shown_url or meta.get("step") != step:
                raise ValueError("written by another version, URL or step")
            coverage = {str(k): _Span(int(v[0]), int(v[1]), str(v[2]))
                        for k, v in meta["coverage"].items()}
            frame.attrs = {}
            # Written normalised; a full normalise would sort millions of rows again.
            frame = ledger.concat([frame]) if len(frame) else ledger.empty()
        except Exception as error:  # a cache is only an optimisation: any fault → refetch
            stats.warnings.append(f"cache {path} unreadable ({_short(str(error))}); "
                                  "fetched the whole range again")
            return _Cache(ledger.empty(), {})
        return _Cache(frame, coverage)

    def _save_cache(self, step: int, frame: pd.DataFrame,
                    coverage: Mapping[str, _Span], stats: FetchStats) -> None:
        """Write the cache behind the caller's back: the refresh does not wait for a file of
        millions of rows. The thread is not a daemon, so a process finishes the write before
        it exits; the next load in this process waits for it."""
        path = self.cache_path(step)
        assert path is not None
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            stats.warnings.append(f"cache {path} not written: {_short(str(error))}")
            return
        frame = frame.reset_index(drop=True)
        frame.attrs = {CACHE_ATTR: {"version": CACHE_VERSION, "url": self.shown_url,
                                    "step": step,
                                    "coverage": {k: list(v) for k, v in coverage.items()}}}

        def write() -> None:
            try:
                frame.to_feather(tmp, compression="uncompressed")
                os.replace(tmp, path)
            except (OSError, ValueError, TypeError, ImportError) as error:
                _log.warning("cache %s not written: %s", path, _short(str(error)))
                tmp.unlink(missing_ok=True)

        wait_for_cache_writes()
        thread = threading.Thread(target=write, name="slo-engine-cache-write")
        _CACHE_WRITES.append(thread)
        thread.start()


# --- queries ---------------------------------------------------------------------------


def recorded_queries(slos: Iterable[SLO], step_seconds: int) -> dict[str, str]:
    """The mean recorded total and bad rate of `slos` per bucket (see the module docstring);
    services and names are matched by regexes, left out when very long: rows are filtered
    by exact service and SLO anyway."""
    slos = list(slos)
    matchers = []
    for label, values in ((names.SERVICE_LABEL, {s.service for s in slos}),
                          (names.SLO_LABEL, {s.name for s in slos})):
        pattern = _regex(values)
        if values and len(pattern) <= MAX_MATCHER_CHARS:
            matchers.append(f'{label}=~"{pattern}"')
    selector = "{" + ", ".join(matchers) + "}" if matchers else ""
    window = f"{_step(step_seconds) * 1000 - 1}ms"
    return {kind: f"avg_over_time({metric}{selector}[{window}])"
            for kind, metric in (("total", names.TOTAL_EVENTS_RATE),
                                 ("bad", names.BAD_EVENTS_RATE))}


def fallback_queries(slo: SLO, step_seconds: int) -> dict[str, str]:
    """Per-second event rates of an SLO from its raw series, by kind (total, bad or good).

    The rate window is the step, but never under the rules' 5m (a 60 s window may hold a
    single sample, which rate() cannot use): × step, that is `increase(...[step])` at steps
    of 5m or more, and at shorter steps overlapping 5m rates whose sum over the buckets
    still counts every event once, as the recorded rates do.
    """
    window = f"{max(_step(step_seconds), 300)}s"
    sli = slo.sli
    if isinstance(sli, QuerySLI):
        out = {"total": sli.total.replace(WINDOW_PLACEHOLDER, window).strip()}
        if sli.bad is not None:
            out["bad"] = sli.bad.replace(WINDOW_PLACEHOLDER, window).strip()
        elif sli.good is not None:
            out["good"] = sli.good.replace(WINDOW_PLACEHOLDER, window).strip()
        return out
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


def _events(series: Iterable[Keyed], step: int, *, good_based: bool) -> pd.DataFrame:
    """Rate series of a range query → ledger rows (not yet normalised): values of one
    (service, slo, group) and kind are summed, × step; no bad series → bad 0; `good_based`:
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
    key_of, kind_of = np.concatenate(codes), np.concatenate(kinds)
    ts, value = np.rint(np.concatenate(stamps)).astype(np.int64), np.concatenate(values)
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
        "total": total * step, "bad": bad * step,
    })


def _group(slo: SLO, labels: Mapping[str, str]) -> str:
    return ledger.group_key({k: labels.get(k, "") for k in slo.group_by})


def _is_result(result: Any, values_key: str) -> bool:
    """Whether `result` is a list of series as the Prometheus API returns them."""
    return isinstance(result, list) and all(
        isinstance(item, dict) and isinstance(item.get("metric"), dict)
        and isinstance(item.get(values_key), list) for item in result)


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


def _merge(cached: pd.DataFrame, fresh: Sequence[pd.DataFrame],
           plan: Mapping[tuple[int, int], Sequence[str]], reset: set[str], first: int,
           slos: Mapping[str, SLO]) -> pd.DataFrame:
    """Cached rows from `first` on, less the SLOs and ranges fetched again, plus the fresh."""
    old = cached[cached["timestamp"] >= _ts(first)]

    def of(ids: Iterable[str]) -> npt.NDArray[np.bool_]:
        return _pair_mask(old, [(slos[i].service, slos[i].name) for i in ids])

    drop = of(reset) if len(old) else np.zeros(0, dtype=bool)
    for (lo, hi), ids in plan.items():
        if len(old):
            inside = ((old["timestamp"] >= _ts(lo)) & (old["timestamp"] <= _ts(hi))).to_numpy()
            drop |= inside & of(ids)
    new = ledger.concat(list(fresh))
    if sum(1 for f in fresh if len(f)) > 1:  # raw history before recorded: order, dedupe
        new = ledger.normalise(new, source="Prometheus").drop_duplicates(
            subset=[*ledger.KEY, "timestamp"], keep="last").reset_index(drop=True)
    kept = old[~drop]
    if not len(new):
        return kept.reset_index(drop=True)
    if len(kept) and new["timestamp"].min() <= kept["timestamp"].max():
        # Not a suffix of every key's history (a range fetched before the cached one):
        # order it in full.
        return ledger.normalise(ledger.concat([kept, new]), source="cache")
    # The usual refresh: only newer buckets, so every key stays in time order.
    return ledger.concat([kept, new])


def _new_coverage(old: Mapping[str, _Span], slos: Mapping[str, SLO], reset: set[str],
                  first: int, newest: int) -> dict[str, _Span]:
    """Spans after a fetch of [first, newest]: other SLOs keep theirs, cut at `first`."""
    coverage: dict[str, _Span] = {}
    for sid, span in old.items():
        if sid not in slos and max(span.first, first) <= span.last:
            coverage[sid] = span._replace(first=max(span.first, first))
    for sid, slo in slos.items():
        extended = sid in old and sid not in reset
        last = max(newest, old[sid].last) if extended else newest
        if first <= last:
            coverage[sid] = _Span(first, last, _fingerprint(slo))
    return coverage


def _fingerprint(slo: SLO) -> str:
    """Changes when what the rows of an SLO are computed from changes (SLI, group_by)."""
    return hashlib.sha256(repr(slo.sli).encode()).hexdigest()[:16]


# --- small helpers ---------------------------------------------------------------------


def _step(step_seconds: float) -> int:
    if not float(step_seconds).is_integer() or step_seconds <= 0:
        raise ValueError(f"step_seconds must be a whole number of seconds > 0, "
                         f"got {step_seconds!r}")
    return int(step_seconds)


def _utc(value: datetime, what: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware (UTC), got naive {value.isoformat()}")
    return value.astimezone(UTC)


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


def _ts(seconds: int) -> pd.Timestamp:
    return pd.Timestamp(seconds, unit="s", tz="UTC")


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _regex(values: Iterable[str]) -> str:
    """An RE2 alternation of literal values, escaped for a double-quoted PromQL string."""
    pattern = "|".join(re.escape(v) for v in sorted(values))
    return pattern.replace("\\", "\\\\").replace('"', '\\"')


def _quoted(query: str) -> str:
    query = " ".join(query.split())
    return query if len(query) <= QUERY_IN_MESSAGE else query[:QUERY_IN_MESSAGE] + "…"


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "…"


def _api_error(body: bytes) -> str:
    """` bad_data: parse error …` from Prometheus' error JSON, or the start of the body."""
    try:
        payload = json.loads(body)
        return f" {payload.get('errorType', 'error')}: {payload['error']}"
    except (ValueError, KeyError, TypeError, AttributeError):
        text = body.decode(errors="replace").strip()
        return f": {_short(text, 200)}" if text else ""


def _connection_reason(error: BaseException) -> str:
    text = str(error)
    lowered = text.lower()
    if "refused" in lowered:
        return "connection refused"
    if "resolve" in lowered or "name or service not known" in lowered \
            or "nodename nor servname" in lowered:
        return "the host name does not resolve"
    if "timed out" in lowered:
        return "connection timed out"
    if "reset" in lowered or "aborted" in lowered or "disconnected" in lowered:
        return "the connection closed before an answer"
    return _short(text, 200)


def _pairs(frame: pd.DataFrame) -> set[tuple[str, str]]:
    """The (service, slo) pairs a ledger holds, from category codes (hashing a million
    rows of strings would take most of a warm refresh)."""
    if frame.empty:
        return set()
    codes, (service, slo) = ledger.key_codes(frame, ("service", "slo"))
    width = len(slo.categories) + 1
    return {(str(service.categories[c // width]), str(slo.categories[c % width]))
            for c in pd.unique(codes).tolist()}


def _pair_mask(frame: pd.DataFrame, pairs: Iterable[tuple[str, str]]) -> npt.NDArray[np.bool_]:
    """Rows whose (service, slo) is one of `pairs`, compared as category codes."""
    if frame.empty:
        return np.zeros(0, dtype=bool)
    codes, (service, slo) = ledger.key_codes(frame, ("service", "slo"))
    width = len(slo.categories) + 1
    services = {str(name): code for code, name in enumerate(service.categories)}
    slos = {str(name): code for code, name in enumerate(slo.categories)}
    table = np.zeros((len(service.categories) + 1) * width, dtype=bool)
    table[[services[a] * width + slos[b] for a, b in pairs if a in services and b in slos]] = True
    mask: npt.NDArray[np.bool_] = table[codes]
    return mask


def without_credentials(url: str) -> str:
    """`url` with any user:password@ masked, so no error or log line shows a secret."""
    parts = urllib.parse.urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"***@{host}" + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))
