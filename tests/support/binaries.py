"""Locating Debian's prometheus, promtool, prometheus-alertmanager and victoria-metrics
(with vmalert) for the tests.

Tests that need them fail with an install hint when they are missing; only an explicit
SLO_ENGINE_SKIP_PROMETHEUS=1 (SLO_ENGINE_SKIP_VICTORIA=1 for VictoriaMetrics) turns that
failure into a skip, for local runs.
"""

from __future__ import annotations

import os
import shutil

import pytest

INSTALL_HINT = (
    "install Debian's packages: apt-get update && apt-get install -y --no-install-recommends "
    "prometheus prometheus-alertmanager (or `make test`, which does it); set "
    "SLO_ENGINE_SKIP_PROMETHEUS=1 to skip these tests locally"
)


def require(binary: str) -> str:
    return found_or_fail(shutil.which(binary), binary, "SLO_ENGINE_SKIP_PROMETHEUS", INSTALL_HINT)


def found_or_fail(path: str | None, what: str, skip_variable: str, hint: str) -> str:
    """`path` when it was found; else fail with the install hint, or skip when the test run
    opted out with `skip_variable=1`."""
    if path:
        return path
    if os.environ.get(skip_variable) == "1":
        pytest.skip(f"{what} not installed and {skip_variable}=1")
    pytest.fail(f"{what} not found: {hint}", pytrace=False)


VICTORIA_HINT = (
    "install Debian's package: apt-get update && apt-get install -y --no-install-recommends "
    "victoria-metrics (or `make test`, which does it); set SLO_ENGINE_SKIP_VICTORIA=1 to skip "
    "these tests locally"
)


def require_victoria(binary: str) -> str:
    """victoria-metrics or vmalert, both from Debian's `victoria-metrics` package."""
    return found_or_fail(shutil.which(binary), binary, "SLO_ENGINE_SKIP_VICTORIA", VICTORIA_HINT)
