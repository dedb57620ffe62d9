"""The SLO file format (`apiVersion: slo-engine/v1`), one pydantic model per YAML mapping.

These models mirror the file and nothing else: derived values (fractions, seconds, burn-rate
thresholds) live in `model`. Field descriptions become the JSON Schema editors complete from.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from slo_engine.spec.conventions import API_VERSION
from slo_engine.spec.durations import parse_duration

NAME_PATTERN = r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$"
LABEL_NAME_PATTERN = r"^[a-zA-Z_][a-zA-Z0-9_]*$"
PERIOD_PATTERN = r"^[1-9][0-9]*[dw]$"
# Prometheus rejects an alerting rule whose name is not a valid metric name.
ALERT_NAME_PATTERN = r"^[a-zA-Z_:][a-zA-Z0-9_:]*$"
# Kubernetes object metadata: a namespace is a DNS label; a label key is an optional DNS
# subdomain prefix and a name; a label value is at most 63 characters of the same alphabet.
K8S_NAMESPACE_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
K8S_LABEL_KEY_PATTERN = (r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
                         r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
K8S_LABEL_VALUE_PATTERN = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"


def _duration(text: str) -> str:
    if parse_duration(text) <= 0:
        raise ValueError(f"{text!r} must be longer than zero")
    return text


def _period(text: str) -> str:
    if not re.match(PERIOD_PATTERN, text):
        raise ValueError(
            f"{text!r} is not a period; write whole days or weeks, e.g. 7d, 28d, 30d, 4w"
        )
    return text


def _name(text: str) -> str:
    if not re.match(NAME_PATTERN, text) or len(text) > 63:
        raise ValueError(
            f"{text!r} is not a valid name; use at most 63 lowercase letters, digits and '-', "
            "starting and ending with a letter or digit, e.g. checkout-success"
        )
    return text


def _label_name(text: str) -> str:
    if not re.match(LABEL_NAME_PATTERN, text):
        raise ValueError(
            f"{text!r} is not a Prometheus label name; use letters, digits and '_', "
            "not starting with a digit"
        )
    if text.startswith("__"):
        raise ValueError(f"{text!r}: label names starting with '__' are reserved by Prometheus")
    return text


def _alert_name(text: str) -> str:
    if not re.match(ALERT_NAME_PATTERN, text):
        raise ValueError(
            f"{text!r} is not a valid alert name; Prometheus wants a metric-name-like "
            "identifier: letters, digits, '_' and ':', not starting with a digit, e.g. "
            "ApiAvailabilityBurn"
        )
    return text


def _severity(text: str) -> str:
    if not text.strip():
        raise ValueError("give the severity label's value, e.g. critical or warning, or leave "
                         "'severity' out for the default")
    return text


def _k8s_namespace(text: str) -> str:
    if not re.match(K8S_NAMESPACE_PATTERN, text) or len(text) > 63:
        raise ValueError(
            f"{text!r} is not a Kubernetes namespace; use at most 63 lowercase letters, digits "
            "and '-', starting and ending with a letter or digit, e.g. monitoring"
        )
    return text


def _k8s_label_key(text: str) -> str:
    name = text.rsplit("/", 1)[-1]
    if not re.match(K8S_LABEL_KEY_PATTERN, text) or len(name) > 63 or len(text) > 316:
        raise ValueError(
            f"{text!r} is not a Kubernetes label key; write [prefix/]name, the name at most 63 "
            "letters, digits, '-', '_' and '.', e.g. release or app.kubernetes.io/part-of"
        )
    return text


def _k8s_label_value(text: str) -> str:
    if not re.match(K8S_LABEL_VALUE_PATTERN, text) or len(text) > 63:
        raise ValueError(
            f"{text!r} is not a Kubernetes label value; use at most 63 letters, digits, '-', "
            "'_' and '.', starting and ending with a letter or digit"
        )
    return text


Duration = Annotated[
    str,
    AfterValidator(_duration),
    Field(json_schema_extra={"pattern": r"^([0-9]+(ms|s|m|h|d|w))+$"}),
]
Period = Annotated[
    str, AfterValidator(_period), Field(json_schema_extra={"pattern": PERIOD_PATTERN})
]
Name = Annotated[
    str, AfterValidator(_name),
    Field(json_schema_extra={"pattern": NAME_PATTERN, "maxLength": 63}),
]
LabelName = Annotated[
    str, AfterValidator(_label_name), Field(json_schema_extra={"pattern": LABEL_NAME_PATTERN})
]

AlertName = Annotated[
    str, AfterValidator(_alert_name), Field(json_schema_extra={"pattern": ALERT_NAME_PATTERN})
]
K8sNamespace = Annotated[
    str, AfterValidator(_k8s_namespace),
    Field(json_schema_extra={"pattern": K8S_NAMESPACE_PATTERN, "maxLength": 63}),
]
K8sLabelKey = Annotated[
    str, AfterValidator(_k8s_label_key), Field(json_schema_extra={"pattern": K8S_LABEL_KEY_PATTERN})
]
K8sLabelValue = Annotated[
    str, AfterValidator(_k8s_label_value),
    Field(json_schema_extra={"pattern": K8S_LABEL_VALUE_PATTERN, "maxLength": 63}),
]

# Keys of a labels mapping must match LabelName's pattern (patternProperties alone allows any).
_ONLY_LABEL_NAMES: dict[str, Any] = {"additionalProperties": False}


class _SpecModel(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class RatioSLISpec(_SpecModel):
    """Counters of events; the engine wraps each selector in rate() itself."""

    bad: str | None = Field(None, description="Selector of the counter of bad events, e.g. "
                            "http_requests_total{code=~\"5..\"}. Give bad or good, not both.")
    good: str | None = Field(None, description="Selector of the counter of good events.")
    total: str = Field(description="Selector of the counter of all valid events.")
    group_by: list[LabelName] = Field(
        default_factory=list, description="Labels to split the SLO by: one SLI per label value."
    )

    @model_validator(mode="after")
    def _bad_or_good(self) -> RatioSLISpec:
        if (self.bad is None) == (self.good is None):
            raise ValueError("give exactly one of 'bad' or 'good' (plus 'total')")
        return self


class LatencySLISpec(_SpecModel):
    """A Prometheus histogram: good events are those in the bucket at `threshold`."""

    metric: str = Field(description="Histogram name without _bucket/_count, e.g. "
                        "http_request_duration_seconds.")
    selector: str = Field("{}", description="Label matchers for the histogram, e.g. "
                          "'{job=\"api\", code!~\"4..\"}'.")
    threshold: Duration = Field(description="Latency a good event stays under; must be a bucket "
                                "boundary of the histogram, e.g. 500ms.")
    group_by: list[LabelName] = Field(default_factory=list)


class QuerySLISpec(_SpecModel):
    """Arbitrary PromQL returning event rates; `{{window}}` is replaced by each window."""

    bad: str | None = Field(None, description="PromQL: rate of bad events, with {{window}}.")
    good: str | None = Field(None, description="PromQL: rate of good events, with {{window}}.")
    total: str = Field(description="PromQL for the rate of all events, with {{window}}.")

    @model_validator(mode="after")
    def _bad_or_good(self) -> QuerySLISpec:
        if (self.bad is None) == (self.good is None):
            raise ValueError("give exactly one of 'bad' or 'good' (plus 'total')")
        return self


class BoolGaugeSLISpec(_SpecModel):
    """A 0/1 gauge (Pyrra's bool_gauge): every sample is an event, 1 good and 0 bad."""

    metric: str = Field(description="Selector of a gauge that is 1 when good and 0 when bad, "
                        "e.g. probe_success{job=\"blackbox\"}.")
    group_by: list[LabelName] = Field(
        default_factory=list, description="Labels to split the SLO by: one SLI per label value."
    )


class ErrorRatioSLISpec(_SpecModel):
    """PromQL that already gives the error ratio (Sloth's raw SLI); no event counts, so
    windows and the budget weigh every minute the same."""

    query: str = Field(description="PromQL giving the error ratio (0..1) over {{window}}, e.g. "
                       "sum(rate(errors_total[{{window}}])) / "
                       "sum(rate(requests_total[{{window}}])).")


SLI_KINDS = ("ratio", "latency", "query", "bool_gauge", "error_ratio")


class SLISpec(_SpecModel):
    ratio: RatioSLISpec | None = None
    latency: LatencySLISpec | None = None
    query: QuerySLISpec | None = None
    bool_gauge: BoolGaugeSLISpec | None = None
    error_ratio: ErrorRatioSLISpec | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> SLISpec:
        kinds = [k for k in SLI_KINDS if getattr(self, k) is not None]
        if len(kinds) != 1:
            given = ", ".join(kinds) if kinds else "none"
            raise ValueError("give exactly one SLI kind: ratio, latency, query, bool_gauge or "
                             f"error_ratio (given: {given})")
        return self


class TierSpec(_SpecModel):
    """One multiwindow burn-rate alert: fire when both windows burn faster than the threshold."""

    severity: Literal["page", "ticket"]
    long_window: Duration
    short_window: Duration
    budget_percent: float = Field(
        gt=0, le=100, description="Percent of the period's error budget that, spent within "
        "long_window, fires the alert. The burn-rate threshold is budget_percent/100 × period "
        "/ long_window (2% in 1h of 30d = 14.4)."
    )
    enabled: bool = True


class TierAlertSpec(_SpecModel):
    """What the alerts of one severity carry, for routing in Alertmanager (Sloth's
    page_alert/ticket_alert)."""

    severity: Annotated[str, AfterValidator(_severity)] | None = Field(
        None, description="Value of the `severity` label on these tiers' alerts "
        "(default page for page tiers, ticket for ticket tiers), e.g. critical or warning.")
    labels: dict[LabelName, str] = Field(
        default_factory=dict, description="Extra labels on these tiers' alerts, e.g. "
        "{routing_key: api-oncall}; they may not replace a label the engine sets.",
        json_schema_extra=_ONLY_LABEL_NAMES)
    annotations: dict[LabelName, str] = Field(
        default_factory=dict, description="Extra annotations on these tiers' alerts; not "
        "summary, description, runbook_url or dashboard_url.",
        json_schema_extra=_ONLY_LABEL_NAMES)


class AlertingSpec(_SpecModel):
    name: AlertName | None = Field(
        None, description="Name of this SLO's burn-rate alerts (default SLOErrorBudgetBurn), "
        "e.g. ApiAvailabilityBurn.")
    labels: dict[LabelName, str] = Field(
        default_factory=dict, description="Extra labels on every burn alert of this SLO, e.g. "
        "{team: platform}; they may not replace a label the engine sets.",
        json_schema_extra=_ONLY_LABEL_NAMES)
    annotations: dict[LabelName, str] = Field(
        default_factory=dict, description="Extra annotations on every burn alert of this SLO, "
        "e.g. {channel: '#api'}; not summary, description, runbook_url or dashboard_url.",
        json_schema_extra=_ONLY_LABEL_NAMES)
    page_alert: TierAlertSpec = Field(
        default_factory=TierAlertSpec, description="Severity value, labels and annotations "
        "of the page tiers' alerts.")
    ticket_alert: TierAlertSpec = Field(
        default_factory=TierAlertSpec, description="Severity value, labels and annotations "
        "of the ticket tiers' alerts (and of SLODataAbsent's severity).")
    windows: Name | None = Field(
        None, description="Use the named tier set from the file's alert_windows instead of the "
        "default tiers; not together with tiers.")
    page: bool = Field(True, description="Generate the page tiers.")
    ticket: bool = Field(True, description="Generate the ticket tiers.")
    min_events: int = Field(0, ge=0, description="No burn alert while the long window holds "
                            "fewer events than this (protects low-traffic SLOs from one error).")
    data_absent: bool = Field(True, description="Alert when the SLI's series are absent for 10m.")
    tiers: list[TierSpec] | None = Field(
        None, description="Replace the default SRE Workbook tiers (page 1h/5m 2%, page 6h/30m 5%, "
        "ticket 1d/2h 10%, ticket 3d/6h 10%)."
    )


# Named tier sets, shared by the SLOs of a file through `alerting.windows`.
AlertWindowSets = dict[Name, Annotated[list[TierSpec], Field(min_length=1)]]


def _objective(value: float) -> float:
    if not 0 < value < 100:
        raise ValueError(
            f"{value:g} is outside (0, 100); the objective is a percent, e.g. 99.9 for 99.9%"
        )
    return value


class SLOSpec(_SpecModel):
    name: Name = Field(description="Unique within the service; [a-z0-9-].")
    description: str = ""
    objective: Annotated[float, AfterValidator(_objective)] = Field(
        description="Target percent of good events, e.g. 99.9.",
        json_schema_extra={"exclusiveMinimum": 0, "exclusiveMaximum": 100},
    )
    period: Period = Field("30d", description="Rolling compliance period, e.g. 28d, 30d, 4w.")
    sli: SLISpec
    labels: dict[LabelName, str] = Field(default_factory=dict,
                                         description="Extra labels for this SLO's series.",
                                         json_schema_extra=_ONLY_LABEL_NAMES)
    runbook_url: str | None = Field(None, description="This SLO's runbook, on its alerts and "
                                    "pages; overrides the service's runbook_url.")
    dashboard_url: str | None = Field(None, description="This SLO's dashboard, on its alerts "
                                      "and pages; overrides the service's dashboard_url.")
    alerting: AlertingSpec = Field(default_factory=AlertingSpec)


class PrometheusRuleSpec(_SpecModel):
    """Metadata of the PrometheusRule object `compile --format prometheus-operator` writes."""

    namespace: K8sNamespace | None = Field(
        None, description="metadata.namespace of the PrometheusRule, e.g. monitoring.")
    labels: dict[K8sLabelKey, K8sLabelValue] = Field(
        default_factory=dict, description="metadata.labels, e.g. {release: "
        "kube-prometheus-stack} for the Prometheus ruleSelector to pick the object up.")


class ServiceSpec(_SpecModel):
    """One SLO file: a service, its owner and its SLOs."""

    api_version: Literal["slo-engine/v1"] = Field(alias="apiVersion")
    service: Name
    owner: str = Field(min_length=1, description="Owning team; pages route by owner.")
    runbook_url: str | None = None
    dashboard_url: str | None = None
    labels: dict[LabelName, str] = Field(
        default_factory=dict, description="Copied onto every generated series and alert.",
        json_schema_extra=_ONLY_LABEL_NAMES,
    )
    depends_on: list[Name] = Field(
        default_factory=list,
        description="Services this one depends on: their changes are shown in its pages too.")
    alert_windows: AlertWindowSets = Field(
        default_factory=dict, description="Named tier sets that SLOs of this file use with "
        "alerting.windows, e.g. {fast-7d: [{severity: page, long_window: 1h, short_window: 5m, "
        "budget_percent: 8}]}.")
    prometheus_rule: PrometheusRuleSpec | None = Field(
        None, description="Namespace and labels of the PrometheusRule written by compile "
        "--format prometheus-operator.")
    slos: list[SLOSpec] = Field(min_length=1)

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, populate_by_name=False,
                              title="slo-engine SLO file")


def json_schema() -> dict[str, Any]:
    """The JSON Schema of an SLO file, for yaml-language-server and other editors."""
    schema = ServiceSpec.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://slo-engine.dev/schema/slo-engine-v1.json"
    schema["properties"]["apiVersion"]["const"] = API_VERSION
    return schema


def json_schema_text() -> str:
    return json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"
