"""The HTTP edge to Prometheus (or Thanos, Mimir): every request the engine sends to it goes
through `PrometheusClient`, and every failure comes out as one of two errors.

What happens when Prometheus is down:

- **Retries.** A refused or dropped connection and a 502, 503 or 504 answer are retried
  `retries` times (default 2) with exponential backoff (`RETRY_BACKOFF` 0.5 s: sleeps 0,
  1, 2 … s), ignoring Retry-After. A read timeout is not retried: a query too slow once is
  slower again. Each request waits at most `timeout` seconds (default 30), which is also
  sent as the query's server-side timeout.
- **Error mapping.** When the retries are spent, prometheus-api-client's and requests'
  exceptions become `SourceUnavailable` (refused, DNS, timeout, 5xx, 408, 429, or the URL
  does not answer like the Prometheus HTTP API: retry later or fix the URL) or `QueryError`
  (any other 4xx: bad PromQL, a limit, credentials; retrying will not help). Both are
  `SourceError`s whose message names the URL, with any user:password masked
  (`slo_engine.redaction.redact`), and the query: no traceback reaches the user.
- **Who sees them.** The CLI prints the message and exits non-zero (`gate` and `canary`
  exit 2, "cannot decide"). The service (`service/engine.py`) counts each in its
  `query_errors` metric; a failed evaluation starts an outage, announced once (to the
  Slack fallback channel, else every owner's) after `schedule.no_data_after`
  (`paging/notices.outage_message`) and again when Prometheus answers
  (`recovery_message`); a failed budget refresh keeps the last budgets;
  a page whose onset, burn rate or build-info deploys cannot be read goes out without
  them; `/readyz` reports the probe's error. In a ledger fetch, a `QueryError` of one
  SLO's raw-series fallback only marks the result partial (`prometheus/source.py`).
"""

from __future__ import annotations

import gc
import json
import re
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

import requests
from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException
from urllib3.util.retry import Retry

from slo_engine.errors import QueryError, SourceError, SourceUnavailable
from slo_engine.redaction import redact

__all__ = ["COLLECTOR_PAUSE", "RETRY_BACKOFF", "RETRY_STATUS", "PrometheusClient", "Result",
           "short", "utc"]

RETRY_STATUS = (502, 503, 504)
RETRY_BACKOFF = 0.5  # seconds; sleeps 0, 1, 2 … between attempts
QUERY_IN_MESSAGE = 500  # characters of a query quoted in an error message
TENANT_HEADER = "x-scope-orgid"  # Mimir/Cortex tenant

Result = list[dict[str, Any]]


class _FormPostSession(requests.Session):
    """prometheus-api-client sends parameters with `params=`, which puts them in the URL even
    for POST; this moves them into a form body, so long queries do not hit URL limits."""

    def prepare_request(self, request: requests.Request) -> requests.PreparedRequest:
        if (request.method or "").upper() == "POST" and request.params and not request.data:
            request.data, request.params = request.params, {}
        return super().prepare_request(request)


class PrometheusClient:
    """Instant and range queries against one Prometheus API, retried and mapped to
    `SourceError`s as the module docstring says.

    `headers` go with every request (e.g. `X-Scope-OrgID` for a Mimir tenant, or an
    Authorization header). It also counts the response bytes received (`received`) and
    collects the warnings Prometheus sent with its answers (`server_warnings`). Not
    thread-safe: give each thread its own client.
    """

    def __init__(self, url: str, headers: Mapping[str, str] | None = None,
                 timeout: float = 30.0, *, retries: int = 2) -> None:
        if not re.match(r"^https?://[^/]", url):
            raise SourceError(f"Prometheus URL {redact(url)!r} must start with http:// or "
                              "https://, e.g. http://prometheus:9090", url=redact(url))
        self.url = url.rstrip("/")
        self.shown_url = redact(self.url)  # what messages and logs may show
        self.timeout = float(timeout)
        self.tenant = next((v for k, v in (headers or {}).items()
                            if k.lower() == TENANT_HEADER), "")
        self.received = 0
        self.server_warnings: list[str] = []
        self._last_response: requests.Response | None = None
        session = _FormPostSession()
        session.hooks["response"].append(self._on_response)
        retry = Retry(total=retries, connect=retries, read=False, status=retries, other=0,
                      backoff_factor=RETRY_BACKOFF, status_forcelist=RETRY_STATUS,
                      allowed_methods=frozenset({"GET", "POST"}),
                      respect_retry_after_header=False, raise_on_status=True)
        self._api = PrometheusConnect(url=self.url, headers=dict(headers or {}) or None,
                                      retry=retry, session=session, timeout=self.timeout,
                                      method="POST")
        self._session = session

    def close(self) -> None:
        self._last_response = None  # it holds the socket until garbage collection otherwise
        self._session.close()

    def __enter__(self) -> PrometheusClient:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    def instant(self, query: str, at: datetime | None = None) -> Result:
        """An instant query at `at` (default: now) as Prometheus' result list: dicts with
        `metric` (labels) and `value` ([unix seconds, "value"]); scalars have no labels."""
        params = {"timeout": self._server_timeout()}
        detail = ""
        if at is not None:
            when = utc(at, "at")
            params["time"] = f"{when.timestamp():.3f}"
            detail = f" at {_iso(when)}"
        with COLLECTOR_PAUSE:
            result = self._call("query", query, detail, self._api.custom_query, query,
                                params=params)
        if isinstance(result, list) and len(result) == 2 and not isinstance(result[0], dict):
            return [{"metric": {}, "value": result}]  # a scalar or string result
        if not _is_result(result, "value"):
            raise self._not_prometheus("query", query, detail)
        return list(result)

    def range_query(self, query: str, start: datetime, end: datetime, step: int) -> Result:
        """One range query request: series with `metric` and `values`. The caller keeps it
        within the points per series Prometheus answers (`source.POINTS_PER_QUERY`)."""
        detail = f" ({_iso(start)} to {_iso(end)}, step {step}s)"
        result = self._call("query_range", query, detail, self._api.custom_query_range,
                            query, start, end, str(step),
                            params={"timeout": self._server_timeout()})
        if not _is_result(result, "values"):
            raise self._not_prometheus("query_range", query, detail)
        return list(result)

    # --- HTTP and error translation -------------------------------------------------------

    def _server_timeout(self) -> str:
        return f"{self.timeout:g}"  # seconds; Prometheus' durations take no fractions

    def _on_response(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        self._last_response = response
        content = response.content or b""
        self.received += len(content)
        if response.status_code == 200 and b'"warnings"' in content:
            try:
                warnings = json.loads(content).get("warnings") or []
            except (ValueError, AttributeError):
                return
            self.server_warnings.extend(str(w) for w in warnings)

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
                                    f"{type(error).__name__}: {short(str(error))}") from None
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


def utc(value: datetime, what: str) -> datetime:
    """`value` in UTC; a naive time is refused, as the engine never guesses a timezone."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware (UTC), got naive {value.isoformat()}")
    return value.astimezone(UTC)


def short(text: str, limit: int = 300) -> str:
    """An error's text on one line and at most `limit` characters, for a message."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "…"


class _CollectorPause:
    """Python's cycle collector paused while any thread builds large acyclic data: an
    instant query's answer as it is decoded (`PrometheusClient.instant`), and what a
    caller builds from answers it holds (the evaluator's index of them).

    At 10,000 SLOs an answer is tens of thousands of fresh containers (two per series), and
    the collector, set off by their allocation, traverses them and the rest of the heap
    many times over while they are built: 7 answers of 10,000 series took 0.65-1.9 s to
    decode with it, 0.15 s without, and indexing them while they were all held cost as
    much again. Answers hold no reference cycle to find; the collector runs again once the
    last thread is done (or stays off if it was off).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._holders = 0
        self._was_enabled = False

    def __enter__(self) -> None:
        with self._lock:
            if not self._holders:
                self._was_enabled = gc.isenabled()
                gc.disable()
            self._holders += 1

    def __exit__(self, *_: object) -> None:
        with self._lock:
            self._holders -= 1
            if not self._holders and self._was_enabled:
                gc.enable()


COLLECTOR_PAUSE = _CollectorPause()


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _is_result(result: Any, values_key: str) -> bool:
    """Whether `result` is a list of series as the Prometheus API returns them."""
    return isinstance(result, list) and all(
        isinstance(item, dict) and isinstance(item.get("metric"), dict)
        and isinstance(item.get(values_key), list) for item in result)


def _quoted(query: str) -> str:
    query = " ".join(query.split())
    return query if len(query) <= QUERY_IN_MESSAGE else query[:QUERY_IN_MESSAGE] + "…"


def _api_error(body: bytes) -> str:
    """` bad_data: parse error …` from Prometheus' error JSON, or the start of the body."""
    try:
        payload = json.loads(body)
        return f" {payload.get('errorType', 'error')}: {payload['error']}"
    except (ValueError, KeyError, TypeError, AttributeError):
        text = body.decode(errors="replace").strip()
        return f": {short(text, 200)}" if text else ""


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
    return short(text, 200)
