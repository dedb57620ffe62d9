from __future__ import annotations

import pytest

from tests.support.binaries import require, require_victoria


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-golden", action="store_true",
                     help="rewrite golden files from the current output instead of comparing")


@pytest.fixture(scope="session")
def promtool() -> str:
    return require("promtool")


@pytest.fixture(scope="session")
def prometheus_binary() -> str:
    return require("prometheus")


@pytest.fixture(scope="session")
def victoria_metrics_binary() -> str:
    return require_victoria("victoria-metrics")


@pytest.fixture(scope="session")
def vmalert_binary() -> str:
    return require_victoria("vmalert")


@pytest.fixture(scope="session")
def update_golden(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-golden"))
