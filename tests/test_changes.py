"""Change events: the model and its errors, JSON-lines import, the state database's change
store (dedup, filters, one WAL file shared by two connections), and the `changes` CLI."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from slo_engine.changes.events import Change, newest_first, parse_change, read_change_lines
from slo_engine.cli import main
from slo_engine.errors import ChangeError, StateError
from slo_engine.storage.sqlite import StateDB

T = datetime(2026, 5, 12, 14, 3, tzinfo=UTC)
DEPLOY = {"time": "2026-05-12T14:03:00Z", "service": "checkout", "kind": "deploy",
          "version": "web-api:2026.05.12-8f3a91c", "previous_version": "web-api:2026.05.10-41c2d2a",
          "commit": "8f3a91c", "author": "ci", "url": "https://ci.example.com/run/812",
          "rollback_command": "deploy web-api:2026.05.10-41c2d2a",
          "description": "checkout v2 behind flag"}


def change(minutes: int, service: str = "checkout", kind: str = "deploy",
           version: str | None = None) -> Change:
    return Change(time=T + timedelta(minutes=minutes), service=service,
                  kind=kind, version=version or f"v{minutes}")


# --- the model ------------------------------------------------------------------------------


def test_the_design_example_parses_and_times_are_utc() -> None:
    parsed = parse_change(DEPLOY)
    assert parsed.time == T and parsed.time.tzinfo == UTC
    assert parsed.as_json()["time"] == "2026-05-12T14:03:00Z"
    eastern = parse_change({**DEPLOY, "time": "2026-05-12T16:03:00+02:00"})
    assert eastern.time == T and eastern.identity == parsed.identity


@pytest.mark.parametrize(("data", "message"), [
    ({**DEPLOY, "kind": "release"}, "kind: got 'release'; expected one of: deploy, config, "
                                    "feature_flag, migration, infrastructure"),
    ({**DEPLOY, "time": "2026-05-12T14:03:00"}, "time: needs a timezone"),
    ({**DEPLOY, "sevice": "x"}, "sevice: unknown field; expected one of: time, service"),
    ({k: v for k, v in DEPLOY.items() if k != "service"}, "service: Field required"),
])
def test_bad_changes_name_the_field_and_the_fix(data: dict[str, str], message: str) -> None:
    with pytest.raises(ChangeError) as error:
        parse_change(data, "hook.json")
    assert str(error.value).startswith("hook.json: ")
    assert message in str(error.value)


def test_rollback_given_derived_or_unknown() -> None:
    given = parse_change(DEPLOY)
    assert given.rollback() == "deploy web-api:2026.05.10-41c2d2a"
    derived = given.model_copy(update={"rollback_command": None})
    assert derived.rollback("argocd app rollback {service} --to {previous_version}") == \
        "argocd app rollback checkout --to web-api:2026.05.10-41c2d2a"
    assert derived.rollback("page the release manager") is None  # no {previous_version}
    # A brace the template does not mean as a placeholder must not lose the page.
    assert derived.rollback('patch {service} -p {"image": "{previous_version}"} {revision}') == \
        'patch checkout -p {"image": "web-api:2026.05.10-41c2d2a"} {revision}'
    assert change(0).rollback() is None


def test_read_change_lines_is_all_or_nothing(tmp_path: Path) -> None:
    good = tmp_path / "good.jsonl"
    good.write_text(json.dumps(DEPLOY) + "\n\n" + json.dumps({**DEPLOY, "kind": "config"})
                    + "\n", encoding="utf-8")
    changes = read_change_lines(good)
    assert [c.kind for c in changes] == ["deploy", "config"]
    assert {c.source for c in changes} == {"file"}

    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join([json.dumps(DEPLOY), "{not json", json.dumps({**DEPLOY,
                                                                            "kind": "x"})]),
                   encoding="utf-8")
    with pytest.raises(ChangeError) as error:
        read_change_lines(bad)
    lines = str(error.value).splitlines()
    assert lines[0].startswith(f"{bad}:2:2: not JSON")
    assert lines[1].startswith(f"{bad}:3: kind: got 'x'")
    with pytest.raises(ChangeError, match="cannot read the file"):
        read_change_lines(tmp_path / "missing.jsonl")


def test_newest_first() -> None:
    assert [c.version for c in newest_first([change(1), change(3), change(2)])] == \
        ["v3", "v2", "v1"]


# --- the state database ---------------------------------------------------------------------


def test_add_changes_dedups_by_service_kind_version_and_time(tmp_path: Path) -> None:
    with StateDB(tmp_path / "state.db") as state:
        first = [change(0), change(0, kind="config"), change(0, service="payments")]
        assert state.add_changes(first) == first
        retry = change(0).model_copy(update={"author": "a retried CD step"})
        assert state.add_changes([retry, change(0)]) == []
        same_instant = change(0).model_copy(update={
            "time": T.astimezone(timezone(timedelta(hours=2)))})
        assert state.add_changes([same_instant]) == []
        assert state.add_changes([change(1), change(1)]) == [change(1)]  # within one batch
        assert len(state.changes()) == 4
        # The first report is kept.
        assert state.changes(services=["checkout"], kinds=["deploy"])[-1].author is None


def test_changes_filters_and_order(tmp_path: Path) -> None:
    with StateDB(tmp_path / "state.db") as state:
        state.add_changes([change(m, service=s) for m in (0, 10, 20, 30)
                           for s in ("checkout", "payments")])
        assert [c.version for c in state.changes(services=["checkout"])] == \
            ["v30", "v20", "v10", "v0"]
        window = state.changes(services=["payments"], since=T + timedelta(minutes=10),
                               until=T + timedelta(minutes=20))
        assert [c.version for c in window] == ["v20", "v10"]  # both ends included
        assert len(state.changes(since=T + timedelta(minutes=10, microseconds=1))) == 4
        assert len(state.changes(services=[])) == 0
        assert [c.version for c in state.changes(limit=3)] == ["v30", "v30", "v20"]
        assert {c.service for c in state.changes(services=["checkout", "payments"],
                                                 kinds=["deploy"])} == {"checkout", "payments"}
        assert state.changes(kinds=["migration"]) == []


def test_two_connections_share_one_wal_file(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    with StateDB(path) as service, StateDB(path) as cli:
        assert service.query("PRAGMA journal_mode")[0][0] == "wal"
        service.add_changes([change(0)])
        assert cli.changes() == [change(0)]  # a reader sees the writer's commit at once
        assert cli.add_changes([change(0)]) == []  # dedup across connections
        cli.add_changes([change(1)])
        assert [c.version for c in service.changes()] == ["v1", "v0"]

        def write(state: StateDB, offset: int) -> None:
            for i in range(50):
                state.add_changes([change(100 + offset + 2 * i)])

        threads = [threading.Thread(target=write, args=(db, n))
                   for n, db in enumerate((service, cli))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(service.changes()) == len(cli.changes()) == 102
        assert (tmp_path / "state.db-wal").exists()  # both write through one WAL file


def test_a_state_path_that_cannot_be_a_database_is_a_state_error(tmp_path: Path) -> None:
    (tmp_path / "dir.db").mkdir()
    with pytest.raises(StateError, match=r"cannot open the state database .*dir\.db"):
        StateDB(tmp_path / "dir.db")



def test_a_failed_commit_is_rolled_back_and_the_next_transaction_works(tmp_path: Path) -> None:
    # A deferred foreign key fails at COMMIT, which leaves SQLite's transaction open.
    with StateDB(tmp_path / "state.db") as state:
        state.ensure_schema("CREATE TABLE parent (id INTEGER PRIMARY KEY); CREATE TABLE child "
                            "(p INTEGER REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED);")
        state.query("PRAGMA foreign_keys = ON")
        for statement, error in (("INSERT INTO child VALUES (42)", "FOREIGN KEY constraint"),
                                 ("INSERT INTO missing VALUES (1)", "no such table: missing")):
            with pytest.raises(StateError, match=error), state.transaction() as unit:
                unit.connection.execute(statement)
        assert state.add_changes([change(0)]) == [change(0)]
        assert state.query("SELECT COUNT(*) FROM child")[0][0] == 0
        state.probe_write()


# --- the CLI --------------------------------------------------------------------------------


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_add_twice_records_one_change(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = str(tmp_path / "state.db")
    add = ["changes", "add", "--service", "checkout", "--kind", "deploy", "--version", "v2",
           "--previous-version", "v1", "--time", "2026-05-12T14:03:00Z", "--author", "ci",
           "--state", db]
    code, out, _ = run(capsys, *add)
    assert code == 0 and out.startswith("recorded: deploy of checkout v2 (was v1) at "
                                        "2026-05-12T14:03:00Z")
    code, out, _ = run(capsys, *add)
    assert code == 0 and out.startswith("already known: deploy of checkout v2")
    with StateDB(db) as state:
        [stored] = state.changes()
    assert stored.source == "cli" and stored.rollback() == "deploy v1" and stored.author == "ci"


def test_add_without_time_recognises_a_retry(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    db = str(tmp_path / "state.db")
    add = ["changes", "add", "--service", "checkout", "--kind", "deploy", "--state", db]
    assert run(capsys, *add, "--version", "v2")[1].startswith("recorded:")
    code, out, _ = run(capsys, *add, "--version", "v2")
    assert code == 0 and out.startswith("already known:")
    assert run(capsys, *add, "--version", "v3")[1].startswith("recorded:")
    # Back to v2 is a new deploy (a rollback), and a config change is not a deploy retry.
    assert run(capsys, *add, "--version", "v2")[1].startswith("recorded:")
    assert run(capsys, "changes", "add", "--service", "checkout", "--kind", "config",
               "--version", "v2", "--state", db)[1].startswith("recorded:")
    with StateDB(db) as state:
        assert [c.version for c in state.changes(kinds=["deploy"])] == ["v2", "v3", "v2"]


@pytest.mark.parametrize(("flags", "message"), [
    (["--kind", "release"], "error: changes add: --kind: got 'release'; expected one of: deploy"),
    (["--kind", "deploy", "--time", "2026-05-12 14:03"],
     "error: changes add: --time: needs a timezone, e.g. 2026-05-12T14:03:00Z"),
    (["--kind", "deploy", "--time", "yesterday"], "error: changes add: --time: "),
])
def test_add_rejects_bad_input_without_a_traceback(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str],
        message: str) -> None:
    db = tmp_path / "state.db"
    code, out, err = run(capsys, "changes", "add", "--service", "checkout", *flags,
                         "--state", str(db))
    assert code == 1 and out == ""
    assert err.startswith(message) and "Traceback" not in err
    with StateDB(db) as state:
        assert state.changes() == []


def test_import_is_all_or_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = str(tmp_path / "state.db")
    bad = tmp_path / "deploys.jsonl"
    bad.write_text("\n".join([json.dumps(DEPLOY), json.dumps({**DEPLOY, "version": "v3"}),
                              json.dumps({**DEPLOY, "kind": "rollout"})]) + "\n",
                   encoding="utf-8")
    code, _, err = run(capsys, "changes", "import", str(bad), "--state", db)
    assert code == 1 and f"{bad}:3: kind: got 'rollout'" in err and "Traceback" not in err
    with StateDB(db) as state:
        assert state.changes() == []  # the two good lines were not imported either

    good = tmp_path / "good.jsonl"
    good.write_text("\n".join(bad.read_text(encoding="utf-8").splitlines()[:2]) + "\n",
                    encoding="utf-8")
    code, out, _ = run(capsys, "changes", "import", str(good), "--state", db)
    assert (code, out) == (0, f"{good}: 2 new changes, 0 already known\n")
    code, out, _ = run(capsys, "changes", "import", str(good), "--state", db)
    assert (code, out) == (0, f"{good}: 0 new changes, 2 already known\n")


def test_list_json_table_and_a_jsonl_round_trip(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    db = str(tmp_path / "state.db")
    now = datetime.now(UTC).replace(microsecond=0)
    with StateDB(db) as state:
        state.add_changes([
            Change(time=now - timedelta(hours=1), service="checkout", kind="deploy",
                   version="v2", previous_version="v1", author="ci"),
            Change(time=now - timedelta(hours=3), service="payments", kind="feature_flag",
                   description="new 3DS flow"),
            Change(time=now - timedelta(days=3), service="checkout", kind="config"),
        ])
    code, out, _ = run(capsys, "changes", "list", "--state", db, "--format", "json")
    rows = json.loads(out)
    assert code == 0 and [(r["service"], r["kind"]) for r in rows] == [
        ("checkout", "deploy"), ("payments", "feature_flag")]  # the last 24h, newest first
    assert rows[0]["previous_version"] == "v1" and "commit" not in rows[0]

    _, out, _ = run(capsys, "changes", "list", "--state", db, "--service", "checkout",
                    "--since", "7d", "--format", "json")
    assert [r["kind"] for r in json.loads(out)] == ["deploy", "config"]

    _, out, _ = run(capsys, "changes", "list", "--state", db, "--since", "7d")
    assert "Changes, newest first" in out and "new 3DS flow" in out and "feature_flag" in out

    _, out, _ = run(capsys, "changes", "list", "--state", db, "--since", "7d", "--format",
                    "jsonl")
    export = tmp_path / "export.jsonl"
    export.write_text(out, encoding="utf-8")
    copy = str(tmp_path / "copy.db")
    assert run(capsys, "changes", "import", str(export), "--state", copy)[0] == 0
    with StateDB(db) as original, StateDB(copy) as copied:
        assert copied.changes() == original.changes()

    empty = str(tmp_path / "empty.db")
    _, out, _ = run(capsys, "changes", "list", "--state", empty)
    assert out.startswith("no changes since ")


def test_the_engine_config_names_the_state_database(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "slo-engine.yaml"
    config.write_text("apiVersion: slo-engine/v1\nkind: EngineConfig\nprometheus:\n"
                      "  url: http://127.0.0.1:9\nstate:\n  path: data/state.db\n",
                      encoding="utf-8")
    assert run(capsys, "changes", "add", "--service", "checkout", "--kind", "migration",
               "--config", str(config))[0] == 0
    with StateDB(tmp_path / "data" / "state.db") as state:
        assert [c.kind for c in state.changes()] == ["migration"]
