"""slo-engine against Sloth's own generated rules, on the same series, in promtool.

Each Sloth example is imported with `slo-engine import sloth` and compiled; one promtool
test file per scenario loads both rule files (Sloth's `examples/_gen` output and ours: the
series names differ, so they coexist) and feeds them the same counters or gauges. promtool
only asserts expectations, so each file asks for nothing and reads what promtool says it
got: the minute each tool's alerts first fired (from `ALERTS`), and every window's error
ratio at the end. A migrating user must get detection at least as fast as Sloth's, no alert
Sloth would not send, and no NaN where Sloth has a number.

The table of detection minutes in docs/rules.md is rendered from these measurements:
`python -m tests.test_sloth_differential` rewrites it, and a test fails when it is stale.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from slo_engine.rules.compile import compile_service
from slo_engine.rules.files import render
from slo_engine.spec.loader import load_services
from slo_engine.spec.model import Service
from tests.support.binaries import require

prometheus = pytest.mark.prometheus

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "tests" / "corpus" / "sloth"
DOC = ROOT / "docs" / "rules.md"
START, END = "<!-- sloth-differential:start -->", "<!-- sloth-differential:end -->"

PER_MINUTE = 1000.0  # requests a minute, for the counter examples
CLIENTS = 10  # wifi clients, for the gauge example

# Example → the kind of input its SLIs read.
EXAMPLES = {
    "getting-started": "http",
    "home-wifi": "wifi",
    "kubernetes-apiserver": "apiserver",
    "multifile": "http",
}


@dataclass(frozen=True)
class Phase:
    """Minutes of traffic: `bad` is the bad share (a multiple of the example's first SLO's
    budget when `burn` is set), None for no requests at all."""

    minutes: int
    bad: float | None
    burn: bool = False


@dataclass(frozen=True)
class Scenario:
    name: str
    phases: tuple[Phase, ...]

    @property
    def end(self) -> int:
        return sum(p.minutes for p in self.phases)

    @property
    def onset(self) -> int:
        """The first minute whose samples hold bad events (0 when none does)."""
        minute = 1
        for phase in self.phases:
            if phase.bad:
                return minute
            minute += phase.minutes
        return 0


SCENARIOS = (
    Scenario("100% outage", (Phase(120, 0.0), Phase(30, 1.0))),
    Scenario("steady healthy", (Phase(240, 0.5, burn=True),)),
    Scenario("slow burn (8x)", (Phase(60, 0.0), Phase(300, 8.0, burn=True))),
    Scenario("quiet hour, then outage", (Phase(60, 0.0), Phase(60, None), Phase(30, 1.0))),
)


@dataclass(frozen=True)
class Detection:
    """One SLO in one scenario: each tool's first firing minute per severity, counted from
    the onset (None: silent), and the windows whose error ratio is NaN at the end."""

    example: str
    service: str
    slo: str
    scenario: str
    sloth: dict[str, float | None]
    ours: dict[str, float | None]
    sloth_nan: tuple[str, ...]
    ours_nan: tuple[str, ...]


def import_example(example: str, out: Path) -> list[Service]:
    """Through the CLI, as a migrating user would; Sloth's custom summaries are the only
    thing left out (the engine writes its own)."""
    subprocess.run([sys.executable, "-m", "slo_engine", "import", "sloth",
                    str(CORPUS / f"{example}.yml"), "--out", str(out / "specs"),
                    "--allow-partial"], check=True, capture_output=True, text=True)
    return load_services([out / "specs"])


def _shares(scenario: Scenario, budget: float) -> list[float | None]:
    """The bad share of every minute 1..end (None: no requests)."""
    shares: list[float | None] = []
    for phase in scenario.phases:
        share = None if phase.bad is None else phase.bad * (budget if phase.burn else 1.0)
        shares.extend([share] * phase.minutes)
    return shares


def _counter(increments: Sequence[float]) -> str:
    values, total = ["0"], 0.0
    for step in increments:
        total += step
        values.append(repr(round(total, 6)))
    return " ".join(values)


def input_series(kind: str, shares: Sequence[float | None]) -> list[dict[str, str]]:
    bad = [PER_MINUTE * (s or 0.0) for s in shares]
    good = [0.0 if s is None else PER_MINUTE * (1 - s) for s in shares]
    total = [b + g for b, g in zip(bad, good, strict=True)]
    if kind == "http":
        metric = "http_request_duration_seconds_count"
        return [{"series": f'{metric}{{job="myservice",code="500"}}', "values": _counter(bad)},
                {"series": f'{metric}{{job="myservice",code="200"}}', "values": _counter(good)}]
    if kind == "apiserver":
        duration = "apiserver_request_duration_seconds"
        return [
            {"series": 'apiserver_request_total{code="500"}', "values": _counter(bad)},
            {"series": 'apiserver_request_total{code="200"}', "values": _counter(good)},
            {"series": f'{duration}_count{{verb="GET"}}', "values": _counter(total)},
            {"series": f'{duration}_bucket{{verb="GET",le="0.4"}}', "values": _counter(good)},
        ]
    series = []
    for client in range(CLIENTS):
        values, quiet = ["0.9"], False
        for share in shares:
            if share is None:
                values.append("_" if quiet else "stale")
                quiet = True
                continue
            quiet = False
            # 1.0 is an outage: every client is bad for both SLOs; a smaller share makes
            # that many clients mediocre (bad for "good", fine for "risk").
            bad_clients = round(share * CLIENTS)
            values.append("0.1" if share >= 1 else "0.6" if client < bad_clients else "0.9")
        series.append({"series": f'unifipoller_client_satisfaction_ratio{{client="c{client}"}}',
                       "values": " ".join(values)})
    return series


SLOTH_ALERTS = 'ALERTS{alertstate="firing", sloth_severity!=""}'
OUR_ALERTS = 'ALERTS{alertstate="firing", long_window!=""}'
RATIOS = '{__name__=~"slo:sli_error:ratio_rate.+|slo:error_ratio:.+"}'


def _first_firing(selector: str, by: str, scenario: Scenario) -> str:
    return (f"(min by ({by}) (min_over_time(timestamp({selector})[{scenario.end}m:1m]))"
            f" - {scenario.onset * 60}) / 60")


def promtool_test_document(rule_files: Sequence[str], groups: Sequence[str], kind: str,
                           scenario: Scenario, budget: float) -> str:
    """Groups evaluate in file order (each tool's recordings before the alerts reading
    them), as promtool otherwise picks an order at random."""
    series = input_series(kind, _shares(scenario, budget))
    at = f"{scenario.end}m"
    body = {
        "rule_files": list(rule_files),
        "evaluation_interval": "1m",
        "group_eval_order": list(groups),
        "tests": [{
            "interval": "1m",
            "input_series": series,
            "promql_expr_test": [
                {"expr": _first_firing(SLOTH_ALERTS, "sloth_service, sloth_slo, sloth_severity",
                                       scenario),
                 "eval_time": at, "exp_samples": []},
                {"expr": _first_firing(OUR_ALERTS, "service, slo, long_window", scenario),
                 "eval_time": at, "exp_samples": []},
                {"expr": RATIOS, "eval_time": at, "exp_samples": []},
            ],
        }],
    }
    return yaml.safe_dump(body, sort_keys=False, width=1 << 16)


SAMPLE = re.compile(r"\{([^}]*)\} (\S+?)(?:,|$)")


def got(output: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """promtool's `got:` samples of each failed expression, keyed by the expression."""
    result: dict[str, list[tuple[dict[str, str], float]]] = {}
    expr = ""
    for line in output.splitlines():
        text = line.strip()
        if text.startswith("expr:"):
            expr = text
        elif text.startswith("got:"):
            result[expr] = [
                (dict(re.findall(r'(\w+)="([^"]*)"', labels)), float(value))
                for labels, value in SAMPLE.findall(text[len("got:"):].strip())
            ]
    return result


def _samples(found: dict[str, list[tuple[dict[str, str], float]]],
             marker: str) -> list[tuple[dict[str, str], float]]:
    return next((v for k, v in found.items() if marker in k), [])


def _window(name: str) -> str:
    window = name.rsplit("rate", 1)[-1] if "rate" in name else name.rsplit(":", 1)[-1]
    return "period" if window == "30d" else window


def _nan_windows(samples: list[tuple[dict[str, str], float]], prefix: str,
                 identity: dict[str, str]) -> tuple[str, ...]:
    return tuple(sorted({_window(labels["__name__"]) for labels, value in samples
                         if labels["__name__"].startswith(prefix) and math.isnan(value)
                         and all(labels.get(k) == v for k, v in identity.items())}))


def measure_one(promtool: str, workdir: Path, example: str,
                scenario: Scenario) -> list[Detection]:
    services = import_example(example, workdir)
    rule_files: list[str] = []
    groups: list[str] = []
    # Prometheus reads one YAML document per rule file; Sloth writes one per service.
    generated = (CORPUS / "_gen" / f"{example}.yml").read_text()
    for index, document in enumerate(d for d in yaml.safe_load_all(generated) if d):
        (workdir / f"sloth-{index}.yml").write_text(yaml.safe_dump(document))
        groups.extend(group["name"] for group in document["groups"])
        rule_files.append(f"sloth-{index}.yml")
    for service in services:
        rule_set = compile_service(service)
        (workdir / f"{service.name}.yml").write_text(render(rule_set))
        groups.extend(group.name for group in rule_set.groups)
        rule_files.append(f"{service.name}.yml")
    slos = [slo for service in services for slo in service.slos]
    (workdir / "test.yml").write_text(promtool_test_document(
        rule_files, groups, EXAMPLES[example], scenario, slos[0].error_budget))
    result = subprocess.run([promtool, "test", "rules", "test.yml"], cwd=workdir,
                            capture_output=True, text=True, timeout=300, check=False)
    output = result.stdout + result.stderr  # promtool writes failures to stderr
    if "got:" not in output:
        raise AssertionError(f"promtool said nothing measurable:\n{output}")
    found = got(output)
    detections = []
    for slo in slos:
        severity_of = {t.long_window: t.severity for t in slo.tiers}
        sloth: dict[str, float | None] = {"page": None, "ticket": None}
        ours: dict[str, float | None] = {"page": None, "ticket": None}
        for labels, minute in _samples(found, "sloth_severity!="):
            if (labels.get("sloth_slo"), labels.get("sloth_service")) == (slo.name, slo.service):
                sloth[labels["sloth_severity"]] = minute
        for labels, minute in _samples(found, "long_window!="):
            if (labels.get("slo"), labels.get("service")) == (slo.name, slo.service):
                severity = severity_of[labels["long_window"]]
                earlier = ours[severity]
                ours[severity] = minute if earlier is None else min(earlier, minute)
        ratios = _samples(found, "slo:sli_error")
        sloth_nan = _nan_windows(ratios, "slo:sli_error", {"sloth_slo": slo.name,
                                                           "sloth_service": slo.service})
        ours_nan = _nan_windows(ratios, "slo:error_ratio", {"slo": slo.name,
                                                            "service": slo.service})
        detections.append(Detection(example, slo.service, slo.name, scenario.name, sloth, ours,
                                    sloth_nan, ours_nan))
    return detections


def measure(promtool: str) -> list[Detection]:
    """Every example in every scenario, both cores busy."""
    cases = [(example, scenario) for example in EXAMPLES for scenario in SCENARIOS]

    def one(case: tuple[str, Scenario]) -> list[Detection]:
        with tempfile.TemporaryDirectory(prefix="sloth-diff-") as tmp:
            return measure_one(promtool, Path(tmp), *case)

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        return [d for found in pool.map(one, cases) for d in found]


def _minute(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:+.0f}" if value == round(value) else f"{value:+.2f}"


def table(detections: Sequence[Detection]) -> str:
    """The docs' table: minutes from the first bad sample to the first firing alert."""
    lines = [
        "| example | service/SLO | scenario | page: Sloth | page: slo-engine | ticket: Sloth | "
        "ticket: slo-engine | NaN windows at the end: Sloth / slo-engine |",
        "|---|---|---|---:|---:|---:|---:|---|",
    ]
    for d in detections:
        nan = f"{', '.join(d.sloth_nan) or 'none'} / {', '.join(d.ours_nan) or 'none'}"
        lines.append(
            f"| {d.example} | {d.service}/{d.slo} | {d.scenario} | {_minute(d.sloth['page'])} | "
            f"{_minute(d.ours['page'])} | {_minute(d.sloth['ticket'])} | "
            f"{_minute(d.ours['ticket'])} | {nan} |")
    return "\n".join(lines) + "\n"


def replace_table(doc: str, rendered: str) -> str:
    head, rest = doc.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{rendered}{END}{tail}"


@pytest.fixture(scope="module")
def detections(promtool: str) -> list[Detection]:
    return measure(promtool)


@prometheus
def test_every_example_and_scenario_is_measured(detections: list[Detection]) -> None:
    examples = {d.example for d in detections}
    assert examples == set(EXAMPLES)
    assert len(detections) == len(SCENARIOS) * 7  # 7 SLOs in the four examples


@prometheus
@pytest.mark.parametrize("severity", ["page", "ticket"])
def test_ours_fires_no_later_than_sloth(detections: list[Detection], severity: str) -> None:
    """Within one evaluation of Sloth, and never where Sloth stays silent."""
    def late(d: Detection) -> bool:
        sloth, ours = d.sloth[severity], d.ours[severity]
        return sloth is not None and (ours is None or ours > sloth + 1)

    slower = [d for d in detections if late(d)]
    extra = [d for d in detections if d.sloth[severity] is None and d.ours[severity] is not None]
    assert not slower, table(slower)
    assert not extra, table(extra)


@prometheus
def test_no_nan_where_sloth_has_a_number_or_a_nan(detections: list[Detection]) -> None:
    """Every scenario ends with traffic in every window: each of our windows has a value,
    whatever Sloth's (its period turns NaN after one quiet 5 minutes, for 30 days)."""
    assert not [d for d in detections if d.ours_nan], table(detections)


@prometheus
def test_the_docs_table_is_what_was_measured(detections: list[Detection]) -> None:
    doc = DOC.read_text()
    assert replace_table(doc, table(detections)) == doc, \
        "docs/rules.md is stale: python -m tests.test_sloth_differential rewrites its table"


if __name__ == "__main__":
    DOC.write_text(replace_table(DOC.read_text(), table(measure(require("promtool")))))
