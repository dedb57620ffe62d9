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
    path = shutil.which(binary)
    if path:
        return path
    if os.environ.get("SLO_ENGINE_SKIP_PROMETHEUS") == "1":
        pytest.skip(f"{binary} not installed and SLO_ENGINE_SKIP_PROMETHEUS=1")
    pytest.fail(f"{binary} not found: {INSTALL_HINT}", pytrace=False)


VICTORIA_HINT = (
    "install Debian's package: apt-get update && apt-get install -y --no-install-recommends "
    "victoria-metrics (or `.ci/run`, which does it); set SLO_ENGINE_SKIP_VICTORIA=1 to skip "
    "these tests locally"
)


def require_victoria(binary: str) -> str:
    """victoria-metrics or vmalert, both from Debian's `victoria-metrics` package."""
    path = shutil.which(binary)
    if path:
        return path
    if os.environ.get("SLO_ENGINE_SKIP_VICTORIA") == "1":
        pytest.skip(f"{binary} not installed and SLO_ENGINE_SKIP_VICTORIA=1")
    pytest.fail(f"{binary} not found: {VICTORIA_HINT}", pytrace=False)
