"""`validate --prometheus-url`: do the SLO files fit the metrics Prometheus really has?

The spec checks are pure and cannot know that a selector matches nothing, or that a latency
threshold is no bucket bound of its histogram (then the SLI has no value: see
`rules/compile.py`). This asks Prometheus, over the last `LOOKBACK`, and answers with
`SpecIssue`s at the field that needs fixing, as `validate` does. `plan` decides what to ask
(pure); `lint` asks.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from slo_engine.errors import SpecIssue
from slo_engine.prometheus.source import PrometheusSource
from slo_engine.spec.durations import format_duration
from slo_engine.spec.loader import PathKey, SpecDocument, parse_yaml
from slo_engine.spec.model import SLO, BoolGaugeSLI, ErrorRatioSLI, LatencySLI, RatioSLI, Service
from slo_engine.spec.promql import number, query_selectors

LOOKBACK = "1h"  # a series scraped within this long exists


@dataclass(frozen=True)
class SeriesCheck:
    """Does `selector` match any series? If not, an error at `path` (a warning if `optional`:
    a bad-events counter with no series yet may only mean nothing failed yet)."""

    path: PathKey
    selector: str
    optional: bool = False


@dataclass(frozen=True)
class BucketCheck:
    """Is `threshold_seconds` an `le` bound of the histogram `bucket` selects?"""

    path: PathKey
    bucket: str
    metric: str
    threshold_seconds: float


Check = SeriesCheck | BucketCheck


@dataclass(frozen=True)
class LintReport:
    errors: list[SpecIssue]
    warnings: list[SpecIssue]


def plan(slo: SLO, index: int) -> list[Check]:
    """What to ask Prometheus about the SLO at `slos[index]` of its file."""
    sli = slo.sli
    base: PathKey = ("slos", index, "sli")
    if isinstance(sli, RatioSLI):
        fields = (("bad", sli.bad), ("good", sli.good), ("total", sli.total))
        return [SeriesCheck((*base, "ratio", name), selector.render(), optional=name == "bad")
                for name, selector in fields if selector is not None]
    if isinstance(sli, LatencySLI):
        where: PathKey = (*base, "latency", "selector" if sli.selector.matchers else "metric")
        return [SeriesCheck(where, sli.count.render()),
                BucketCheck((*base, "latency", "threshold"), sli.bucket.render(),
                            sli.selector.metric, sli.threshold_seconds)]
    if isinstance(sli, BoolGaugeSLI):
        return [SeriesCheck((*base, "bool_gauge", "metric"), sli.metric.render())]
    if isinstance(sli, ErrorRatioSLI):
        return [SeriesCheck((*base, "error_ratio", "query"), selector)
                for selector in query_selectors(sli.query)]
    queries = (("bad", sli.bad), ("good", sli.good), ("total", sli.total))
    return [SeriesCheck((*base, "query", name), selector, optional=name == "bad")
            for name, text in queries if text is not None
            for selector in query_selectors(text)]


def bucket_problem(check: BucketCheck, bounds: Iterable[str]) -> str | None:
    """Why the threshold is not a bound of the buckets seen (`le` values), or None."""
    values = sorted({float(b) for b in bounds})
    if not values:
        return (f"no series of {check.bucket} in Prometheus over the last {LOOKBACK}; check "
                "the metric name and the selector")
    if any(math.isclose(v, check.threshold_seconds, rel_tol=1e-9) for v in values):
        return None
    shown = ", ".join("+Inf" if math.isinf(v) else number(v) for v in values)
    return (f"{format_duration(check.threshold_seconds)} is not a bucket bound of {check.metric}; "
            f"its bounds are {shown}; pick one (a missing bucket leaves the SLI without data)")


def lint(services: Iterable[Service], source: PrometheusSource,
         documents: Mapping[str, SpecDocument] | None = None) -> LintReport:
    """Ask Prometheus every check of every SLO; locate each problem in its spec file."""
    documents = dict(documents or {})
    errors: list[SpecIssue] = []
    warnings: list[SpecIssue] = []
    for service in services:
        for slo in service.slos:
            document = documents.get(slo.source_file) or _document(slo.source_file)
            documents[slo.source_file] = document
            for check in plan(slo, _index(document, slo.name)):
                if isinstance(check, BucketCheck):
                    result = source.instant(f"count by (le) "
                                            f"(last_over_time({check.bucket}[{LOOKBACK}]))")
                    problem = bucket_problem(check, (r["metric"].get("le", "nan")
                                                     for r in result))
                    if problem is not None:
                        errors.append(document.issue(check.path, problem))
                    continue
                if source.instant(f"count(last_over_time({check.selector}[{LOOKBACK}]))"):
                    continue
                message = f"{check.selector} matches no series in Prometheus over the last " \
                          f"{LOOKBACK}"
                if check.optional:
                    warnings.append(document.issue(check.path, f"warning: {message}; fine if "
                                                   "nothing has failed yet, else check it"))
                else:
                    errors.append(document.issue(check.path, f"{message}; check the metric "
                                                 "name and the label matchers"))
    return LintReport(sorted(errors), sorted(warnings))


def _document(file: str) -> SpecDocument:
    document, _ = parse_yaml(Path(file).read_text(encoding="utf-8"), file)
    return document


def _index(document: SpecDocument, name: str) -> int:
    """The SLO's index in its file's `slos:` (the file validated, so it is there)."""
    data = document.data if isinstance(document.data, dict) else {}
    slos = data.get("slos") or []
    return next((i for i, s in enumerate(slos) if isinstance(s, dict) and s.get("name") == name),
                0)
