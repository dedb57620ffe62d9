"""Server time of the web view's SLO list at 1,000 SLOs: the page as `slo-engine run` and
`slo-engine ui` serve it (a snapshot read once, every request filtering, sorting and rendering
it), against a naive view that recomputes each SLO's budget from the ledger on every request.

Requests go through the view's real ASGI app in process (httpx's transport), so the figure is
the server's time without a network; the naive loop is timed over as many SLOs as fit in
`loop_seconds` and extrapolated to 1,000.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from bench.compile_time import write_specs

TARGET_SECONDS = 1.0
DAYS = 31
STEP = "1h"
REQUESTS = 7
QUERIES = ("/", "/?sort=budget&order=desc", "/?owner=team-3&sort=burn_1h&order=asc",
           "/?status=burning&sort=service")


@dataclass(frozen=True)
class UIResult:
    slos: int
    ledger_rows: int
    snapshot_seconds: float  # reading the snapshot: the budget report of every SLO
    first_seconds: float  # the first list request (its rows derived from the snapshot)
    medians: dict[str, float]  # warm list requests, by query
    page_bytes: int
    naive_per_request: float  # extrapolated
    naive_measured: int  # SLOs the naive loop covered

    @property
    def worst_median(self) -> float:
        return max(self.medians.values())


def ledger(slos: list[tuple[str, str]], end: datetime, seed: int = 11) -> pd.DataFrame:
    from slo_engine.budget.ledger import normalise

    rng = np.random.default_rng(seed)
    times = pd.date_range(end - timedelta(days=DAYS), end, freq=STEP, tz="UTC")
    frames = []
    for service, slo in slos:
        total = rng.poisson(3_600, len(times)).astype(float)
        bad = np.minimum(total, rng.poisson(rng.uniform(0.5, 12), len(times)))
        frames.append(pd.DataFrame({"timestamp": times, "service": service, "slo": slo,
                                    "group": "", "total": total, "bad": bad}))
    return normalise(pd.concat(frames, ignore_index=True), source="bench")


def run(workdir: Path, loop_seconds: float = 10.0) -> UIResult:
    from fastapi.testclient import TestClient

    from slo_engine import app
    from slo_engine.budget import accounting as budget
    from slo_engine.config import ChangesConfig
    from slo_engine.spec.model import Service
    from slo_engine.web.server import SnapshotCache, create_view

    specs = workdir / "specs"
    write_specs(specs)
    services = app.validate([specs])
    slos = [slo for service in services for slo in service.slos]
    at = datetime(2026, 5, 31, 12, tzinfo=UTC)
    frame = ledger([(slo.service, slo.name) for slo in slos], at)

    began = time.perf_counter()
    snapshot = app.view_snapshot(services, lambda *_: (frame, []), at, lambda *_: [],
                                 ChangesConfig())
    snapshot_seconds = time.perf_counter() - began
    client = TestClient(create_view(SnapshotCache(lambda: snapshot, None)))

    began = time.perf_counter()
    first = client.get("/")
    first_seconds = time.perf_counter() - began
    if first.status_code != 200:
        raise RuntimeError(f"the list answered {first.status_code}: {first.text[:500]}")
    medians = {}
    for query in QUERIES:
        timings = []
        for _ in range(REQUESTS):
            began = time.perf_counter()
            response = client.get(query)
            timings.append(time.perf_counter() - began)
            if response.status_code != 200:
                raise RuntimeError(f"{query} answered {response.status_code}")
        medians[query] = statistics.median(timings)

    # The naive view: each SLO's budget from its own ledger rows, on every request.
    covered = 0
    began = time.perf_counter()
    for slo in slos:
        owner = Service(slo.service, slo.owner, slo.source_file, (slo,))
        budget.report([owner], budget.slo_rows(slo, frame), at)
        covered += 1
        if time.perf_counter() - began > loop_seconds:
            break
    naive = (time.perf_counter() - began) / covered * len(slos)
    return UIResult(len(slos), len(frame), snapshot_seconds, first_seconds, medians,
                    len(first.content), naive, covered)
