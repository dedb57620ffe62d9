"""Hostile and broken input (issue 13, items 8-10 and the data-file faults): every one is a
located one-line error or warning, never a traceback, a hang or a leaked password."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from slo_engine.cli import main
from slo_engine.redaction import redact

ROOT = Path(__file__).resolve().parent.parent
SLO_FILE = ROOT / "slo_definitions" / "api.yaml"
PASSWORD = "s3cr3t"
SECRET_URL = f"http://user:{PASSWORD}@127.0.0.1:9"


@pytest.mark.parametrize(("url", "shown"), [
    ("http://user:pass@host:9090/x", "http://***@host:9090/x"),
    ("https://a:b@c@host", "https://***@host"),
    ("http://host:9090/?token=abc&x=1", "http://host:9090/?token=***&x=1"),
    ("http://host/?api_key=k", "http://host/?api_key=***"),
    ("http://host:bad@", "http://***@"),  # an unparsable port must not raise
    ("http://host/?author=me", "http://host/?author=me"),
    ("no url here: user:pass@x", "no url here: user:pass@x"),
    ("Prometheus at http://u:p@h:1 failed; see https://v:w@i/", "Prometheus at http://***@h:1 "
     "failed; see https://***@i/"),
])
def test_redact_masks_credentials_in_urls_and_messages(url: str, shown: str) -> None:
    assert redact(url) == shown


# --- item 8: the password of prometheus.url in output --------------------------------------


def _engine_dir(tmp_path: Path) -> Path:
    (tmp_path / "slos").mkdir()
    (tmp_path / "slos" / "checkout.yaml").write_text(
        "apiVersion: slo-engine/v1\nservice: checkout\nowner: shop\nslos:\n"
        "  - name: success\n    objective: 99.9\n"
        "    sli: {ratio: {bad: 'x_total{code=\"500\"}', total: x_total}}\n", encoding="utf-8")
    config = tmp_path / "slo-engine.yaml"
    config.write_text(
        "apiVersion: slo-engine/v1\nkind: EngineConfig\nslo_files: [slos]\n"
        f"prometheus: {{url: \"{SECRET_URL}\", timeout: 2s}}\n"
        "slack: {dry_run: true, owners: {shop: {page: \"#shop\"}}}\n"
        "http: {listen: \"127.0.0.1:0\", tokens: [\"a-token\"]}\n"
        "state: {path: state/state.db}\n", encoding="utf-8")
    return config


def test_config_check_connect_never_prints_the_password(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _engine_dir(tmp_path)
    assert main(["config", "check", "--config", str(config), "--connect"]) == 1
    out, err = capsys.readouterr()
    assert "Prometheus at http://***@127.0.0.1:9 is unavailable" in out
    assert PASSWORD not in out + err


def test_validate_against_a_prometheus_url_never_prints_the_password(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(SLO_FILE), "--prometheus-url", SECRET_URL]) == 1
    out, err = capsys.readouterr()
    assert "http://***@127.0.0.1:9" in err
    assert PASSWORD not in out + err


def test_run_never_logs_the_password(tmp_path: Path) -> None:
    """The real service, started until its first evaluation has failed against the closed
    port: start-up line, query failures and shutdown all mask the password."""
    config = _engine_dir(tmp_path)
    process = subprocess.Popen(
        [sys.executable, "-m", "slo_engine", "run", "--config", str(config)], cwd=tmp_path,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert process.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 60
    try:
        for line in process.stdout:
            lines.append(line)
            if "Prometheus query failed" in line or time.monotonic() > deadline:
                break
    finally:
        process.send_signal(signal.SIGTERM)
        rest, _ = process.communicate(timeout=30)
    output = "".join(lines) + rest
    assert "slo-engine running" in output and "Prometheus http://***@127.0.0.1:9" in output
    assert "Prometheus query failed" in output
    assert PASSWORD not in output
    assert "Traceback" not in output


# --- items 9 and 10: SLO files that used to cost gigabytes or print tracebacks -------------

BILLION_LAUGHS = """\
apiVersion: slo-engine/v1
service: a
owner: t
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
slos: [*i]
"""


def _validate(path: Path, capsys: pytest.CaptureFixture[str]) -> list[str]:
    assert main(["validate", str(path)]) == 1
    _, err = capsys.readouterr()
    assert "Traceback" not in err
    return err.splitlines()


def test_billion_laughs_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "laughs.yaml"
    path.write_text(BILLION_LAUGHS, encoding="utf-8")
    lines = _validate(path, capsys)
    assert "too many aliases" in lines[0] and lines[0].startswith(f"{path.as_posix()}:")
    assert lines[-1] == "1 error found"


def test_an_alias_bomb_in_a_quoted_value_is_not_parsed(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A wrong-typed quoted value is re-read as YAML for the "remove the quotes" hint."""
    bomb = BILLION_LAUGHS.split("slos:")[0].split("owner: t\n")[1] + "z: [*i]"
    path = tmp_path / "quoted.yaml"
    path.write_text("apiVersion: slo-engine/v1\nservice: a\nowner: t\nslos:\n  - name: x\n"
                    f"    objective: {bomb!r}\n    sli: {{ratio: {{bad: a, total: b}}}}\n",
                    encoding="utf-8")
    assert any("objective: expected a number" in line for line in _validate(path, capsys))


def test_anchors_and_aliases_of_real_files_still_work(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A tier list and an SLI anchored once and reused by 50 SLOs stay far below the limit."""
    first = ("  - name: s0\n    objective: 99.9\n"
             "    sli: &sli {ratio: {bad: 'x_total{code=\"500\"}', total: x_total}}\n"
             "    alerting:\n      tiers: &tiers\n"
             "        - {severity: page, long_window: 1h, short_window: 5m, budget_percent: 2}\n"
             "        - {severity: ticket, long_window: 1d, short_window: 2h, "
             "budget_percent: 10}\n")
    others = "".join(f"  - name: s{i}\n    objective: 99.9\n    sli: *sli\n"
                     "    alerting: {tiers: *tiers}\n" for i in range(1, 50))
    path = tmp_path / "anchors.yaml"
    path.write_text(f"apiVersion: slo-engine/v1\nservice: a\nowner: t\nslos:\n{first}{others}",
                    encoding="utf-8")
    assert main(["validate", str(path)]) == 0, capsys.readouterr().err
    assert "OK: 50 SLOs in 1 service valid" in capsys.readouterr().out


@pytest.mark.parametrize(("content", "expected"), [
    (b"apiVersion: slo-engine/v1\nservice: a\x00\n", ":2:11: the file holds the control "
     "character U+0000"),
    (b"apiVersion: slo-engine/v1\nservice: a\x1f\n", ":2:11: the file holds the control "
     "character U+001F"),
    (b"[" * 100_000, ":1:1001: mappings and lists nest deeper than 64 levels"),
    (b"a:\n" + b"".join(b" " * i + b"a:\n" for i in range(1, 200)), ":66:66: mappings and "
     "lists nest deeper than 64 levels"),
    (b"service: \xff\xfe\n", ":1:10: cannot read the file: it is not UTF-8 (byte 0xff)"),
    (b"? [a, b]\n: c\n", ":1:3: a key must be a plain value"),
    (b"a: 1\n" + b"#" * (4 * 1024 * 1024), ":1:1: the file is larger than 4 MiB"),
])
def test_broken_bytes_are_located_one_line_errors(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes,
        expected: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_bytes(content)
    lines = _validate(path, capsys)
    assert any(line.startswith(path.as_posix()) and expected in line for line in lines), lines


def test_a_symlink_loop_named_directly_is_a_located_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("a").symlink_to("a")
    lines = _validate(Path("a"), capsys)
    assert lines[0] == "a:1:1: cannot read the file: Too many levels of symbolic links"


# --- data files ------------------------------------------------------------------------------

AT = "2026-05-02T00:00:00Z"
HEADER = "timestamp,slo,total,bad\n"


def _report(tmp_path: Path, rows: str, capsys: pytest.CaptureFixture[str]) -> tuple[
        int, str, str]:
    data = tmp_path / "events.csv"
    data.write_text(HEADER + rows, encoding="utf-8")
    code = main(["report", str(SLO_FILE), "--data", str(data), "--at", AT, "--format", "json"])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err.replace(str(data), "events.csv")


@pytest.mark.parametrize(("rows", "expected"), [
    ("2026-05-01T00:00:00Z,api-latency,inf,0\n", "line 2: column total must be a number ≥ 0, "
     "and finite, got 'inf'"),
    ("2026-05-01T00:00:00Z,api-latency,10,nan\n", "line 2: column bad must be a number"),
    ("2026-05-01T00:00:00Z,api-latency,10,-1\n", "line 2: column bad must be a number"),
    ("2026-05-01T00:00:00Z,api-latency,10,0\n0001-01-01T00:00:00Z,api-latency,10,0\n",
     "line 3: column timestamp: '0001-01-01T00:00:00Z' is not a time between 1678 and 2261"),
    ("2026-05-01T00:00:00Z,api-latency,10,0\n9999-01-01T00:00:00Z,api-latency,10,0\n",
     "line 3: column timestamp: '9999-01-01T00:00:00Z' is not a time"),
    ("2026-05-01T00:00:00Z,api-latency,10,0\nyesterday,api-latency,10,0\n",
     "line 3: column timestamp: cannot read 'yesterday' as a time"),
    ("2026-05-01T00:00:00Z,api-latency,10,1\n2026-05-01T00:05:00Z,api-latency,10,1\n"
     "2026-05-01T00:00:00Z,api-latency,10,1\n", "lines 2 and 4: the same time, SLO and group "
     "twice"),
])
def test_bad_data_rows_are_errors_naming_file_and_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], rows: str, expected: str) -> None:
    code, _, err = _report(tmp_path, rows, capsys)
    assert code == 1
    assert err.startswith("error: events.csv: ") and expected in err, err
    assert len(err.splitlines()) == 1


def test_an_unknown_slo_name_is_a_warning_naming_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _report(tmp_path, "2026-05-01T00:00:00Z,api-latncy,10,1\n", capsys)
    assert code == 0
    assert ("warning: events.csv: rows of 1 SLO(s) no given SLO file defines are ignored: "
            "api-latncy (did you mean 'api-latency'?)") in err


def test_epoch_timestamps_warn_that_no_row_is_in_the_window(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _report(tmp_path, "1970-01-01,api-latency,10,1\n", capsys)
    assert code == 0 and '"no_data"' in out
    assert ("warning: events.csv: no row falls in the report window 2026-04-02T00:00:00Z – "
            "2026-05-02T00:00:00Z; the file's rows run from 1970-01-01T00:00:00Z to "
            "1970-01-01T00:00:00Z") in err
