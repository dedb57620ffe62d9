"""`slo-engine validate|schema|compile`, run in-process as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

from slo_engine.cli import main
from slo_engine.errors import SpecError
from slo_engine.rules.files import HEADER_MARK
from slo_engine.spec.loader import load_services

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "slo_definitions").glob("*.yaml"))
GOOD = sorted((ROOT / "tests/spec_cases/good").glob("*.yaml"))
BAD = "tests/spec_cases/bad"


@pytest.fixture(autouse=True)
def _at_repo_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# --- validate


def test_validate_ok_prints_one_summary_line(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "validate", "slo_definitions")
    slos = sum(len(s.slos) for s in load_services(["slo_definitions"]))
    assert (code, err) == (0, "")
    assert out == f"OK: {slos} SLOs in {len(EXAMPLES)} services valid\n"


def test_validate_summary_is_singular_for_one(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "validate", "slo_definitions/api.yaml") == (
        0, "OK: 1 SLO in 1 service valid\n", "")


def test_validate_several_paths(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "validate", "slo_definitions/api.yaml", "tests/spec_cases/good")
    assert code == 0
    assert out == "OK: 16 SLOs in 9 services valid\n"


def test_validate_bad_file_prints_every_issue_and_exits_1(
        capsys: pytest.CaptureFixture[str]) -> None:
    path = f"{BAD}/several-mistakes.yaml"
    with pytest.raises(SpecError) as caught:
        load_services([path])
    code, out, err = run(capsys, "validate", path)
    assert (code, out) == (1, "")
    assert err.splitlines() == [*(str(i) for i in caught.value.issues), "8 errors found"]
    assert all(line.startswith(f"{path}:") for line in err.splitlines()[:-1])
    assert "Traceback" not in err


def test_validate_one_error_is_singular(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "validate", f"{BAD}/objective-100.yaml")
    assert (code, out) == (1, "")
    assert err == (f"{BAD}/objective-100.yaml:6:16: slos[0].objective: 100 is outside (0, 100); "
                   "the objective is a percent, e.g. 99.9 for 99.9%\n1 error found\n")


def test_validate_good_and_bad_together_fails(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "validate", "slo_definitions", f"{BAD}/empty.yaml")
    assert code == 1
    assert err.splitlines()[-1] == "1 error found"


def test_validate_directory_without_specs(capsys: pytest.CaptureFixture[str],
                                          tmp_path: Path) -> None:
    code, _, err = run(capsys, "validate", str(tmp_path))
    assert code == 1
    assert err == f"{tmp_path}:1:1: no SLO files (*.yaml, *.yml) found\n1 error found\n"


def test_validate_needs_a_path(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["validate"])
    assert caught.value.code == 2
    assert "PATH" in capsys.readouterr().err


def test_python_dash_m_runs_the_cli() -> None:
    result = subprocess.run([sys.executable, "-m", "slo_engine", "validate", "slo_definitions"],
                            cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.startswith("OK: ")
    bad = subprocess.run([sys.executable, "-m", "slo_engine", "validate", f"{BAD}/empty.yaml"],
                         cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert bad.returncode == 1
    assert bad.stderr.endswith("1 error found\n")
    assert "Traceback" not in bad.stderr


# --- schema


@pytest.fixture
def schema(capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    code, out, err = run(capsys, "schema")
    assert (code, err) == (0, "")
    loaded: dict[str, object] = json.loads(out)
    return loaded


def test_schema_is_a_valid_draft_2020_12_schema(schema: dict[str, object]) -> None:
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"


@pytest.mark.parametrize("path", [*EXAMPLES, *GOOD], ids=lambda p: p.name)
def test_schema_accepts_every_valid_file(schema: dict[str, object], path: Path) -> None:
    document = json.loads(json.dumps(yaml.safe_load(path.read_text())))
    jsonschema.validate(document, schema, cls=jsonschema.Draft202012Validator)


@pytest.mark.parametrize(("name", "complaint"), [
    ("unknown-key", "Additional properties are not allowed ('slack_channel' was unexpected)"),
    ("wrong-api-version", "'slo-engine/v1' was expected"),
    ("missing-owner", "'owner' is a required property"),
    ("objective-100", "100 is greater than or equal to the maximum of 100"),
    ("bad-period", "'30days' does not match"),
    ("invalid-slo-name", "'Checkout_Success' does not match"),
    ("tier-bad-severity", "'critical' is not one of ['page', 'ticket']"),
    ("label-name-invalid", "'cost-center' does not match any of the regexes"),
])
def test_schema_rejects_what_an_editor_can_catch(schema: dict[str, object], name: str,
                                                 complaint: str) -> None:
    document = yaml.safe_load((ROOT / BAD / f"{name}.yaml").read_text())
    found = list(jsonschema.Draft202012Validator(schema).iter_errors(document))
    messages: list[str] = []
    while found:  # with the reasons behind each anyOf failure
        error = found.pop()
        messages.append(error.message)
        found.extend(error.context or ())
    assert any(complaint in m for m in messages), messages


# --- compile


def compile_(capsys: pytest.CaptureFixture[str], out: Path, *extra: str) -> tuple[int, str, str]:
    return run(capsys, "compile", "slo_definitions", "--out", str(out), *extra)


def compile_rules_only(capsys: pytest.CaptureFixture[str], out: Path,
                       *extra: str) -> tuple[int, str, str]:
    """Without promtool tests: the drift checks below are the same and run faster."""
    return compile_(capsys, out, "--no-tests", *extra)


def test_compile_then_check_is_clean(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out = tmp_path / "rules"
    code, stdout, _ = compile_(capsys, out)
    assert code == 0
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.yml"))
    assert stdout == f"wrote {out}: {len(written)} files changed\n"
    assert {f"{p.stem}.yml" for p in EXAMPLES} <= set(written)
    assert compile_(capsys, out, "--check") == (0, f"{out} is up to date\n", "")
    assert compile_(capsys, out) == (0, f"wrote {out}: 0 files changed\n", "")


def test_sloth_series_cannot_be_asked_of_the_vmalert_layout(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, stdout, stderr = compile_(capsys, tmp_path, "--format", "vmalert",
                                    "--sloth-compatible")
    assert (code, stdout) == (1, "")
    assert "cannot be combined with --format vmalert" in stderr
    assert "Traceback" not in stderr
    assert not any(tmp_path.iterdir())


def test_every_generated_file_has_the_header(capsys: pytest.CaptureFixture[str],
                                             tmp_path: Path) -> None:
    compile_(capsys, tmp_path)
    for path in tmp_path.rglob("*.yml"):
        assert path.read_text().startswith(HEADER_MARK), path


def test_check_names_a_stale_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    compile_rules_only(capsys, tmp_path)
    api = tmp_path / "api.yml"
    api.write_text(api.read_text().replace("slo: api-latency", "slo: edited", 1))
    code, out, err = compile_rules_only(capsys, tmp_path, "--check")
    assert (code, out) == (1, "")
    stale, advice = err.splitlines()
    assert stale == f"{api}: stale"
    assert advice.startswith(f"{tmp_path} is out of date; run: slo-engine compile "
                             f"slo_definitions --out {tmp_path}")
    assert compile_rules_only(capsys, tmp_path)[1] == f"wrote {tmp_path}: 1 file changed\n"
    assert compile_rules_only(capsys, tmp_path, "--check")[0] == 0


def test_check_names_a_missing_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    compile_rules_only(capsys, tmp_path)
    (tmp_path / "search.yml").unlink()
    code, _, err = compile_rules_only(capsys, tmp_path, "--check")
    assert code == 1
    assert err.splitlines()[0] == f"{tmp_path / 'search.yml'}: missing"
    assert not (tmp_path / "search.yml").exists()  # --check writes nothing
    compile_rules_only(capsys, tmp_path)
    assert (tmp_path / "search.yml").exists()


def test_leftover_generated_file_is_extra_and_removed(capsys: pytest.CaptureFixture[str],
                                                      tmp_path: Path) -> None:
    compile_rules_only(capsys, tmp_path)
    leftover = tmp_path / "retired-service.yml"
    leftover.write_text(f"{HEADER_MARK} from slo_definitions/retired-service.yaml. "
                        "DO NOT EDIT.\ngroups: []\n")
    code, _, err = compile_rules_only(capsys, tmp_path, "--check")
    assert code == 1
    assert err.splitlines()[0] == f"{leftover}: extra"
    assert leftover.exists()
    assert compile_rules_only(capsys, tmp_path)[0] == 0
    assert not leftover.exists()
    assert compile_rules_only(capsys, tmp_path, "--check")[0] == 0


def test_files_without_our_header_are_left_alone(capsys: pytest.CaptureFixture[str],
                                                 tmp_path: Path) -> None:
    compile_rules_only(capsys, tmp_path)
    mine = tmp_path / "hand-written.yml"
    mine.write_text("# written by a person\ngroups: []\n")
    assert compile_rules_only(capsys, tmp_path, "--check")[0] == 0
    compile_rules_only(capsys, tmp_path)
    assert mine.read_text() == "# written by a person\ngroups: []\n"


def test_output_is_byte_identical_across_runs(capsys: pytest.CaptureFixture[str],
                                              tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    compile_(capsys, first)
    compile_(capsys, second)

    def tree(root: Path) -> dict[str, bytes]:
        return {p.relative_to(root).as_posix(): p.read_bytes()
                for p in sorted(root.rglob("*")) if p.is_file()}

    assert tree(first) == tree(second)
    assert tree(first)


def test_compile_of_a_bad_spec_writes_nothing(capsys: pytest.CaptureFixture[str],
                                              tmp_path: Path) -> None:
    code, out, err = run(capsys, "compile", f"{BAD}/empty.yaml", "--out", str(tmp_path / "o"))
    assert (code, out) == (1, "")
    assert err.endswith("1 error found\n")
    assert not (tmp_path / "o").exists()


def test_prometheus_operator_format(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, _ = compile_(capsys, tmp_path, "--format", "prometheus-operator")
    assert code == 0
    assert not (tmp_path / "tests").exists()  # promtool tests only for plain rule files
    text = (tmp_path / "checkout.yml").read_text()
    assert text.startswith(f"{HEADER_MARK} from slo_definitions/checkout.yaml.")
    document = yaml.safe_load(text)
    assert document["apiVersion"] == "monitoring.coreos.com/v1"
    assert document["kind"] == "PrometheusRule"
    assert document["metadata"]["name"] == "slo-engine-checkout"
    groups = document["spec"]["groups"]
    assert groups and all(g["name"].startswith("slo-engine:checkout:") for g in groups)
    assert compile_(capsys, tmp_path, "--format", "prometheus-operator", "--check")[0] == 0
    # The plain format differs only in the wrapping: same groups.
    plain = tmp_path / "plain"
    compile_(capsys, plain, "--no-tests")
    assert yaml.safe_load((plain / "checkout.yml").read_text())["groups"] == groups
    assert not (plain / "tests").exists()


WEEKLY = """apiVersion: slo-engine/v1
service: weekly
owner: team
slos:
  - name: s
    objective: 99.9
    period: 7d
    sli:
      ratio:
        bad: x_total{code="500"}
        total: x_total
    alerting:
      tiers:
        - {severity: page, long_window: 1h, short_window: 5m, budget_percent: 2}
        - {severity: ticket, long_window: 3d, short_window: 6h, budget_percent: 10}
"""


def test_validate_and_explain_warn_on_a_tier_below_1x_and_exit_0(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "weekly.yaml"
    path.write_text(WEEKLY)
    warning = (f"{path.as_posix()}:15:11: slos[0].alerting.tiers[1]: warning: ticket tier 3d/6h "
               "fires at 0.2333x, below 1x: ")
    code, out, err = run(capsys, "validate", str(path))
    assert (code, out) == (0, "OK: 1 SLO in 1 service valid\n")
    [line] = err.splitlines()
    assert line.startswith(warning)
    code, out, err = run(capsys, "explain", str(path))
    assert code == 0 and "ticket   3d/6h     0.2333x" in out
    assert err.startswith(warning)
