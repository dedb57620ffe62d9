"""What only the PostgreSQL store has: a server that goes away and comes back, versioned
migrations (applied once however many replicas start at once, refused when the database is
newer than the code), writers of several replicas serialised, and `state.url` in the engine
config. The contract both stores share is in test_storage.py."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from slo_engine.cli import main
from slo_engine.config import load_config
from slo_engine.errors import SpecError, StateError
from slo_engine.service.engine import Engine
from slo_engine.storage.postgres import PostgresStore, migrations
from tests.support.paths import ROOT
from tests.support.postgres import PostgresServer, new_database, running_postgres
from tests.test_extras import core

T = datetime(2026, 5, 12, 14, 0, tzinfo=UTC)
PASSWORD = "pg-s3cret"  # trust authentication ignores it; no output may show it
BOUND = 15.0  # seconds: a dead database fails fast (pool timeout 5 s), this is no hang


@pytest.fixture(scope="module")
def server() -> Iterator[PostgresServer]:
    with running_postgres() as started:
        yield started


@pytest.fixture
def url(server: PostgresServer) -> str:
    return new_database(server)


def _config(tmp_path: Path, state: dict[str, str]) -> Path:
    config = tmp_path / "slo-engine.yaml"
    config.write_text(yaml.safe_dump({
        "apiVersion": "slo-engine/v1", "kind": "EngineConfig",
        "slo_files": [str(ROOT / "slo_definitions" / "api.yaml")],
        "prometheus": {"url": "http://127.0.0.1:1"}, "slack": {"dry_run": True},
        "http": {"listen": "127.0.0.1:0"}, "state": state}), encoding="utf-8")
    return config


def _with_password(url: str) -> str:
    """The URL with `${SLO_TEST_PG_PASSWORD}` as its password, as a config would write it."""
    return url.replace("postgres@", "postgres:${SLO_TEST_PG_PASSWORD}@", 1)


def test_a_stopped_database_is_a_quick_state_error_and_the_same_store_works_when_it_is_back(
        server: PostgresServer, url: str) -> None:
    with PostgresStore(url) as store:
        store.add_changes([])
        with store.transaction() as unit:
            item = unit.enqueue("post", "#a", "{}", T)
        server.stop()
        try:
            for operation in (store.probe_write, store.changes,
                              lambda: store.transaction().__enter__()):
                started = time.monotonic()
                with pytest.raises(StateError, match=r"state database postgresql://\*\*\*@"):
                    operation()
                assert time.monotonic() - started < BOUND
        finally:
            server.start()
        store.probe_write()  # the pool reconnects: no new store needed
        with store.read() as reader:
            found = reader.outbox_item(item)
            assert found is not None and found.state == "queued"


def test_the_engine_reports_a_stopped_database_and_recovers(
        server: PostgresServer, url: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLO_TEST_PG_PASSWORD", PASSWORD)
    config = load_config(_config(tmp_path, {"url": _with_password(url)}))
    engine = Engine.from_config(config)
    try:
        assert isinstance(engine.state, PostgresStore)
        assert engine.readiness()["state"] == "ok"
        server.stop()
        try:
            failing = engine.readiness()["state"]
        finally:
            server.start()
        assert failing.startswith("failing (cannot write the state database postgresql://***@")
        assert PASSWORD not in failing
        assert engine.readiness()["state"] == "ok"
    finally:
        engine.state.close()


def test_state_migrate_applies_once_and_then_says_up_to_date(
        url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("SLO_TEST_PG_PASSWORD", PASSWORD)
    config = _config(tmp_path, {"url": _with_password(url)})
    shown = url.replace("postgres@", "***@", 1)
    newest = migrations()[-1].version
    assert main(["state", "migrate", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines() == [
        *(f"applied {m.name} (schema version {m.version})" for m in migrations()),
        f"{shown}: schema version {newest}"]
    assert main(["state", "migrate", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert out == f"{shown}: schema version {newest}, up to date\n"
    assert PASSWORD not in out
    with PostgresStore(url) as store:
        assert [row["version"] for row in store.query(
            "SELECT version FROM schema_migrations ORDER BY version")] == list(
                range(1, newest + 1))


def test_replicas_starting_at_once_apply_each_migration_once(url: str) -> None:
    barrier = threading.Barrier(4)

    def start() -> PostgresStore:
        barrier.wait()
        return PostgresStore(url)

    with ThreadPoolExecutor(4) as pool:
        stores = list(pool.map(lambda _: start(), range(4)))
    try:
        assert sorted(len(store.applied) for store in stores) == [0, 0, 0, len(migrations())]
    finally:
        for store in stores:
            store.close()


def test_a_database_newer_than_the_code_is_refused(
        url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with PostgresStore(url) as store, store.transaction() as unit:
        unit.connection.execute("INSERT INTO schema_migrations (version, name) "
                                "VALUES (99, '0099_from_the_future')")
    known = migrations()[-1].version
    with pytest.raises(StateError, match=f"has schema version 99, newer than this "
                                         f"slo-engine's {known}: upgrade slo-engine"):
        PostgresStore(url)
    assert main(["state", "migrate", "--config", str(_config(tmp_path, {"url": url}))]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "upgrade slo-engine" in err and "Traceback" not in err


def test_writers_of_several_replicas_never_claim_one_call_twice(url: str) -> None:
    """claim_next reads, then marks: without the write lock, two replicas in READ COMMITTED
    would both read the same oldest call and both send it."""
    calls = 60
    with PostgresStore(url) as seed, seed.transaction() as unit:
        for number in range(calls):
            unit.enqueue("post", "#a", str(number), T)
    stores = [PostgresStore(url) for _ in range(3)]
    claimed: list[int] = []

    def drain(store: PostgresStore) -> None:
        while True:
            with store.transaction() as unit:
                item = unit.claim_next(T)
            if item is None:
                return
            claimed.append(item.id)

    try:
        with ThreadPoolExecutor(3) as pool:
            list(pool.map(drain, stores))
        assert sorted(claimed) == list(range(1, calls + 1))
        with stores[0].read() as reader:
            assert [getattr(reader.outbox_item(i), "attempts", None)
                    for i in range(1, calls + 1)] == [1] * calls
    finally:
        for store in stores:
            store.close()


def test_state_url_and_state_path_are_exclusive_and_the_url_must_be_postgresql(
        tmp_path: Path) -> None:
    both = _config(tmp_path, {"path": "state.db", "url": "postgresql://db/slo"})
    with pytest.raises(SpecError, match=re.escape("state.path (SQLite) and state.url "
                                                  "(PostgreSQL) are exclusive: keep one")):
        load_config(both)
    wrong = _config(tmp_path, {"url": "mysql://u:hidden@db/slo"})
    with pytest.raises(SpecError, match="not a PostgreSQL URL") as refused:
        load_config(wrong)
    assert "hidden" not in str(refused.value)
    config = load_config(_config(tmp_path, {"url": "postgresql://slo:hidden@db:5432/slo"}))
    assert config.state.location == "postgresql://***@db:5432/slo"
    assert "hidden" not in repr(config)


def test_state_check_says_a_postgresql_config_is_not_a_file(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _config(tmp_path, {"url": "postgresql://slo:hidden@db:5432/slo"})
    assert main(["state", "check", "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "keeps the state in PostgreSQL" in err
    assert "state migrate" in err and "hidden" not in err


def test_a_postgresql_config_without_the_extra_names_it(tmp_path: Path) -> None:
    config = _config(tmp_path, {"url": "postgresql://slo@127.0.0.1:9/slo"})
    done = core("state", "migrate", "--config", config)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("error: 'slo-engine state' needs the 'postgres' extra")
    assert line.endswith("pip install 'slo-engine[postgres]'")


def test_config_check_connect_reports_the_schema_without_migrating(
        url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = str(_config(tmp_path, {"url": url}))
    main(["config", "check", "--config", config, "--connect"])
    assert "PostgreSQL state answers, schema version 0 (the first start" in \
        capsys.readouterr().out
    PostgresStore(url).close()
    main(["config", "check", "--config", config, "--connect"])
    out = capsys.readouterr().out
    assert f"PostgreSQL state answers, schema version {migrations()[-1].version}\n" in out


def test_a_command_facing_a_stopped_database_prints_one_line(
        server: PostgresServer, url: str, tmp_path: Path) -> None:
    config = _config(tmp_path, {"url": url})
    PostgresStore(url).close()
    server.stop()
    try:
        done = subprocess.run([sys.executable, "-m", "slo_engine", "changes", "list",
                               "--config", str(config)], capture_output=True, text=True,
                              timeout=60, check=False)
    finally:
        server.start()
    assert done.returncode == 1 and done.stdout == ""
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("error: cannot open the state database postgresql://***@")
    assert line.endswith("check that PostgreSQL is running and accepts state.url's user")


def test_reads_never_wait_for_a_writer_and_the_probe_waits_two_seconds_at_most(
        url: str) -> None:
    with PostgresStore(url) as writer, PostgresStore(url) as other:
        with writer.transaction() as unit:  # holds the write lock until it commits
            unit.enqueue("post", "#a", "{}", T)
            with other.read() as reader:
                assert reader.outbox_depth() == 0  # the last commit, at once
            with pytest.raises(StateError, match="lock timeout"):
                other.probe_write()
        other.probe_write()
        with other.read() as reader:
            assert reader.outbox_depth() == 1
