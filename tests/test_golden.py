"""Golden files of generated artifacts: review changes as diffs, regenerate with
`make golden` (which runs this module with --update-golden)."""

from __future__ import annotations

import pytest
import yaml

from slo_engine.app import generated_files
from slo_engine.spec.document import json_schema_text
from slo_engine.spec.loader import load_services
from tests.support.paths import GOLDEN, GOLDEN_CASES, ROOT


def _expected(case: str) -> dict[str, str]:
    services = load_services([f"tests/golden/{case}/slo.yaml"])
    files = {f"out/{name}": text for name, text in generated_files(services).items()}
    operator = generated_files(services, "prometheus-operator")
    files.update({f"prometheus-operator/{name}": text for name, text in operator.items()})
    vmalert = generated_files(services, "vmalert")
    files.update({f"vmalert/{name}": text for name, text in vmalert.items()})
    sloth = generated_files(services, with_tests=False, sloth_compatible=True)
    files.update({f"sloth-compatible/{name}": text for name, text in sloth.items()})
    return files


def _on_disk(case: str) -> dict[str, str]:
    base = GOLDEN / case
    return {p.relative_to(base).as_posix(): p.read_text(encoding="utf-8")
            for p in sorted(base.rglob("*.yml"))}


@pytest.mark.parametrize("case", GOLDEN_CASES)
def test_generated_files_match_golden(case: str, update_golden: bool,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    expected = _expected(case)
    if update_golden:
        for path in (GOLDEN / case).rglob("*.yml"):
            path.unlink()
        for name, text in expected.items():
            target = GOLDEN / case / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
    actual = _on_disk(case)
    assert sorted(actual) == sorted(expected), "run `make golden` and review the diff"
    for name, text in expected.items():
        assert actual[name] == text, f"{case}/{name} drifted; run `make golden`, review the diff"


def test_output_is_byte_identical_across_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    first = {case: _expected(case) for case in GOLDEN_CASES}
    second = {case: _expected(case) for case in GOLDEN_CASES}
    assert first == second


def test_every_golden_case_has_a_spec() -> None:
    assert len(GOLDEN_CASES) >= 5


def test_committed_json_schema_is_current() -> None:
    committed = (ROOT / "slo-engine.schema.json").read_text(encoding="utf-8")
    assert committed == json_schema_text(), "run `make golden`"


def test_the_prometheus_rule_carries_the_specs_namespace_and_labels(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """kube-prometheus-stack's Prometheus selects rules by labels such as `release`; the
    engine's own two labels stay."""
    monkeypatch.chdir(ROOT)
    files = _expected("alerting-routing")
    metadata = yaml.safe_load(files["prometheus-operator/edge-api.yml"])["metadata"]
    assert metadata == {"name": "slo-engine-edge-api", "namespace": "monitoring",
                        "labels": {"app.kubernetes.io/managed-by": "slo-engine",
                                   "slo-engine/service": "edge-api",
                                   "release": "kube-prometheus-stack"}}
    [reference] = [t for n, t in _expected("reference-30d").items()
                   if n.startswith("prometheus-operator/")]
    assert "namespace:" not in reference


DASHBOARDS = GOLDEN / "dashboards"


def test_grafana_dashboards_match_golden(update_golden: bool) -> None:
    """The dashboards of slo_definitions, as `slo-engine dashboards` writes them."""
    from slo_engine.dashboards.grafana import dashboard_files

    expected = dashboard_files(load_services([ROOT / "slo_definitions"]),
                               "/var/lib/grafana/dashboards/slo-engine")
    if update_golden:
        for path in DASHBOARDS.rglob("*.*"):
            path.unlink()
        for name, text in expected.items():
            (DASHBOARDS / name).parent.mkdir(parents=True, exist_ok=True)
            (DASHBOARDS / name).write_text(text, encoding="utf-8")
    actual = {p.relative_to(DASHBOARDS).as_posix(): p.read_text(encoding="utf-8")
              for p in sorted(DASHBOARDS.rglob("*.*"))}
    assert sorted(actual) == sorted(expected), "run `make golden` and review the diff"
    for name, text in expected.items():
        assert actual[name] == text, f"dashboards/{name} drifted; run `make golden`"
