"""The SLO spec: every mistake in tests/spec_cases/bad reported at its exact place, with
a message that says how to fix it; valid files load; the model derives the right numbers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from slo_engine.errors import SpecError, SpecIssue
from slo_engine.spec.burn_rate import alert_tier, default_tiers, threshold_literal
from slo_engine.spec.durations import parse_duration
from slo_engine.spec.loader import load_checked, load_services
from slo_engine.spec.model import (
    SLO,
    BoolGaugeSLI,
    ErrorRatioSLI,
    LatencySLI,
    QuerySLI,
    RatioSLI,
    Service,
)

ROOT = Path(__file__).resolve().parents[1]
CASES = "tests/spec_cases"
BAD = f"{CASES}/bad"
ACROSS = f"{CASES}/bad_across"


@pytest.fixture(autouse=True)
def _at_repo_root(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issues name files relative to the working directory, as the CLI shows them."""
    monkeypatch.chdir(ROOT)


def issues_of(*paths: str) -> list[str]:
    with pytest.raises(SpecError) as caught:
        load_services(paths)
    return [str(issue) for issue in caught.value.issues]


def case(name: str, *expected: str, id: str) -> Any:
    """A bad file and the issues it must produce, written after `file:` as the CLI prints."""
    path = f"{BAD}/{name}.yaml"
    return pytest.param(path, [f"{path}:{issue}" for issue in expected], id=id)


REMOVE = "remove one of them"
NOT_A_DURATION = "write a number and a unit, e.g. 500ms, 5m, 1h, 30d, 4w"
PLAIN_SELECTOR = ("give a plain selector; the engine adds rate() and the window itself (use a "
                  "'query' SLI for other PromQL)")
NEEDS_WINDOW = ("the query needs the {{window}} placeholder in its range selector, e.g. "
                "sum(rate(jobs_total[{{window}}]))")
BAD_NAME = ("is not a valid name; use at most 63 lowercase letters, digits and '-', starting "
            "and ending with a letter or digit, e.g. checkout-success")
WHOLE_MINUTES = "windows are whole minutes of at least 5m (the engine's base rate window)"
SERVICE_FIELDS = ("alert_windows, apiVersion, dashboard_url, depends_on, labels, owner, "
                  "prometheus_rule, runbook_url, service, slos")

BAD_FILES = [
    # --- YAML itself
    case("yaml-syntax-error",
         "7:9: YAML syntax error: mapping values are not allowed here; check this line's "
         "indentation, or quote a value that contains ': '",
         id="a mis-indented key is a YAML syntax error at the colon"),
    case("yaml-tab-indent",
         "6:1: YAML syntax error: found character '\\t' that cannot start any token; "
         "indent with spaces, not tabs",
         id="a tab in the indentation says to indent with spaces"),
    case("yaml-unclosed-quote",
         "10:19: YAML syntax error: the quoted value starting here is never closed; "
         "add the closing quote",
         id="an unclosed quote is reported where the quote opens, not at the end of the file"),
    case("duplicate-yaml-key",
         f"7:5: slos[0].objective: duplicate key 'objective' (first at line 6); {REMOVE}",
         f"12:9: slos[0].sli.ratio.total: duplicate key 'total' (first at line 11); {REMOVE}",
         id="every duplicate YAML key is reported, each pointing back at the first"),
    case("empty",
         "1:1: the file is empty; an SLO file starts with 'apiVersion: slo-engine/v1'",
         id="a file with only a comment is empty"),
    case("multiple-documents",
         "11:1: the file holds more than one YAML document (the second starts here); "
         "put each service in its own file",
         id="a second YAML document is reported at its '---'"),
    case("not-a-mapping",
         "1:1: an SLO file is a mapping that starts with 'apiVersion: slo-engine/v1'",
         id="a file holding a list instead of a mapping"),
    # --- unknown, missing and mistyped fields
    case("wrong-api-version",
         "1:13: apiVersion: unsupported apiVersion 'slo-engine/v2'; write "
         "'apiVersion: slo-engine/v1'",
         id="an unsupported apiVersion names the supported one"),
    case("missing-api-version",
         "1:1: apiVersion: missing required field 'apiVersion'; start the file with "
         "'apiVersion: slo-engine/v1'",
         id="a missing apiVersion"),
    case("missing-owner",
         "1:1: owner: missing required field 'owner'; the team that owns the service, "
         "pages route by it",
         id="a missing owner"),
    case("missing-total",
         "9:9: slos[0].sli.ratio.total: missing required field 'total'; the selector or query "
         "of all valid events",
         id="a ratio SLI without total is reported at the ratio mapping"),
    case("unknown-key",
         f"4:1: slack_channel: unknown field 'slack_channel'; expected one of: {SERVICE_FIELDS}",
         id="an unknown top-level key lists the allowed keys"),
    case("unknown-key-typo",
         "6:5: slos[0].objectve: unknown field 'objectve'; did you mean 'objective'?",
         id="a misspelt required key is one issue suggesting the right name, not two"),
    case("objective-quoted",
         "6:17: slos[0].objective: expected a number, got str '99.5'; remove the quotes",
         id="a quoted objective is a string: says to remove the quotes"),
    case("slos-not-a-list",
         "5:3: slos: expected a list, got a mapping",
         id="slos given as a mapping instead of a list"),
    case("label-value-number",
         "4:16: labels.tier: expected a string (quote it), got int 1",
         id="a label value that YAML reads as a number must be quoted"),
    case("latency-selector-unquoted",
         "10:19: slos[0].sli.latency.selector: expected a string (quote it), got a mapping",
         id="an unquoted {…} selector is a YAML mapping: says to quote it"),
    # --- objective and durations
    case("objective-100",
         "6:16: slos[0].objective: 100 is outside (0, 100); the objective is a percent, "
         "e.g. 99.9 for 99.9%",
         id="objective 100 is outside (0, 100)"),
    case("objective-fraction-zero",
         "6:16: slos[0].objective: 0 is outside (0, 100); the objective is a percent, "
         "e.g. 99.9 for 99.9%",
         id="objective 0 is outside (0, 100)"),
    case("latency-threshold-not-duration",
         f"11:20: slos[0].sli.latency.threshold: 'fast' is not a duration; {NOT_A_DURATION}",
         id="a latency threshold that is a word, not a duration"),
    case("latency-threshold-number",
         "11:20: slos[0].sli.latency.threshold: expected a duration with its unit, e.g. 500ms, "
         "5m, 1h, got float 0.5",
         id="a latency threshold given as a bare number asks for a unit"),
    case("bad-period",
         "7:13: slos[0].period: '30days' is not a period; write whole days or weeks, "
         "e.g. 7d, 28d, 30d, 4w",
         id="a period that is not whole days or weeks"),
    case("period-number",
         "7:13: slos[0].period: expected a period in days or weeks, e.g. 28d, 30d, 4w, got int 30",
         id="a period given as a bare number asks for days or weeks"),
    case("tier-window-not-duration",
         f"13:41: slos[0].alerting.tiers[0].long_window: '1hour' is not a duration; "
         f"{NOT_A_DURATION}",
         id="a tier window that is not a duration"),
    # --- windows against the period, tiers that can never fire
    case("period-shorter-than-window",
         "15:11: slos[0].alerting.tiers[1]: period 2d is shorter than the ticket tier 3d/6h's "
         "long window; shorten its long_window",
         id="a custom tier whose long window is longer than the period"),
    case("tier-never-fires",
         "6:16: slos[0].objective: page tier 1h/5m can never fire: it needs a burn rate of "
         "14.4x, but at objective 90% even 100% errors burn only 10x; raise the objective, or "
         "set 'alerting.tiers' with a smaller budget_percent",
         id="at 90% the default 14.4x page tier can never fire, the 6x one can"),
    case("objective-as-fraction",
         "6:16: slos[0].objective: the objective is a percent: 0.995 means 0.995%, at which "
         "even 100% errors burn only 1.01x and page tier 1h/5m (14.4x), page tier 6h/30m (6x) "
         "can never fire; did you mean 99.5?",
         id="an objective written as a fraction suggests the percent once, not per tier"),
    case("custom-tier-never-fires",
         "14:11: slos[0].alerting.tiers[0]: page tier 1h/5m can never fire: it needs a burn "
         "rate of 67.2x, but at objective 95% even 100% errors burn only 20x; raise the "
         "objective, or lower the tier's budget_percent",
         id="a custom tier that can never fire is reported at that tier"),
    case("tier-short-not-shorter",
         "13:11: slos[0].alerting.tiers[0]: page tier 1h/1h: short_window must be shorter than "
         "long_window (the SRE Workbook uses 1/12 of it)",
         id="a custom tier whose short window equals its long window"),
    case("disabled-tier-then-bad-tier",
         "14:11: slos[0].alerting.tiers[1]: ticket tier 6h/6h: short_window must be shorter "
         "than long_window (the SRE Workbook uses 1/12 of it)",
         id="after a disabled tier, the bad tier is still located by its own index"),
    case("tier-window-under-5m",
         f"15:25: slos[0].alerting.tiers[0].short_window: page tier 1h/1m: {WHOLE_MINUTES}",
         id="a tier window shorter than the 5m base window"),
    case("tier-window-not-whole-minutes",
         f"14:24: slos[0].alerting.tiers[0].long_window: page tier 1h30s/5m: {WHOLE_MINUTES}",
         id="a tier window that is not whole minutes"),
    case("tier-bad-severity",
         "13:22: slos[0].alerting.tiers[0].severity: got 'critical'; input should be 'page' or "
         "'ticket'",
         id="a tier severity other than page or ticket"),
    case("tier-budget-zero",
         "13:79: slos[0].alerting.tiers[0].budget_percent: got 0; input should be greater than 0",
         id="a tier that spends no budget"),
    # --- names and labels
    case("duplicate-slo-name",
         "11:11: slos[1].name: duplicate SLO name 'checkout-success' (first at line 5); names "
         "are unique per service",
         id="two SLOs with one name in a file"),
    case("invalid-slo-name",
         f"5:11: slos[0].name: 'Checkout_Success' {BAD_NAME}",
         id="an SLO name with capitals and an underscore"),
    case("invalid-service-name",
         f"2:10: service: 'checkout-' {BAD_NAME}",
         id="a service name ending in a dash"),
    case("label-name-invalid",
         "8:7: slos[0].labels.cost-center: 'cost-center' is not a Prometheus label name; use "
         "letters, digits and '_', not starting with a digit",
         id="a label name with a dash is reported at the key"),
    case("reserved-label",
         "6:3: labels.severity: label 'severity' is set by the engine; choose another name",
         id="a static label the engine sets itself"),
    case("group-by-reserved-label",
         "11:28: slos[0].sli.ratio.group_by[1]: cannot group by 'service': the engine sets that "
         "label on every series; relabel it in the selector's exporter or group by another "
         "label",
         id="group_by a label the engine adds"),
    case("group-by-twice",
         "11:28: slos[0].sli.ratio.group_by[1]: 'region' is listed twice in group_by",
         id="group_by lists a label twice: the second is reported"),
    case("group-by-static-label",
         "12:20: slos[0].sli.ratio.group_by[0]: cannot group by 'region': it is also a static "
         "label in 'labels'; remove one of them",
         id="group_by a label that is also a static label of the service"),
    # --- SLI kinds
    case("bad-and-good",
         "9:9: slos[0].sli.ratio: give exactly one of 'bad' or 'good' (plus 'total')",
         id="a ratio SLI with both bad and good"),
    case("no-sli-kind",
         "7:10: slos[0].sli: give exactly one SLI kind: ratio, latency, query, bool_gauge or "
         "error_ratio (given: none)",
         id="an SLI with no kind"),
    case("two-sli-kinds",
         "8:7: slos[0].sli: give exactly one SLI kind: ratio, latency, query, bool_gauge or "
         "error_ratio (given: ratio, latency)",
         id="an SLI with two kinds names both"),
    case("latency-bucket-suffix",
         "9:17: slos[0].sli.latency.metric: give the histogram's base name, without the "
         "suffix: 'http_request_duration_seconds'",
         id="a latency metric with the _bucket suffix names the base name"),
    case("latency-selector-with-metric",
         "10:20: slos[0].sli.latency.selector: give only the label matchers here, e.g. "
         "'{job=\"api\"}'; the metric name goes in 'metric'",
         id="a latency selector that repeats the metric name"),
    # --- PromQL selectors and queries: the column is that of the mistake
    case("selector-unclosed-brace",
         "9:62: slos[0].sli.ratio.bad: invalid selector "
         "'checkout_sessions_total{outcome=\"internal_error\"': unclosed '{'; add the closing '}'",
         id="a selector with an unclosed brace, at the end of the selector"),
    case("selector-with-rate",
         "9:18: slos[0].sli.ratio.bad: invalid selector "
         f"'rate(checkout_sessions_total{{outcome=\"internal_error\"}}[5m])': {PLAIN_SELECTOR}",
         id="a selector wrapped in rate(), at the parenthesis"),
    case("selector-range",
         f"10:39: slos[0].sli.ratio.total: invalid selector 'checkout_sessions_total[5m]': "
         f"{PLAIN_SELECTOR}",
         id="a selector with a range, at the bracket"),
    case("selector-bad-regex",
         "9:47: slos[0].sli.ratio.bad: invalid selector "
         "'checkout_sessions_total{outcome=~\"internal_(error\"}': invalid regular expression "
         "'internal_(error': missing ), unterminated subpattern at position 9",
         id="a regex matcher that does not compile, at its value"),
    case("selector-regex-lookahead",
         "10:44: slos[0].sli.ratio.total: invalid selector "
         "'search_requests_total{path=~\"(?!/health).*\"}': invalid regular expression "
         "'(?!/health).*': negative lookahead '(?!' at position 0 is not supported by "
         "Prometheus (RE2 syntax); rewrite it with plain alternatives",
         id="a regex lookahead that Python accepts but Prometheus does not"),
    case("selector-unknown-escape",
         "9:44: slos[0].sli.ratio.bad: invalid selector "
         "'search_requests_total{code=~\"5\\d\\d\"}': unknown escape sequence '\\d'; inside "
         "double quotes write a backslash twice (the regex foo\\.bar is \"foo\\\\.bar\"), or "
         "quote the value with backticks: `foo\\.bar`",
         id="a single backslash in a double-quoted regex, at the backslash"),
    case("selector-unquoted-value",
         "9:46: slos[0].sli.ratio.bad: invalid selector "
         "'checkout_sessions_total{outcome=internal_error}': expected a quoted label value, "
         "e.g. \"value\"",
         id="an unquoted label value, at the value"),
    case("query-without-window",
         f"9:14: slos[0].sli.query.bad: {NEEDS_WINDOW}",
         id="a query SLI with a fixed range instead of {{window}}"),
    case("query-no-window-anywhere",
         f"9:15: slos[0].sli.query.good: {NEEDS_WINDOW}",
         f"10:16: slos[0].sli.query.total: {NEEDS_WINDOW}",
         id="every query field without {{window}} is reported"),
    case("query-unbalanced-parens",
         "9:17: slos[0].sli.query.bad: unclosed '('; add the matching ')'",
         id="a query with an unclosed parenthesis, at that parenthesis"),
    case("query-unknown-function",
         "9:18: slos[0].sli.query.bad: PromQL does not parse: unknown function with name 'rat'",
         id="a misspelt function, named by the PromQL parser, at the function"),
    case("query-by-without-parentheses",
         "9:14: slos[0].sli.query.bad: PromQL does not parse: invalid promql query; look for "
         "a grouping without parentheses ('by (route)', not 'by route'), a misspelt keyword "
         "or a missing operator",
         id="'by route' without parentheses: the PromQL parser's message, at the query"),
    # --- alert names, severities, extra labels and annotations, window sets, PrometheusRule
    case("alert-name-invalid",
         "12:13: slos[0].alerting.name: 'Api Availability Burn' is not a valid alert name; "
         "Prometheus wants a metric-name-like identifier: letters, digits, '_' and ':', not "
         "starting with a digit, e.g. ApiAvailabilityBurn",
         id="an alert name with spaces is refused, as Prometheus would"),
    case("alert-label-severity",
         "12:16: slos[0].alerting.labels.severity: label 'severity' is set by the engine; set "
         "its value with page_alert.severity and ticket_alert.severity",
         id="severity as an extra label points at page_alert/ticket_alert.severity"),
    case("alert-label-reserved",
         "13:18: slos[0].alerting.page_alert.labels.slo: label 'slo' is set by the engine on "
         "every alert; choose another name",
         "13:28: slos[0].alerting.page_alert.labels.long_window: label 'long_window' is set by "
         "the engine on every alert; choose another name",
         id="extra labels may not replace the engine's labels"),
    case("alert-label-clash",
         "15:16: slos[0].alerting.labels.tier: label 'tier' is already set by 'labels' on every "
         "series and alert of the SLO; choose another name, or change it there",
         "17:18: slos[0].alerting.ticket_alert.labels.region: label 'region' is a group_by "
         "label of this SLO, set per group by the engine; choose another name",
         "17:30: slos[0].alerting.ticket_alert.labels.component: label 'component' is already "
         "set by 'labels' on every series and alert of the SLO; choose another name, or change "
         "it there",
         id="extra labels may not replace group_by or static labels"),
    case("alert-annotation-reserved",
         "12:21: slos[0].alerting.annotations.summary: annotation 'summary' is written by the "
         "engine on every alert; choose another name",
         "14:23: slos[0].alerting.page_alert.annotations.runbook_url: annotation 'runbook_url' "
         "is written by the engine on every alert; set the SLO's (or the service's) runbook_url "
         "instead",
         id="extra annotations may not replace summary, description or the links"),
    case("alert-severity-same",
         "13:32: slos[0].alerting.ticket_alert.severity: page and ticket alerts both have "
         "severity 'critical'; give them different values, so Alertmanager and the engine can "
         "tell a page from a ticket",
         id="page and ticket may not share a severity value"),
    case("alert-severity-empty",
         "12:33: slos[0].alerting.ticket_alert.severity: give the severity label's value, e.g. "
         "critical or warning, or leave 'severity' out for the default",
         id="an empty severity value"),
    case("alert-windows-unknown",
         "17:16: slos[0].alerting.windows: unknown alert window set 'fast-7dd'; known sets: "
         "fast-7d, slow-28d",
         id="an unknown window set lists the known ones"),
    case("alert-windows-none-defined",
         "12:16: slos[0].alerting.windows: unknown alert window set 'fast-7d'; this file "
         "defines no alert_windows; add the set under 'alert_windows:' at the top of the file, "
         "or write the tiers under 'tiers'",
         id="a window set in a file without alert_windows says where sets go"),
    case("alert-windows-and-tiers",
         "15:16: slos[0].alerting.windows: give either 'windows' (a set from alert_windows) or "
         f"'tiers', not both; {REMOVE}",
         id="windows and tiers together"),
    case("alert-windows-bad-set",
         "8:7: alert_windows.weekly[0]: page tier 1h/1h: short_window must be shorter than "
         "long_window (the SRE Workbook uses 1/12 of it)",
         "28:16: slos[1].alerting.windows: period 1d is shorter than the long window of the "
         "ticket tier 3d/6h of alert window set 'weekly'; use a set with shorter windows or a "
         "longer period",
         id="a set's mistake once at the set, an SLO's at its 'windows'"),
    case("prometheus-rule-metadata",
         "5:14: prometheus_rule.namespace: 'Monitoring' is not a Kubernetes namespace; use at "
         "most 63 lowercase letters, digits and '-', starting and ending with a letter or "
         "digit, e.g. monitoring",
         "6:57: prometheus_rule.labels.release: 'kube prometheus' is not a Kubernetes label "
         "value; use at most 63 letters, digits, '-', '_' and '.', starting and ending with a "
         "letter or digit",
         id="PrometheusRule namespace and label values as Kubernetes accepts them"),
    case("prometheus-rule-engine-label",
         "5:12: prometheus_rule.labels.app.kubernetes.io/managed-by: label "
         "'app.kubernetes.io/managed-by' is set by the engine on every PrometheusRule it "
         "writes; choose another name",
         id="PrometheusRule labels may not replace the engine's"),
    # --- all at once
    case("several-mistakes",
         f"4:1: team: unknown field 'team'; expected one of: {SERVICE_FIELDS}",
         "5:10: labels.severity: label 'severity' is set by the engine; choose another name",
         "11:62: slos[0].sli.ratio.bad: invalid selector "
         "'checkout_sessions_total{outcome=\"internal_error\"': unclosed '{'; add the closing '}'",
         "14:16: slos[1].objective: 120 is outside (0, 100); the objective is a percent, "
         "e.g. 99.9 for 99.9%",
         f"18:20: slos[1].sli.latency.threshold: 'soon' is not a duration; {NOT_A_DURATION}",
         "19:9: slos[1].sli.latency.gruop_by: unknown field 'gruop_by'; did you mean "
         "'group_by'?",
         "20:11: slos[2].name: duplicate SLO name 'checkout-success' (first at line 7); names "
         "are unique per service",
         f"25:14: slos[2].sli.query.bad: {NEEDS_WINDOW}",
         id="every mistake of a file at once, semantic ones too, in file order"),
    # --- the peers' SLI kinds: Sloth's raw error ratio, Pyrra's bool gauge
    case("peer-sli-kinds",
         f"9:16: slos[0].sli.error_ratio.query: {NEEDS_WINDOW}",
         "14:20: slos[1].sli.error_ratio.query: PromQL does not parse: unknown function with "
         "name 'rat'",
         "21:19: slos[2].alerting.min_events: an error_ratio SLI has no event counts (its query "
         "gives the ratio only), so min_events cannot be checked; remove it, or use a ratio or "
         "query SLI over the counters to guard low traffic",
         "26:45: slos[3].sli.bool_gauge.metric: invalid selector 'probe_success{job=\"blackbox\"'"
         ": unclosed '{'; add the closing '}'",
         "27:20: slos[3].sli.bool_gauge.group_by[0]: cannot group by 'slo': the engine sets "
         "that label on every series; relabel it in the selector's exporter or group by another "
         "label",
         "32:30: slos[4].sli.bool_gauge.metric: invalid selector 'probe_success[5m]': give a "
         "plain selector; the engine counts the gauge's samples over each window itself (use an "
         "error_ratio SLI for other PromQL)",
         id="error_ratio and bool_gauge SLIs: window, parser, min_events, selector, group_by"),
]


@pytest.mark.parametrize(("path", "expected"), BAD_FILES)
def test_bad_file_reports_exactly_these_issues(path: str, expected: list[str]) -> None:
    assert issues_of(path) == expected


def test_every_bad_file_has_a_case() -> None:
    tested = {p.values[0] for p in BAD_FILES}
    on_disk = {p.relative_to(ROOT).as_posix() for p in (ROOT / BAD).glob("*.yaml")}
    assert tested == on_disk
    assert len(on_disk) >= 30


@pytest.mark.parametrize(("paths", "expected"), [
    pytest.param(
        [f"{ACROSS}/duplicate-slo-name"],
        [f"{ACROSS}/duplicate-slo-name/b.yaml:11:11: slos[1].name: duplicate SLO name "
         "'checkout-success': service 'checkout' already defines it in "
         f"{ACROSS}/duplicate-slo-name/a.yaml:5:11"],
        id="one SLO name in two files of a service: the later file points at the earlier"),
    pytest.param(
        [f"{ACROSS}/duplicate-slo-name/b.yaml", f"{ACROSS}/duplicate-slo-name/a.yaml"],
        [f"{ACROSS}/duplicate-slo-name/a.yaml:5:11: slos[0].name: duplicate SLO name "
         "'checkout-success': service 'checkout' already defines it in "
         f"{ACROSS}/duplicate-slo-name/b.yaml:11:11"],
        id="files named on the command line are read in the order given"),
    pytest.param(
        [f"{ACROSS}/owner-differs"],
        [f"{ACROSS}/owner-differs/b.yaml:3:8: owner: service 'checkout' is also defined in "
         f"{ACROSS}/owner-differs/a.yaml:3:8 with a different owner; make them equal"],
        id="one service in two files with different owners"),
])
def test_issues_across_files(paths: list[str], expected: list[str]) -> None:
    assert issues_of(*paths) == expected


def test_different_services_in_different_directories_do_not_clash() -> None:
    services = load_services([f"{CASES}/good_split", f"{ACROSS}/owner-differs/a.yaml"])
    assert [(s.name, len(s.slos)) for s in services] == [("cart", 2), ("checkout", 1)]


def test_service_field_missing_in_the_first_file_is_named(tmp_path: Path) -> None:
    first = (ROOT / f"{CASES}/good_split/a.yaml").read_text()
    (tmp_path / "a.yaml").write_text(first)
    (tmp_path / "b.yaml").write_text(
        first.replace("cart-success", "cart-latency")
        .replace("labels:", "runbook_url: https://runbooks.example.com/cart\nlabels:")
    )
    [issue] = issues_of(str(tmp_path))
    assert issue.endswith(f"b.yaml:4:14: runbook_url: service 'cart' is also defined in "
                          f"{tmp_path / 'a.yaml'} without runbook_url; make them equal")


def test_issues_from_many_files_are_sorted_and_all_reported() -> None:
    paths = [f"{BAD}/objective-100.yaml", f"{BAD}/empty.yaml", f"{BAD}/group-by-twice.yaml"]
    with pytest.raises(SpecError) as caught:
        load_services(paths)
    issues = caught.value.issues
    assert [i.file for i in issues] == sorted(paths)
    assert issues == sorted(issues)
    assert str(caught.value) == "\n".join(str(i) for i in issues)


def test_missing_path_and_empty_directory(tmp_path: Path) -> None:
    assert issues_of(str(tmp_path)) == [f"{tmp_path}:1:1: no SLO files (*.yaml, *.yml) found"]
    [issue] = issues_of(f"{CASES}/no-such-file.yaml")
    assert issue.startswith(f"{CASES}/no-such-file.yaml:1:1: cannot read the file: ")
    assert "No such file" in issue


def test_issue_without_path_leaves_it_out() -> None:
    assert str(SpecIssue("a.yaml", 3, 4, "", "boom")) == "a.yaml:3:4: boom"
    assert str(SpecIssue("a.yaml", 3, 4, "slos[0]", "boom")) == "a.yaml:3:4: slos[0]: boom"


# --- valid files


GOOD = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / CASES / "good").glob("*.yaml"))
EXAMPLES = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "slo_definitions").glob("*.y*ml"))


@pytest.mark.parametrize("path", [*EXAMPLES, *GOOD])
def test_valid_file_loads_without_issues(path: str) -> None:
    [service] = load_services([path])
    assert service.source_file == path
    assert service.slos


def test_all_examples_load_together() -> None:
    services = load_services(["slo_definitions"])
    assert [s.name for s in services] == sorted(s.name for s in services)
    assert len(services) == len(EXAMPLES) >= 5


def slos_by_name(*paths: str) -> dict[str, SLO]:
    return {slo.name: slo for service in load_services(paths) for slo in service.slos}


def test_group_by_and_backtick_regexes() -> None:
    slos = slos_by_name(f"{CASES}/good/group-by.yaml")
    views, latency = slos["page-views"].sli, slos["page-latency"].sli
    assert isinstance(views, RatioSLI) and isinstance(latency, LatencySLI)
    assert views.group_by == ("region", "cluster")
    assert latency.group_by == ("region",)
    assert views.total.render() == 'storefront_requests_total{path!~"/(health|metrics)"}'
    assert latency.bucket.render() == ('storefront_request_duration_seconds_bucket'
                                       '{job="storefront", path!~"/(health|metrics)"}')
    assert latency.threshold_seconds == 1.5


def test_good_instead_of_bad() -> None:
    slos = slos_by_name(f"{CASES}/good/good-instead-of-bad.yaml")
    ratio, query = slos["charge-success"].sli, slos["refunds-on-time"].sli
    assert isinstance(ratio, RatioSLI) and isinstance(query, QuerySLI)
    assert ratio.bad is None and ratio.good is not None
    assert ratio.good.render() == 'payments_charges_total{outcome="ok"}'
    assert query.bad is None and query.good is not None and "{{window}}" in query.good
    assert slos["refunds-on-time"].period == "28d"  # 4w


def test_custom_tiers_skip_disabled_ones() -> None:
    slo = slos_by_name(f"{CASES}/good/custom-tiers.yaml")["exports-success"]
    assert [(t.severity, t.long_window, t.short_window) for t in slo.tiers] == [
        ("page", "6h", "30m"), ("ticket", "1d", "2h")]
    assert [t.burn_rate for t in slo.tiers] == pytest.approx([6, 3])
    assert (slo.min_events, slo.data_absent) == (50, False)


def test_page_false_and_ticket_false_drop_those_tiers() -> None:
    slos = slos_by_name(f"{CASES}/good/page-false.yaml")
    assert {t.severity for t in slos["reports-rendered"].tiers} == {"ticket"}
    assert len(slos["reports-rendered"].tiers) == 2
    nightly = slos["nightly-export"].tiers
    assert [(t.long_window, t.short_window) for t in nightly] == [("12m", "5m")]
    assert [t.burn_rate for t in nightly] == pytest.approx([6])


def test_one_service_in_two_files_becomes_one_service() -> None:
    [service] = load_services([f"{CASES}/good_split"])
    assert service.name == "cart"
    assert service.source_file == f"{CASES}/good_split/a.yaml, {CASES}/good_split/b.yaml"
    assert [s.name for s in service.slos] == ["cart-success", "payment-success"]
    assert {s.source_file for s in service.slos} == {f"{CASES}/good_split/a.yaml",
                                                    f"{CASES}/good_split/b.yaml"}


# --- the model: fractions, seconds, thresholds, labels


def one_slo(tmp_path: Path, *, objective: str = "99.5", period: str = "30d",
            extra: str = "") -> SLO:
    (tmp_path / "s.yaml").write_text(
        "apiVersion: slo-engine/v1\nservice: svc\nowner: team\nlabels: {zone: a, tier: '1'}\n"
        f"slos:\n  - name: s\n    objective: {objective}\n    period: {period}\n"
        "    labels: {env: prod, app: web}\n"
        "    sli:\n      ratio:\n        bad: x_total{code=\"500\"}\n        total: x_total\n"
        + extra
    )
    [service] = load_services([tmp_path / "s.yaml"])
    [slo] = service.slos
    return slo


def test_objective_is_a_fraction(tmp_path: Path) -> None:
    slo = one_slo(tmp_path, objective="99.95")
    assert slo.objective == pytest.approx(0.9995)
    assert slo.error_budget == pytest.approx(0.0005)
    assert slo.objective_percent == "99.95"


@pytest.mark.parametrize(("period", "seconds", "shown"), [
    ("30d", 30 * 86400, "30d"),
    ("28d", 28 * 86400, "28d"),
    ("4w", 28 * 86400, "28d"),
    ("7d", 7 * 86400, "7d"),
    ("1w", 7 * 86400, "7d"),
])
def test_period_seconds(tmp_path: Path, period: str, seconds: int, shown: str) -> None:
    slo = one_slo(tmp_path, period=period)
    assert slo.period_seconds == seconds
    assert slo.period == shown


# The default tiers per period, as docs/spec.md shows them: (severity, long, short, burn rate).
DEFAULT_TIER_TABLE = {
    "1d": [("page", "12m", "5m", "6"), ("ticket", "48m", "5m", "3"),
           ("ticket", "2h24m", "12m", "1")],
    "7d": [("page", "14m", "5m", "14.4"), ("page", "1h24m", "7m", "6"),
           ("ticket", "5h36m", "28m", "3"), ("ticket", "16h48m", "1h24m", "1")],
    "14d": [("page", "28m", "5m", "14.4"), ("page", "2h48m", "14m", "6"),
            ("ticket", "11h12m", "56m", "3"), ("ticket", "1d9h36m", "2h48m", "1")],
    "28d": [("page", "56m", "5m", "14.4"), ("page", "5h36m", "28m", "6"),
            ("ticket", "22h24m", "1h52m", "3"), ("ticket", "2d19h12m", "5h36m", "1")],
    "30d": [("page", "1h", "5m", "14.4"), ("page", "6h", "30m", "6"),
            ("ticket", "1d", "2h", "3"), ("ticket", "3d", "6h", "1")],
}


@pytest.mark.parametrize("period", DEFAULT_TIER_TABLE)
def test_default_tiers_per_period(tmp_path: Path, period: str) -> None:
    slo = one_slo(tmp_path, period=period)
    assert [(t.severity, t.long_window, t.short_window, threshold_literal(t))
            for t in slo.tiers] == DEFAULT_TIER_TABLE[period]


def test_the_spec_doc_shows_the_default_tier_table() -> None:
    """docs/spec.md's table is this one, so it cannot drift from the code."""
    doc = (ROOT / "docs" / "spec.md").read_text(encoding="utf-8")
    for period, tiers in DEFAULT_TIER_TABLE.items():
        cells = " | ".join(f"{severity} {long}/{short} {burn}x"
                           for severity, long, short, burn in tiers)
        assert f"| {period} | {cells} |" in doc


def test_30d_default_tiers_are_the_workbook_ones(tmp_path: Path) -> None:
    slo = one_slo(tmp_path, period="30d")
    assert [t.burn_rate for t in slo.tiers] == [14.4, 6, 3, 1]
    assert [t.budget_fraction for t in slo.tiers] == pytest.approx([0.02, 0.05, 0.1, 0.1])
    assert [(t.long_seconds, t.short_seconds) for t in slo.tiers] == [
        (3600, 300), (21600, 1800), (86400, 7200), (259200, 21600)]
    assert slo.windows == ("5m", "30m", "1h", "2h", "6h", "1d", "3d")


@pytest.mark.parametrize("days", [*range(1, 63), 90, 91, 180, 365, 366, 730])
def test_default_tiers_never_go_below_1x_on_any_period(days: int) -> None:
    """Every whole-day period: the Workbook's factors (14.4/6/3/1) and budget shares, windows
    in whole minutes of at least 5m, short shorter than long, long within the period."""
    period = days * 86400
    policies = default_tiers(period)
    tiers = [alert_tier(p, period) for p in policies]
    assert len(tiers) == (4 if days >= 3 else 3)
    assert [threshold_literal(t) for t in tiers] == ["14.4", "6", "3", "1"][-len(tiers):]
    assert [p.budget_percent for p in policies] == [2, 5, 10, 10][-len(tiers):]
    for tier in tiers:
        assert tier.burn_rate >= 1
        assert tier.short_seconds >= 300 and tier.short_seconds % 60 == 0
        assert tier.long_seconds % 60 == 0
        assert tier.short_seconds < tier.long_seconds <= period
        assert parse_duration(tier.long_window) == tier.long_seconds


def test_labels_are_slo_service_then_spec_labels(tmp_path: Path) -> None:
    slo = one_slo(tmp_path)
    assert slo.labels == (("slo", "s"), ("service", "svc"), ("tier", "1"), ("zone", "a"),
                          ("app", "web"), ("env", "prod"))


def test_tier_windows_are_normalised(tmp_path: Path) -> None:
    slo = one_slo(tmp_path, extra=(
        "    alerting:\n      tiers:\n"
        "        - {severity: page, long_window: 60m, short_window: 300s, budget_percent: 2}\n"))
    [tier] = slo.tiers
    assert (tier.long_window, tier.short_window) == ("1h", "5m")
    assert tier.burn_rate == pytest.approx(14.4)


def test_service_carries_owner_and_urls() -> None:
    [service] = load_services(["slo_definitions/checkout.yaml"])
    assert isinstance(service, Service)
    assert (service.name, service.owner) == ("checkout", "commerce-platform")
    [slo] = service.slos
    assert slo.runbook_url == "https://runbooks.example.com/checkout"
    assert slo.dashboard_url == "https://grafana.example.com/d/checkout"


WEEKLY_TIERS = (
    "    alerting:\n      tiers:\n"
    "        - {severity: page, long_window: 1h, short_window: 5m, budget_percent: 2}\n"
    "        - {severity: ticket, long_window: 3d, short_window: 6h, budget_percent: 10}\n"
    "        - {severity: ticket, long_window: 1d, short_window: 2h, budget_percent: 1,"
    " enabled: false}\n")


def test_a_custom_tier_below_1x_is_a_located_warning_not_an_error(tmp_path: Path) -> None:
    (tmp_path / "s.yaml").write_text(
        "apiVersion: slo-engine/v1\nservice: svc\nowner: team\nslos:\n  - name: s\n"
        "    objective: 99.9\n    period: 7d\n"
        "    sli:\n      ratio:\n        bad: x_total{code=\"500\"}\n        total: x_total\n"
        + WEEKLY_TIERS)
    [service], warnings = load_checked([tmp_path / "s.yaml"])
    assert [t.name for t in service.slos[0].tiers] == ["page 1h/5m", "ticket 3d/6h"]
    assert [str(w).split(": ", 1)[1] for w in warnings] == [
        "slos[0].alerting.tiers[1]: warning: ticket tier 3d/6h fires at 0.2333x, below 1x: "
        "it opens on burns that leave budget at the end of the 7d period; raise "
        "budget_percent to at least 42.86, shorten long_window to at most 16h48m, or drop "
        "'alerting.tiers' for the default tiers of a 7d period"]
    assert (warnings[0].line, warnings[0].column) == (15, 11)


def test_warnings_ride_along_with_errors(tmp_path: Path) -> None:
    (tmp_path / "s.yaml").write_text(
        "apiVersion: slo-engine/v1\nservice: svc\nowner: team\nslos:\n  - name: s\n"
        "    objective: 99.9\n    period: 7d\n"
        "    sli:\n      ratio:\n        bad: x_total{code=\"500\"\n        total: x_total\n"
        + WEEKLY_TIERS)
    with pytest.raises(SpecError) as caught:
        load_services([tmp_path / "s.yaml"])
    assert len(caught.value.issues) == 1
    assert [w.path for w in caught.value.warnings] == ["slos[0].alerting.tiers[1]"]


def test_default_and_at_least_1x_custom_tiers_give_no_warning(tmp_path: Path) -> None:
    for period in ("1d", "7d", "14d", "28d", "30d", "90d"):
        (tmp_path / "s.yaml").write_text(
            "apiVersion: slo-engine/v1\nservice: svc\nowner: team\nslos:\n  - name: s\n"
            f"    objective: 99.9\n    period: {period}\n"
            "    sli:\n      ratio:\n        bad: x_total{code=\"500\"}\n        total: x_total\n")
        assert load_checked([tmp_path / "s.yaml"])[1] == []
    assert load_checked(["slo_definitions", f"{CASES}/good"])[1] == []


def test_alerting_fields_reach_the_model() -> None:
    slos = slos_by_name(f"{CASES}/good/alert-routing.yaml")
    alerting = slos["availability"].alerting
    assert alerting.name == "ApiAvailabilityBurn"
    assert alerting.page.severity == "critical" and alerting.ticket.severity == "warning"
    assert alerting.page.labels == (("routing_key", "api-oncall"), ("team", "platform"))
    assert alerting.ticket.labels == (("team", "platform"),)
    assert alerting.page.annotations == (("channel", "#api"),)
    assert alerting.kind_of("critical") == "page" and alerting.kind_of("page") is None
    assert slos["availability"].runbook_url == "https://runbooks.example.com/api/availability"
    assert slos["latency"].runbook_url == "https://runbooks.example.com/api"  # the service's
    assert slos["latency"].alerting.name == "SLOErrorBudgetBurn"
    assert slos["latency"].dashboard_url is None


def test_a_window_set_gives_its_tiers_to_every_slo_that_names_it() -> None:
    slos = slos_by_name(f"{CASES}/good/alert-windows.yaml")
    assert [(t.name, threshold_literal(t)) for t in slos["exports-success"].tiers] == [
        ("page 1h/5m", "13.44"), ("page 6h/30m", "3.5"), ("ticket 1d/2h", "1.4"),
        ("ticket 3d/6h", "1.003333333")]
    assert [t.name for t in slos["imports-success"].tiers] == ["page 1h/5m", "page 6h/30m"]
    assert len(slos["schedules-success"].tiers) == 4  # the defaults of a 30d period


def test_prometheus_rule_metadata_reaches_the_service() -> None:
    [service] = load_services([f"{CASES}/good/prometheus-rule.yaml"])
    assert service.namespace == "monitoring"
    assert service.rule_labels == (("app.kubernetes.io/part-of", "slos"),
                                   ("release", "kube-prometheus-stack"))


def test_peer_sli_kinds_load_into_the_model() -> None:
    [service] = load_services([f"{CASES}/good/peer-sli-kinds.yaml"])
    gauge, ratio = (slo.sli for slo in service.slos)
    assert isinstance(gauge, BoolGaugeSLI) and isinstance(ratio, ErrorRatioSLI)
    assert gauge.metric.metric == "probe_success" and gauge.group_by == ("instance",)
    assert service.slos[0].group_by == ("instance",) and service.slos[1].group_by == ()
    assert ratio.query.startswith("sum(rate(http_requests_total{code=~\"5..\"}[{{window}}]))")
