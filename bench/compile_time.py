"""Compile time of 1,000 SLOs, as a user runs it: `slo-engine compile DIR --out OUT` in a
fresh process (interpreter start-up and imports included), best of a few runs (one run
when it is far over the target, to keep the bench short)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

FILES = 100
SLOS_PER_FILE = 10
RUNS = 3
TARGET_SECONDS = 3.0
ENOUGH_SECONDS = 20.0  # a run this slow is not repeated: it answers the question already


@dataclass(frozen=True)
class CompileResult:
    slos: int
    files: int
    kinds: tuple[str, ...]
    runs: tuple[float, ...]
    rules: int
    output_bytes: int

    @property
    def best(self) -> float:
        return min(self.runs)


def _slo(service: str, index: int) -> dict[str, Any]:
    """One SLO of five shapes in rotation, so every generator path is exercised."""
    name = f"slo-{index:02d}"
    objective = (99.0, 99.5, 99.9, 99.95)[index % 4]
    period = ("30d", "28d", "30d", "7d")[index % 4]
    kind = index % 5
    sli: dict[str, Any]
    alerting: dict[str, Any] = {}
    if kind == 0:
        sli = {"ratio": {"bad": f'http_requests_total{{service="{service}", code=~"5.."}}',
                         "total": f'http_requests_total{{service="{service}"}}'}}
    elif kind == 1:
        sli = {"ratio": {"good": f'rpc_calls_total{{service="{service}", outcome="ok"}}',
                         "total": f'rpc_calls_total{{service="{service}"}}',
                         "group_by": ["region"]}}
        alerting = {"min_events": 100}
    elif kind == 2:
        sli = {"latency": {"metric": "http_request_duration_seconds",
                           "selector": f'{{service="{service}", code!~"4.."}}',
                           "threshold": ("500ms", "1s", "250ms")[index % 3]}}
    elif kind == 3:
        sli = {"query": {
            "bad": f'sum(rate(jobs_failed_total{{service="{service}"}}[{{{{window}}}}]))',
            "total": f'sum(rate(jobs_total{{service="{service}"}}[{{{{window}}}}]))'}}
    else:
        sli = {"ratio": {"bad": f'queue_messages_total{{service="{service}", result="dead"}}',
                         "total": f'queue_messages_total{{service="{service}"}}'}}
        alerting = {"ticket": False}
    slo: dict[str, Any] = {"name": name, "description": f"Synthetic SLO {index} of {service}",
                           "objective": objective, "period": period, "sli": sli}
    if alerting:
        slo["alerting"] = alerting
    return slo


def write_specs(directory: Path, files: int = FILES, per_file: int = SLOS_PER_FILE) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for number in range(files):
        service = f"svc-{number:03d}"
        spec = {
            "apiVersion": "slo-engine/v1",
            "service": service,
            "owner": f"team-{number % 7}",
            "runbook_url": f"https://runbooks.example.com/{service}",
            "labels": {"tier": str(1 + number % 3)},
            "slos": [_slo(service, i) for i in range(per_file)],
        }
        (directory / f"{service}.yaml").write_text(yaml.safe_dump(spec, sort_keys=False),
                                                   encoding="utf-8")


def cli() -> list[str]:
    """The installed console script next to this interpreter, else `python -m slo_engine`."""
    script = Path(sys.executable).with_name("slo-engine")
    return [str(script)] if script.exists() else [sys.executable, "-m", "slo_engine"]


def run(workdir: Path, runs: int = RUNS) -> CompileResult:
    specs = workdir / "specs"
    write_specs(specs)
    timings: list[float] = []
    out = workdir / "out"
    for _ in range(runs):
        shutil.rmtree(out, ignore_errors=True)  # every run writes every file
        began = time.perf_counter()
        result = subprocess.run([*cli(), "compile", str(specs), "--out", str(out)],
                                capture_output=True, text=True, check=False)
        timings.append(time.perf_counter() - began)
        if result.returncode != 0:
            raise RuntimeError(f"slo-engine compile failed ({result.returncode}):\n"
                               f"{result.stdout[-2000:]}{result.stderr[-3000:]}")
        if timings[-1] > ENOUGH_SECONDS:
            break
    rules = 0
    size = 0
    for path in out.rglob("*.yml"):
        text = path.read_text(encoding="utf-8")
        size += len(text.encode())
        if path.parent == out:
            rules += sum(1 for line in text.splitlines()
                         if line.startswith(("  - record:", "  - alert:")))
    return CompileResult(FILES * SLOS_PER_FILE, FILES,
                         ("ratio with bad", "ratio with good and group_by", "latency",
                          "query", "ratio with page tiers only"),
                         tuple(timings), rules, size)
