"""`promtool test rules` time of the generated unit tests, per test file, for services of 1,
2, 5 and 10 SLOs. Each test file loads only its own SLO's rules, so its time must not grow
with the number of sibling SLOs; all the tests of a 10-SLO service must run in under 10 s
on 2 cores."""

from __future__ import annotations

import os
import resource
import subprocess
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from slo_engine.app import generated_files
from slo_engine.spec.loader import load_services

SIZES = (1, 2, 5, 10)
TARGET_SECONDS = 10.0  # every test file of the 10-SLO service, both cores busy
KINDS = ("ratio, bad, group_by a label selected by regex", "latency, group_by a label "
         "selected by regex", "query", "ratio, good, group_by, min_events", "ratio, pages only")


def slo_spec(index: int) -> dict[str, Any]:
    """One SLO of five shapes in rotation: every generator path, and `group_by` labels that
    the selectors constrain (the test's group value must satisfy them)."""
    name = f"slo-{index:02d}"
    kind = index % len(KINDS)
    alerting: dict[str, Any] = {}
    sli: dict[str, Any]
    if kind == 0:
        sli = {"ratio": {"bad": 'http_requests_total{job="web", handler=~"/api/.*", code=~"5.."}',
                         "total": 'http_requests_total{job="web", handler=~"/api/.*"}',
                         "group_by": ["handler"]}}
    elif kind == 1:
        sli = {"latency": {"metric": "http_request_duration_seconds",
                           "selector": '{job="web", handler=~"/api.*", code!~"4.."}',
                           "threshold": "500ms", "group_by": ["handler"]}}
    elif kind == 2:
        sli = {"query": {"bad": 'sum(rate(jobs_failed_total{job="worker"}[{{window}}]))',
                         "total": 'sum(rate(jobs_total{job="worker"}[{{window}}]))'}}
    elif kind == 3:
        sli = {"ratio": {"good": 'rpc_calls_total{outcome="ok", region!="test"}',
                         "total": 'rpc_calls_total{region!="test"}', "group_by": ["region"]}}
        alerting = {"min_events": 100}
    else:
        sli = {"ratio": {"bad": 'queue_messages_total{result="dead"}',
                         "total": "queue_messages_total"}}
        alerting = {"ticket": False}
    spec: dict[str, Any] = {"name": name, "description": f"Synthetic SLO {index}",
                            "objective": (99.9, 99.5, 99.0, 99.95)[index % 4],
                            "period": ("30d", "28d", "30d", "7d")[index % 4], "sli": sli}
    if alerting:
        spec["alerting"] = alerting
    return spec


def write_service(directory: Path, slos: int) -> Path:
    """A service file of `slos` SLOs, named after its size."""
    directory.mkdir(parents=True, exist_ok=True)
    name = f"svc-{slos:02d}-slos"
    spec = {"apiVersion": "slo-engine/v1", "service": name, "owner": "bench",
            "runbook_url": f"https://runbooks.example.com/{name}",
            "slos": [slo_spec(i) for i in range(slos)]}
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    return path


def compile_tests(spec: Path, out: Path) -> list[Path]:
    """Compile as `slo-engine compile` does; return the test files written."""
    for name, text in generated_files(load_services([spec])).items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text(text, encoding="utf-8")
    return sorted(out.glob("tests/*.test.yml"))


@dataclass(frozen=True)
class FileTiming:
    wall: float
    cpu: float  # user + system of promtool


@dataclass(frozen=True)
class ServiceTiming:
    slos: int
    files: tuple[FileTiming, ...]  # one test file at a time
    together: float  # every test file of the service, both cores busy (wall)
    load: float  # 1-minute load average right after `together`: other work on the cores


@dataclass(frozen=True)
class PromtoolResult:
    services: tuple[ServiceTiming, ...]
    kinds: tuple[str, ...] = KINDS


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _promtool(promtool: str, path: Path) -> None:
    result = subprocess.run([promtool, "test", "rules", path.name], cwd=path.parent,
                            capture_output=True, text=True, timeout=600, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"promtool test rules {path} failed:\n{result.stdout[-2000:]}"
                           f"{result.stderr[-3000:]}")


def time_file(promtool: str, path: Path) -> FileTiming:
    cpu, began = _children_cpu(), time.perf_counter()
    _promtool(promtool, path)
    return FileTiming(time.perf_counter() - began, _children_cpu() - cpu)


def time_together(promtool: str, paths: Sequence[Path]) -> float:
    began = time.perf_counter()
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        list(pool.map(lambda p: _promtool(promtool, p), paths))
    return time.perf_counter() - began


def run(workdir: Path, promtool: str, sizes: Sequence[int] = SIZES) -> PromtoolResult:
    services = []
    for slos in sizes:
        spec = write_service(workdir / "specs", slos)
        tests = compile_tests(spec, workdir / f"out-{slos}")
        files = tuple(time_file(promtool, path) for path in tests)
        together = time_together(promtool, tests)
        services.append(ServiceTiming(slos, files, together, os.getloadavg()[0]))
    return PromtoolResult(tuple(services))
