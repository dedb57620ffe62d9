"""The analyst notebooks run top to bottom on the demo's data, and are committed clean.

Each notebook is executed with nbclient in the `python3` kernel, which jupyter_client starts
with this interpreter (the venv's: checked from inside the kernel), with the demo's month
written to a temporary directory and passed through the notebooks' environment parameters.
Cells appended to the executed copy read its results back as JSON, so the checks are on
what the notebook computed, not on how it printed it. A committed notebook with outputs or
execution counts fails the suite.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell

from slo_engine.demo.month import DemoData, demo_data, write_changes, write_events
from slo_engine.demo.prometheus import backfill, serving, write_openmetrics
from slo_engine.spec.loader import load_services
from tests.support.binaries import require
from tests.support.paths import ROOT

NOTEBOOKS = ROOT / "notebooks"
EXPLORER = NOTEBOOKS / "error_budget_explorer.ipynb"
TUNING = NOTEBOOKS / "alert_policy_tuning.ipynb"
UNTIL = datetime(2026, 5, 31, 12, tzinfo=UTC)
KERNEL = "python3"
TIMEOUT = 600  # seconds per cell; each notebook takes a few seconds here


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[DemoData, dict[str, str]]:
    out = tmp_path_factory.mktemp("demo_out")
    data = demo_data(load_services([ROOT / "slo_definitions"]), UNTIL)
    write_events(data.ledger, out / "events.csv")
    write_changes(data.changes, out / "changes.jsonl")
    return data, {"SLO_ENGINE_DATA": str(out / "events.csv"),
                  "SLO_ENGINE_CHANGES": str(out / "changes.jsonl"),
                  "SLO_ENGINE_SLO_PATHS": str(ROOT / "slo_definitions"),
                  "SLO_ENGINE_AT": "2026-05-31T12:00:00Z"}


def execute(path: Path, env: Mapping[str, str], monkeypatch: pytest.MonkeyPatch,
            probe: str) -> tuple[nbformat.NotebookNode, Any]:
    """Run the notebook (the kernel inherits `env`), then `probe`, a cell that prints JSON."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    notebook = nbformat.read(path, as_version=4)
    notebook.cells.append(new_code_cell(
        "import json as _json, sys as _sys\n"
        f"print(_json.dumps({{'prefix': _sys.prefix, 'result': {probe}}}, default=str))"))
    NotebookClient(notebook, kernel_name=KERNEL, timeout=TIMEOUT,
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    printed = json.loads("".join(o["text"] for o in notebook.cells[-1].outputs
                                 if o.get("name") == "stdout"))
    assert printed["prefix"] == sys.prefix  # the venv's interpreter ran it
    return notebook, printed["result"]


def outputs(notebook: nbformat.NotebookNode) -> Iterator[tuple[int, str]]:
    """(cell index, what) for every output or execution count left in a notebook."""
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type != "code":
            continue
        if cell.get("outputs"):
            yield index, f"{len(cell.outputs)} output(s)"
        if cell.get("execution_count") is not None:
            yield index, f"execution count {cell.execution_count}"


def images(notebook: nbformat.NotebookNode) -> int:
    return sum("image/png" in o.get("data", {}) for cell in notebook.cells
               if cell.cell_type == "code" for o in cell.outputs)


def test_the_kernel_is_the_one_this_interpreter_starts() -> None:
    spec = KernelSpecManager().get_kernel_spec(KERNEL)
    assert spec.language == "python"
    assert spec.argv[0] in ("python", "python3", sys.executable)  # jupyter_client runs it


@pytest.mark.parametrize("path", sorted(NOTEBOOKS.glob("*.ipynb")), ids=lambda p: p.name)
def test_committed_notebooks_have_no_outputs(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    left = [f"cell {index}: {what}" for index, what in outputs(notebook)]
    assert not left, (f"{path.name} was committed with outputs ({'; '.join(left)}); clear "
                      "them in Jupyter (Edit > Clear Outputs of All Cells), or: pip install "
                      f"nbconvert && jupyter nbconvert --clear-output --inplace {path}")
    assert notebook.metadata["kernelspec"]["name"] == KERNEL
    parameters = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(parameters) == 1  # papermill and readers find the knobs in one place


EXPLORER_PROBE = ("{'report': len(report), "
                  "'incidents': incidents[['slo', 'severity', 'change_version', 'suspect', "
                  "'rollback_command']].to_dict(orient='records'), "
                  "'worst_days': worst['slo'].tolist()}")


def check_incidents(data: DemoData, incidents: list[dict[str, Any]]) -> None:
    """Each scripted burn is one incident, attributed to the deploy that caused it."""
    by_slo = {row["slo"]: row for row in incidents}
    assert len(by_slo) == len(incidents) == len(data.burns)
    for burn in data.burns:
        row = by_slo[burn.slo]
        if burn.kind == "incident":
            assert burn.cause is not None
            assert row["severity"] == "page" and row["suspect"]
            assert row["change_version"] == burn.cause.version
            assert row["rollback_command"] == burn.cause.rollback_command
        else:  # the slow burn: a ticket, and nothing changed before it
            assert row["severity"] == "ticket" and not row["suspect"]
            assert row["change_version"] is None


def test_explorer_charts_and_attributes_the_demo(
        demo: tuple[DemoData, dict[str, str]], monkeypatch: pytest.MonkeyPatch) -> None:
    data, env = demo
    notebook, result = execute(EXPLORER, env, monkeypatch, EXPLORER_PROBE)
    assert result["report"] == 6
    assert images(notebook) == 5 + 5 + 1  # burn-downs, SLI charts, the heatmap
    check_incidents(data, result["incidents"])
    assert set(result["worst_days"]) == {slo for slo in
                                         data.ledger["slo"].astype(str).unique()}
    assert list(outputs(nbformat.read(EXPLORER, as_version=4))) == []  # the file untouched
    assert list(outputs(notebook))  # and the checker sees outputs where there are some


def test_tuning_compares_the_policies_side_by_side(
        demo: tuple[DemoData, dict[str, str]], monkeypatch: pytest.MonkeyPatch) -> None:
    _, env = demo
    notebook, result = execute(TUNING, env, monkeypatch, "{"
                               "'policies': list(policies), "
                               "'columns': [list(c) for c in side_by_side.columns], "
                               "'totals': totals.assign(median_delay=totals['median_delay']"
                               ".dt.total_seconds()).reset_index().to_dict(orient='records')}")
    assert result["policies"] == ["own tiers", "faster", "pages-only", "quieter"]
    assert ["own tiers", "pages"] in result["columns"]
    assert ["quieter", "spent unnoticed"] in result["columns"]
    totals = {row["policy"]: row for row in result["totals"]}
    own, faster, pages_only = totals["own tiers"], totals["faster"], totals["pages-only"]
    assert own["pages"] == 2  # one page per deploy-caused incident
    assert own["tickets"] >= 1 and pages_only["tickets"] == 0  # the slow burn's ticket
    assert pages_only["spent_unnoticed"] > own["spent_unnoticed"]
    assert 0 < faster["median_delay"] < own["median_delay"]  # a 30m window pages sooner
    assert faster["pages"] == own["pages"]
    assert images(notebook) == 1


@pytest.mark.prometheus
def test_explorer_reads_the_same_month_from_prometheus(
        tmp_path: Path, demo: tuple[DemoData, dict[str, str]],
        monkeypatch: pytest.MonkeyPatch) -> None:
    require("prometheus")
    require("promtool")
    data, env = demo
    services = load_services([ROOT / "slo_definitions"])
    longer = demo_data(services, UNTIL, days=31)  # the same month, and a day before it
    write_openmetrics(tmp_path / "rates.om", services, longer.ledger)
    backfill(tmp_path / "rates.om", tmp_path / "data")
    with serving(tmp_path / "data") as url:
        notebook, result = execute(EXPLORER, {**env, "SLO_ENGINE_PROMETHEUS_URL": url,
                                              "SLO_ENGINE_DATA": str(tmp_path / "absent.csv")},
                                   monkeypatch, EXPLORER_PROBE)
    printed = "".join(o.get("text", "") for cell in notebook.cells
                      for o in cell.get("outputs", []))
    assert f"{url}: " in printed and "read from raw series" not in printed
    assert result["report"] == 6
    check_incidents(data, result["incidents"])
