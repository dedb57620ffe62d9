"""Fuzz of the CLI's file inputs: whatever an SLO file, a change-events file or a data file
holds, the command exits 0 or prints error lines and exits 1, never a traceback."""

from __future__ import annotations

import contextlib
import io
import json
import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from slo_engine.cli import main

ROOT = Path(__file__).resolve().parent.parent
SLO_FILE = ROOT / "slo_definitions" / "api.yaml"
FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(),
                     st.text(max_size=20), st.sampled_from(["30d", "5m", "99.9", "*a", "&a"]))
_yaml_values = st.recursive(_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4),
    st.dictionaries(st.sampled_from(["name", "objective", "sli", "ratio", "bad", "total",
                                     "period", "alerting", "tiers", "group_by", "labels"]),
                    inner, max_size=4)), max_leaves=12)


@st.composite
def _slo_files(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["structured", "bytes", "text"]))
    if kind == "bytes":
        return draw(st.binary(max_size=300))
    if kind == "text":
        return draw(st.text(max_size=300)).encode("utf-8", "surrogatepass")
    body = {"apiVersion": "slo-engine/v1", "service": draw(st.text(max_size=8)),
            "owner": "team", "slos": draw(st.lists(_yaml_values, max_size=3))}
    return yaml.safe_dump(body, allow_unicode=True).encode("utf-8", "surrogatepass")


def _run(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(argv)
    return code, err.getvalue()


def _assert_clean(code: int, err: str) -> None:
    assert code in (0, 1), (code, err)
    assert "Traceback" not in err
    if code == 1:
        assert err.strip(), "exit 1 without a message"


@FUZZ
@given(_slo_files())
def test_validate_never_prints_a_traceback(content: bytes) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "fuzz.yaml"
        path.write_bytes(content)
        _assert_clean(*_run(["validate", str(path)]))


_times = st.one_of(st.datetimes().map(lambda t: t.isoformat() + "Z"),  # years 1 to 9999
                   st.sampled_from(["1600-01-01T00:00:00Z", "0001-01-01T00:00:00+14:00",
                                    "9999-12-31T23:59:59-14:00"]),
                   st.text(max_size=25))
_change = st.fixed_dictionaries(
    {"time": _times, "service": st.text(max_size=10),
     "kind": st.sampled_from(["deploy", "config", "feature_flag", "migration", "x"])},
    optional={"version": st.text(max_size=10), "rollback_command": st.text(max_size=10),
              "url": st.text(max_size=20)})
_change_lines = st.lists(st.one_of(_change.map(json.dumps),
                                   st.text(max_size=60).filter(lambda s: "\n" not in s)),
                         max_size=5)


@FUZZ
@given(_change_lines)
def test_changes_import_never_prints_a_traceback(lines: list[str]) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "changes.jsonl"
        path.write_text("\n".join(lines), encoding="utf-8", errors="surrogatepass")
        _assert_clean(*_run(["changes", "import", str(path), "--state",
                             str(Path(directory) / "state.db")]))


_cells = st.one_of(st.text(max_size=12).filter(lambda s: not set(s) & set(",\n\r\"")),
                   st.sampled_from(["inf", "-1", "nan", "0", "1e308", "2026-05-01T00:00:00Z",
                                    "0001-01-01", "1970-01-01", "api-latency", ""]),
                   st.floats(allow_nan=True).map(str), st.integers().map(str))
_rows = st.lists(st.tuples(_cells, st.sampled_from(["api-latency", "api-availability"]) | _cells,
                           _cells, _cells).map(",".join), max_size=6)


@FUZZ
@given(st.sampled_from(["timestamp,slo,total,bad", "timestamp,slo,total,bad,region",
                        "timestamp,slo,total", "a,b"]), _rows)
def test_report_data_never_prints_a_traceback(header: str, rows: list[str]) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "events.csv"
        path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8",
                        errors="surrogatepass")
        _assert_clean(*_run(["report", str(SLO_FILE), "--data", str(path),
                             "--at", "2026-05-02T00:00:00Z", "--format", "json"]))
