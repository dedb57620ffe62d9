"""A state database that existed is never silently recreated (that paged open incidents a
second time), a true first start still just works, and /readyz reports a store that takes no
writes. Against real files, the real CLI and the real HTTP service."""

from __future__ import annotations

import random
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import yaml

from slo_engine.changes.events import Change
from slo_engine.cli import main
from slo_engine.config import load_config
from slo_engine.errors import StateError
from slo_engine.service.engine import Engine
from slo_engine.service.http_api import HttpServer, create_app
from slo_engine.storage.sqlite import StateDB, marker_path
from tests.support.paths import ROOT

T = datetime(2026, 5, 12, 14, 0, tzinfo=UTC)
REFUSED = "state reset --state"


def _filled(path: Path, changes: int = 300) -> None:
    """A state database with enough rows to span many pages."""
    with StateDB(path) as state:
        state.add_changes([Change(time=T + timedelta(minutes=i), service=f"s{i}", kind="deploy",
                                  version=f"v{i}-" + "x" * 200) for i in range(changes)])


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def _assert_refused(capsys: pytest.CaptureFixture[str], path: Path, why: str) -> None:
    code, _, err = _cli(capsys, "changes", "list", "--state", str(path))
    assert code == 1
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(f"error: the state database {path} {why}")
    assert f"slo-engine state check --state {path}" in err and REFUSED in err


def _config(tmp_path: Path, state: Path) -> Path:
    config = tmp_path / "slo-engine.yaml"
    config.write_text(yaml.safe_dump({
        "apiVersion": "slo-engine/v1", "kind": "EngineConfig",
        "slo_files": [str(ROOT / "slo_definitions" / "api.yaml")],
        "prometheus": {"url": "http://127.0.0.1:1"}, "slack": {"dry_run": True},
        "http": {"listen": "127.0.0.1:0"}, "state": {"path": str(state)}}),
        encoding="utf-8")
    return config


def test_a_first_start_creates_the_database_and_its_marker(tmp_path: Path) -> None:
    path = tmp_path / "new" / "state.db"
    with StateDB(path) as state:
        identity = state.identity
    assert marker_path(path).read_text().split()[0] == identity.id
    with StateDB(path) as again:
        assert again.identity == identity


def test_a_deleted_database_is_refused_by_the_cli_and_the_engine(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "state.db"
    _filled(path, 3)
    path.unlink()
    _assert_refused(capsys, path, "is missing but")
    assert not path.exists()  # not recreated
    config = _config(tmp_path, path)
    with pytest.raises(StateError, match="is missing"):
        Engine.from_config(load_config(config, {}))
    code, _, err = _cli(capsys, "run", "--config", str(config))
    assert code == 1 and err.count("\n") == 1 and "is missing" in err
    code, out, _ = _cli(capsys, "config", "check", "--config", str(config))
    assert code == 1 and "is missing but" in out


def test_a_truncated_database_is_refused(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "state.db"
    _filled(path, 3)
    path.write_bytes(b"")
    _assert_refused(capsys, path, "is empty but")


def test_overwritten_pages_are_refused_at_open(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "state.db"
    _filled(path)
    pages = path.stat().st_size // 4096
    assert pages > 10
    chosen = random.Random(13).sample(range(2, pages), 3)
    with path.open("r+b") as file:
        for page in chosen:
            file.seek(page * 4096)
            file.write(random.Random(page).randbytes(4096))
    _assert_refused(capsys, path, "is corrupt (")
    code, out, _ = _cli(capsys, "state", "check", "--state", str(path))
    assert code == 1 and "problem: the state database" in out and "is corrupt" in out


def test_a_replaced_database_is_refused(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    path, other = tmp_path / "state.db", tmp_path / "other" / "state.db"
    _filled(path, 1)
    _filled(other, 1)
    shutil.copy(other, path)
    _assert_refused(capsys, path, "holds identity")


def test_state_reset_moves_the_old_file_aside_and_starts_fresh(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "state.db"
    _filled(path, 3)
    path.write_bytes(b"")
    code, _, err = _cli(capsys, "state", "reset", "--state", str(path))
    assert code == 1 and "--yes" in err
    code, out, _ = _cli(capsys, "state", "reset", "--state", str(path), "--yes")
    assert code == 0 and "moved" in out
    assert [p.name.split("-")[0] for p in tmp_path.glob("state.db.broken-*")] == \
        ["state.db.broken"]
    code, out, _ = _cli(capsys, "state", "check", "--state", str(path))
    assert code == 0 and "quick_check: ok" in out and "rows: changes: 0" in out
    assert _cli(capsys, "changes", "list", "--state", str(path))[0] == 0


def test_a_database_of_an_earlier_version_is_adopted(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    _filled(path, 3)
    connection = sqlite3.connect(path)  # as earlier versions left it: no identity, no marker
    connection.execute("DROP TABLE state_meta")
    connection.execute("PRAGMA user_version = 0")
    connection.commit()
    connection.close()
    marker_path(path).unlink()
    with StateDB(path) as state:
        assert len(state.changes()) == 3
        identity = state.identity
    assert marker_path(path).read_text().split()[0] == identity.id
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == 1


def test_a_lost_marker_is_written_again(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    _filled(path, 1)
    identity = marker_path(path).read_text()
    marker_path(path).unlink()
    StateDB(path).close()
    assert marker_path(path).read_text() == identity


@pytest.fixture
def service(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    state = tmp_path / "state.db"
    config = load_config(_config(tmp_path, state), {})
    engine = Engine.from_config(config)
    server = HttpServer(create_app(engine, config.http), config.http.listen)
    server.start()
    try:
        yield f"http://127.0.0.1:{server.port}", state
    finally:
        server.stop()
        engine.close()


def _state_check(url: str) -> tuple[int, str]:
    answer = httpx.get(f"{url}/readyz", timeout=30)
    return answer.status_code, answer.json()["checks"]["state"]


def test_readyz_fails_while_another_process_holds_the_write_lock(
        service: tuple[str, Path]) -> None:
    url, state = service
    assert _state_check(url)[1] == "ok"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sqlite3, sys\n"
         f"c = sqlite3.connect({str(state)!r}, isolation_level=None)\n"
         "c.execute('BEGIN IMMEDIATE'); print('locked', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        status, check = _state_check(url)
        assert status == 503
        assert check.startswith("failing (") and "locked" in check, check
    finally:
        holder.communicate("", timeout=10)
    assert _state_check(url)[1] == "ok"


def test_readyz_fails_when_the_state_file_is_immutable(service: tuple[str, Path]) -> None:
    url, state = service
    files = [p for p in state.parent.glob("state.db*") if p.is_file()]
    if shutil.which("chattr") is None or subprocess.run(
            ["chattr", "+i", str(state)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not permitted here (the lock test covers the probe)")
    try:
        subprocess.run(["chattr", "+i", *map(str, files)], check=True)
        status, check = _state_check(url)
        assert status == 503 and check.startswith("failing ("), check
    finally:
        subprocess.run(["chattr", "-i", *map(str, files)], check=True)
    assert _state_check(url)[1] == "ok"
