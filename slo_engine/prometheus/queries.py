"""Queries of the recorded series for one SLO group, beyond the ledger fetch."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime

import pandas as pd

from slo_engine.changes.correlation import RATIO_STEP_SECONDS
from slo_engine.prometheus.source import PrometheusSource
from slo_engine.spec.conventions import BASE_WINDOW, SERVICE_LABEL, SLO_LABEL, error_ratio_metric
from slo_engine.spec.model import SLO
from slo_engine.spec.promql import Matcher, Selector


def error_ratio_series(source: PrometheusSource, slo: SLO,
                       group: Mapping[str, str] | Iterable[tuple[str, str]],
                       start: datetime, end: datetime,
                       step_seconds: int = RATIO_STEP_SECONDS) -> pd.Series:
    """The recorded `slo:error_ratio:rate5m` of one SLO group from Prometheus.

    Where the group labels match several series (a grouped SLO asked without its group), the
    worst group's ratio at each point is returned: the onset of the first group to burn.
    Raises SourceUnavailable or QueryError as `PrometheusSource` does.
    """
    labels = dict(group.items() if isinstance(group, Mapping) else group)
    matchers = (Matcher(SLO_LABEL, "=", slo.name), Matcher(SERVICE_LABEL, "=", slo.service),
                *(Matcher(name, "=", value) for name, value in sorted(labels.items())))
    query = Selector(error_ratio_metric(BASE_WINDOW), matchers).render()
    series = [pd.Series([float(v) for _, v in item["values"]],
                        index=pd.to_datetime([float(t) for t, _ in item["values"]], unit="s",
                                             utc=True), dtype=float)
              for item in source.query_range(query, start, end, step_seconds)]
    if not series:
        return pd.Series([], index=pd.DatetimeIndex([], tz="UTC"), dtype=float)
    if len(series) == 1:
        return series[0]
    return pd.concat(series, axis=1).max(axis=1, skipna=True).astype(float)
