"""Use cases shared by the CLI and (later) the HTTP service: each reads like the pipeline."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from slo_engine.compile import compile_service
from slo_engine.loader import load_services
from slo_engine.model import Service
from slo_engine.rule_tests import rule_test_files
from slo_engine.rules_out import Drift, Format, check, rule_files, write


def validate(paths: Iterable[str | Path]) -> list[Service]:
    """Load and check every SLO file; raises SpecError listing every mistake."""
    return load_services(paths)


def generated_files(services: Iterable[Service], fmt: Format = "prometheus",
                    with_tests: bool = True) -> dict[str, str]:
    """Every file `compile` owns under its output directory, by relative path."""
    services = list(services)
    rule_sets = [compile_service(s) for s in services]
    files = rule_files(rule_sets, fmt)
    if with_tests and fmt == "prometheus":
        files.update(rule_test_files(services))
    return files


def compile_rules(paths: Iterable[str | Path], out: Path, *, fmt: Format = "prometheus",
                  with_tests: bool = True, check_only: bool = False) -> Drift:
    files = generated_files(validate(paths), fmt, with_tests)
    return check(files, out) if check_only else write(files, out)
