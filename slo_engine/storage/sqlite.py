"""The state database: SQLite in WAL mode, shared by the CLI, the scheduler and the HTTP API.

Everything that must survive a restart lives here (changes, incidents, the outbox, notices),
so a restarted engine never pages twice and never loses a resolution. Modules that own a
table declare it with `ensure_schema`; this module owns the connection and the changes.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

from slo_engine.changes.events import Change
from slo_engine.errors import StateError

_CHANGES = """
CREATE TABLE IF NOT EXISTS changes (
    service TEXT NOT NULL,
    kind TEXT NOT NULL,
    version TEXT NOT NULL,
    time TEXT NOT NULL,
    time_ns INTEGER NOT NULL,
    body TEXT NOT NULL,
    recorded_at TEXT NOT NULL,
    PRIMARY KEY (service, kind, version, time)
);
CREATE INDEX IF NOT EXISTS changes_by_time ON changes (service, time_ns);
"""


class StateDB:
    """One SQLite file; safe to share between threads (one connection behind a lock, WAL so
    readers in other processes — `slo-engine changes list` — never wait for the service)."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        try:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self._connection = sqlite3.connect(self.path, timeout=10, isolation_level=None,
                                               check_same_thread=False)
            self._connection.execute("PRAGMA journal_mode=WAL")
            self._connection.execute("PRAGMA synchronous=NORMAL")
        except (sqlite3.Error, OSError) as error:
            raise StateError(f"cannot open the state database {self.path}: {error}; check the "
                             "path's directory exists and is writable (state.path in the "
                             "engine config)") from None
        self._lock = threading.RLock()
        self.ensure_schema(_CHANGES)

    def close(self) -> None:
        with self._lock:
            self._connection.close()

    def __enter__(self) -> StateDB:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()

    def ensure_schema(self, script: str) -> None:
        """Create a module's tables if missing (idempotent DDL)."""
        try:
            with self._lock:
                self._connection.executescript(script)
        except sqlite3.Error as error:
            raise StateError(f"cannot create tables in {self.path}: {error}") from None

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """All statements inside commit together or not at all (IMMEDIATE: writers queue).
        A failed COMMIT leaves SQLite's transaction open, so it is rolled back here: else
        every later transaction of this connection would fail. SQLite's own errors (disk
        full, I/O) are StateErrors, which the service reports instead of crashing a job."""
        with self._lock:
            try:
                self._connection.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as error:
                raise StateError(f"cannot write the state database {self.path}: {error}") \
                    from None
            try:
                yield self._connection
                self._connection.execute("COMMIT")
            except sqlite3.Error as error:
                self._rollback()
                raise StateError(f"cannot write the state database {self.path}: {error}") \
                    from None
            except BaseException:
                self._rollback()
                raise

    def _rollback(self) -> None:
        """Roll back unless SQLite already did (it does on some errors, e.g. a full disk)."""
        if self._connection.in_transaction:
            self._connection.execute("ROLLBACK")

    def query(self, sql: str, parameters: Iterable[object] = ()) -> list[sqlite3.Row]:
        try:
            with self._lock:
                cursor = self._connection.execute(sql, tuple(parameters))
                cursor.row_factory = sqlite3.Row
                return list(cursor.fetchall())
        except sqlite3.Error as error:
            raise StateError(f"cannot read the state database {self.path}: {error}") from None

    def writable(self) -> bool:
        """Whether a write would succeed now: what /readyz reports."""
        try:
            with self.transaction() as connection:
                connection.execute("CREATE TABLE IF NOT EXISTS probe (x INTEGER)")
            return True
        except StateError:
            return False

    def add_changes(self, changes: Iterable[Change]) -> list[Change]:
        """Record changes; those already known (same service, kind, version, time) are
        skipped. Returns the ones that were new."""
        added: list[Change] = []
        now = datetime.now(UTC).isoformat()
        with self.transaction() as connection:
            for change in changes:
                service, kind, version, time = change.identity
                cursor = connection.execute(
                    "INSERT OR IGNORE INTO changes VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (service, kind, version, time, _ns(change.time),
                     change.model_dump_json(exclude_none=True), now))
                if cursor.rowcount:
                    added.append(change)
        return added

    def changes(self, services: Iterable[str] | None = None, since: datetime | None = None,
                until: datetime | None = None, limit: int | None = None,
                kinds: Iterable[str] | None = None) -> list[Change]:
        """Changes newest first, optionally of some services (and kinds) within [since, until]."""
        sql = "SELECT body FROM changes WHERE 1=1"
        parameters: list[object] = []
        for column, values in (("service", services), ("kind", kinds)):
            if values is not None:
                names = sorted(set(values))
                sql += f" AND {column} IN ({', '.join('?' for _ in names)})"
                parameters.extend(names)
        if since is not None:
            sql += " AND time_ns >= ?"
            parameters.append(_ns(since))
        if until is not None:
            sql += " AND time_ns <= ?"
            parameters.append(_ns(until))
        sql += " ORDER BY time_ns DESC, service, kind, version"
        if limit is not None:
            sql += " LIMIT ?"
            parameters.append(limit)
        return [Change.model_validate_json(row["body"]) for row in self.query(sql, parameters)]


def _ns(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000) * 1000
