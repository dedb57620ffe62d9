"""The vmalert layout's two promises, over every golden case (every SLI kind): no rule reads
a series its own group records, and it records and alerts on exactly what the Prometheus
layout does, under the same names and labels."""

from __future__ import annotations

import re

import pytest

from slo_engine.rules.compile import AlertingRule, RecordingRule, RuleSet, compile_service
from slo_engine.spec.loader import load_services
from tests.support.paths import GOLDEN, GOLDEN_CASES

_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"')
_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


def _rule_sets(case: str) -> tuple[list[RuleSet], list[RuleSet]]:
    services = load_services([GOLDEN / case / "slo.yaml"])
    return ([compile_service(s) for s in services],
            [compile_service(s, "vmalert") for s in services])


def _reads(expr: str) -> set[str]:
    return set(_NAME.findall(_QUOTED.sub('""', expr)))


@pytest.mark.parametrize("case", GOLDEN_CASES)
def test_no_rule_reads_what_its_own_group_records(case: str) -> None:
    _, vmalert = _rule_sets(case)
    for rule_set in vmalert:
        for group in rule_set.groups:
            records = {r.record for r in group.rules if isinstance(r, RecordingRule)}
            for rule in group.rules:
                assert not _reads(rule.expr) & records, (group.name, rule.expr)


def test_the_prometheus_layout_does_read_its_own_records() -> None:
    """What the check above would catch (it is not vacuous)."""
    prometheus, _ = _rule_sets("reference-30d")
    group = prometheus[0].groups[0]
    records = {r.record for r in group.rules if isinstance(r, RecordingRule)}
    assert any(_reads(rule.expr) & records for rule in group.rules)


@pytest.mark.parametrize("case", GOLDEN_CASES)
def test_same_records_and_alerts_as_the_prometheus_layout(case: str) -> None:
    def outputs(rule_sets: list[RuleSet]) -> tuple[list[tuple[object, ...]], ...]:
        records, alerts = [], []
        for rule_set in rule_sets:
            for group in rule_set.groups:
                for rule in group.rules:
                    if isinstance(rule, AlertingRule):
                        alerts.append((rule.alert, rule.labels, rule.annotations, rule.for_))
                    else:
                        records.append((rule.record, rule.labels))
        return sorted(records, key=repr), sorted(alerts, key=repr)

    prometheus, vmalert = _rule_sets(case)
    assert outputs(vmalert) == outputs(prometheus)
