"""Deploys read from a build-info metric: a new `version` on `app_build_info{service, version}`.

Services that export their version (most do, for dashboards) report their deploys without a
CD hook. A deploy is a version that appears on a service's series: the version present when
the range starts is the baseline, not a change; a rolling deploy (old and new together for a
while) is one deploy; a rollback to an earlier version is a deploy too. Its time is the new
version's first sample, to the second where Prometheus still has it, so repeated syncs find
the same change and the state database keeps one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from slo_engine.changes.events import Change, parse_change
from slo_engine.config import BuildInfoSource
from slo_engine.spec.promql import LABEL_NAME, METRIC_NAME, Matcher, Selector

if TYPE_CHECKING:
    from slo_engine.prometheus.source import PrometheusSource

DEFAULT_STEP_SECONDS = 60
SOURCE = "build_info"

# (service, version) -> [(unix seconds, number of series with that version)], in time order
Presence = Mapping[tuple[str, str], Sequence[tuple[float, float]]]


def presence_query(spec: BuildInfoSource) -> str:
    """How many series carry each (service, version) at each step."""
    _check(spec)
    return f"count by ({spec.service_label}, {spec.version_label}) ({spec.metric})"


def deploys(presence: Presence, spec: BuildInfoSource | None = None) -> list[Change]:
    """Every version that appears on a service after its first observed step, in time order.

    Steps without any series of a service (a scrape gap longer than Prometheus' lookback) are
    skipped, so a version seen again after a gap is not a deploy. `previous_version` is the
    version it replaced: of those present at the service's previous step, the one that
    appeared last (at the baseline, the one on most series). A service first seen during the
    range has its first versions as baseline too: a new target, not a known deploy.
    """
    spec = spec or BuildInfoSource()
    by_service: dict[str, dict[float, dict[str, float]]] = {}
    for (service, version), points in presence.items():
        if not service or not version:
            continue
        steps = by_service.setdefault(service, {})
        for when, count in points:
            if count > 0 and not math.isnan(count):
                steps.setdefault(when, {})[version] = count
    found: list[Change] = []
    for service, steps in sorted(by_service.items()):
        previous: dict[str, float] | None = None
        appeared: dict[str, float] = {}
        for when in sorted(steps):
            current = steps[when]
            if previous is not None:
                before = previous
                for version in sorted(set(current) - set(previous)):
                    replaced = max(before, key=lambda v: (appeared.get(v, -math.inf),
                                                          before[v], v))
                    found.append(_change(service, version, replaced, when, spec))
                    appeared[version] = when
            previous = current
    return sorted(found, key=lambda c: (c.time, c.service, c.version or ""))


def _change(service: str, version: str, previous: str, when: float,
            spec: BuildInfoSource) -> Change:
    return parse_change({
        "time": datetime.fromtimestamp(when, UTC), "service": service, "kind": "deploy",
        "version": version, "previous_version": previous, "source": SOURCE,
        "description": f"{spec.version_label} {previous} -> {version} on {spec.metric}",
    }, f"{spec.metric}{{{spec.service_label}={service!r}, {spec.version_label}={version!r}}}")


# --- the edge -------------------------------------------------------------------------------


def build_info_changes(source: PrometheusSource, spec: BuildInfoSource, start: datetime,
                       end: datetime, step_seconds: int = DEFAULT_STEP_SECONDS) -> list[Change]:
    """The deploys `spec`'s metric shows in [start, end], oldest first.

    One range query finds them to the step; one small query per deploy then finds the new
    version's first sample to the second (`step_seconds` must not exceed Prometheus' 5m
    lookback for that: the first sample then lies within the step before it was seen).
    Raises SourceUnavailable or QueryError as `PrometheusSource` does.
    """
    presence = {
        (item["metric"].get(spec.service_label, ""), item["metric"].get(spec.version_label, "")):
        [(float(t), float(v)) for t, v in item["values"]]
        for item in source.query_range(presence_query(spec), start, end, step_seconds)}
    return [_first_sample(source, spec, change, step_seconds) for change in deploys(presence, spec)]


def _first_sample(source: PrometheusSource, spec: BuildInfoSource, change: Change,
                  step_seconds: int) -> Change:
    """The change at its version's first sample, when it lies in the step before it was seen
    (the latest sample at each second of that step is the first one, once there is one)."""
    selector = Selector(spec.metric, (Matcher(spec.service_label, "=", change.service),
                                      Matcher(spec.version_label, "=", change.version or "")))
    seen = change.time
    result = source.query_range(f"min(timestamp({selector.render()}))",
                                seen - timedelta(seconds=step_seconds), seen, step_seconds=1)
    stamps = [float(v) for item in result for _, v in item["values"]]
    first = min(stamps, default=math.nan)
    if not seen.timestamp() - step_seconds < first <= seen.timestamp():
        return change
    return change.model_copy(update={"time": datetime.fromtimestamp(first, UTC)})


def _check(spec: BuildInfoSource) -> None:
    """Names go into PromQL unquoted: refuse what is not a metric or label name."""
    from slo_engine.errors import ConfigError

    if not METRIC_NAME.fullmatch(spec.metric):
        raise ConfigError(f"build-info metric {spec.metric!r} is not a Prometheus metric name "
                          "(letters, digits, _ and :), e.g. app_build_info")
    for what, name in (("service_label", spec.service_label),
                       ("version_label", spec.version_label)):
        if not LABEL_NAME.fullmatch(name):
            raise ConfigError(f"build-info {what} {name!r} is not a Prometheus label name "
                              "(letters, digits and _), e.g. service or version")
