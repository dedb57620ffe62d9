"""Synthetic event counts for the example SLOs: the demo's data, with no server needed.

Deterministic (seeded): diurnal traffic, a quiet hour, a fast-burning outage, a slow burn.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from slo_engine.ledger import group_key, normalise
from slo_engine.model import Service

STEP = timedelta(minutes=5)
GROUP_VALUES = ("eu", "us")


def demo_events(services: list[Service], end: datetime, days: int = 30,
                seed: int = 7) -> pd.DataFrame:
    """A ledger of `days` of 5m buckets ending at `end` for every SLO in `services`."""
    rng = np.random.default_rng(seed)
    buckets = int(timedelta(days=days) / STEP)
    times = pd.date_range(end=pd.Timestamp(end).floor("5min"), periods=buckets, freq="5min")
    hours = (times.hour + times.minute / 60).to_numpy()
    diurnal = 0.55 + 0.45 * np.sin((hours - 9) / 24 * 2 * np.pi)
    frames: list[pd.DataFrame] = []
    for index, slo in enumerate(s for service in services for s in service.slos):
        groups = ([{label: value for label in slo.group_by} for value in GROUP_VALUES]
                  if slo.group_by else [{}])
        for number, labels in enumerate(groups):
            base = 2000.0 * (1 + index % 3)
            total = rng.poisson(base * diurnal).astype(float)
            ratio = np.full(buckets, 0.3 * slo.error_budget)
            if index % 2 == 0 and number == len(groups) - 1:  # a fast burn two days ago
                start = buckets - 2 * 288
                ratio[start:start + 8] = min(1.0, 40 * slo.error_budget)
            if index % 2 == 1:  # a slow burn over the last day and a half
                ratio[-432:] = 2.5 * slo.error_budget
            quiet = buckets - 5 * 288 + 36  # an hour with no traffic at all, five days ago
            total[quiet:quiet + 12] = 0
            bad = rng.binomial(total.astype(np.int64), np.clip(ratio, 0, 1)).astype(float)
            frames.append(pd.DataFrame({"timestamp": times, "service": slo.service,
                                        "slo": slo.name, "group": group_key(labels),
                                        "total": total, "bad": bad}))
    return normalise(pd.concat(frames, ignore_index=True), source="demo")


def write_demo_events(services: list[Service], path: Path, end: datetime, days: int = 30) -> int:
    frame = demo_events(services, end, days)
    if path.suffix in (".parquet", ".pq"):
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False, date_format="%Y-%m-%dT%H:%M:%SZ")
    return len(frame)
