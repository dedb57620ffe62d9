"""The optional parts of an install: which extra brings which library.

`pip install slo-engine` validates, compiles, explains, reports and backtests. The service,
charts and the canary's statistics need libraries a CI job compiling rules should not have to
install; a command that reaches one without its extra gets one line naming the extra, not an
import traceback.
"""

from __future__ import annotations

from importlib import import_module

from slo_engine.errors import MissingExtra

EXTRA_OF_LIBRARY = {
    "apscheduler": "service",
    "fastapi": "service",
    "jinja2": "service",
    "prometheus_client": "service",
    "psycopg": "postgres",
    "psycopg_pool": "postgres",
    "slack_sdk": "service",
    "starlette": "service",
    "uvicorn": "service",
    "matplotlib": "charts",
    "scipy": "canary",
    "grafana_foundation_sdk": "dashboards",
}

WHAT_EXTRA_BRINGS = {
    "service": "the service, Slack, the HTTP API and the web view",
    "charts": "charts",
    "canary": "the canary's statistics",
    "dashboards": "Grafana dashboards",
    "postgres": "the PostgreSQL state store, state.url",
}


def missing_extra(error: ModuleNotFoundError, command: str) -> MissingExtra | None:
    """The user-facing error for an import that an extra would satisfy; None for any other
    missing module (a broken install, which deserves its traceback)."""
    library = (error.name or "").partition(".")[0]
    extra = EXTRA_OF_LIBRARY.get(library)
    if extra is None:
        return None
    return MissingExtra(
        f"'slo-engine {command}' needs the '{extra}' extra ({WHAT_EXTRA_BRINGS[extra]}; "
        f"{library} is not installed): pip install 'slo-engine[{extra}]'")


def ensure_installed(library: str) -> None:
    """Import `library` now, so a command that will need it fails before it prints anything
    (the CLI turns the ModuleNotFoundError into `missing_extra`'s one line)."""
    import_module(library)
