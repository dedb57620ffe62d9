"""Which state store the engine config asks for: the one way the service and the CLI open it."""

from __future__ import annotations

from slo_engine.config import StateConfig
from slo_engine.storage.interface import StateStore


def open_store(state: StateConfig) -> StateStore:
    """PostgreSQL when `state.url` is set (the `postgres` extra), else the SQLite file at
    `state.path`; StateError when it cannot be opened (or migrated)."""
    if state.url is not None:
        from slo_engine.storage.postgres import PostgresStore

        return PostgresStore(state.url.get_secret_value())
    from slo_engine.storage.sqlite import StateDB

    return StateDB(state.path)
