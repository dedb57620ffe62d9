"""Release gates on the error budget: an `ErrorBudgetPolicy` file and the decision it gives.

A CD pipeline asks one question before it releases a service: does its error budget allow
it? The policy answers per SLO, with the first of its ordered conditions that holds, and the
service gets the strictest answer of its SLOs:

- `ship`: release;
- `hold`: release only with an override, whose reason is recorded as a change event so the
  next page shows it;
- `freeze`: only fixes and rollbacks ship, i.e. an override that declares the release a fix.

Thresholds compare strictly, as alert tiers compare burn rates: `remaining_below: 25` holds
at 24.99 % left and not at 25 %, `burn_rate_above: 6` holds at 6.01x and not at 6x. Values
are rounded to 1e-9 (percent, burn rate) first, so a budget that is exactly at a threshold
on paper is at it here too, whatever the float arithmetic that computed it.

The only file read is the policy in `load_budget_policy`; `parse_budget_policy` and `decide`
are pure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from slo_engine.budget.accounting import BudgetStatus, iso_utc
from slo_engine.changes.events import Change, parse_change
from slo_engine.errors import SpecError
from slo_engine.spec.conventions import API_VERSION
from slo_engine.spec.document import Duration, LabelName
from slo_engine.spec.durations import format_duration, parse_duration
from slo_engine.spec.loader import SpecDocument, format_path, model_issues, read_yaml_file

POLICY_KIND = "ErrorBudgetPolicy"
BUILT_IN = "built-in policy"

Decision = Literal["ship", "hold", "freeze"]
Outcome = Literal["ship", "hold", "freeze", "undecided"]
STRICTNESS: dict[Decision, int] = {"ship": 0, "hold": 1, "freeze": 2}

# Exit codes of `slo-engine gate`: a pipeline step passes only on SHIP.
SHIP, HOLD, UNDECIDED = 0, 1, 2
_PRECISION = 9  # decimals kept before comparing with a threshold


# --- the policy file ------------------------------------------------------------------------


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class ConditionSpec(_Spec):
    """One test of an SLO's budget; every field given must hold (list two for 'or')."""

    remaining_below: float | None = Field(
        None, description="Percent of the period's error budget left, strictly below this "
        "(may be negative: -10 means overspent by a tenth).")
    burn_rate_above: float | None = Field(
        None, gt=0, description="Burn rate over `window`, strictly above this.")
    window: Duration | None = Field(
        None, description="Window of burn_rate_above: 5m, 1h or one of the SLO's alert "
        "windows (default 1h).")
    firing: list[Literal["page", "ticket"]] | None = Field(
        None, min_length=1, description="An alert tier of one of these severities fires.")
    decision: Literal["ship", "hold", "freeze"]
    message: str | None = Field(None, min_length=1, description="Shown with the decision.")

    @model_validator(mode="after")
    def _has_a_test(self) -> ConditionSpec:
        if self.remaining_below is None and self.burn_rate_above is None and not self.firing:
            raise ValueError("a condition needs at least one of remaining_below, "
                             "burn_rate_above or firing")
        if self.window is not None and self.burn_rate_above is None:
            raise ValueError("window is the window of burn_rate_above; give burn_rate_above "
                             "too, or remove window")
        return self


class ServicePolicySpec(_Spec):
    """The conditions of the SLOs it matches: by service, by label, or every SLO."""

    services: list[str] | None = Field(None, min_length=1, description="Services it applies "
                                       "to; omit for every service.")
    labels: dict[LabelName, str] | None = Field(
        None, description="Only SLOs carrying these labels (spec labels, e.g. tier: \"1\", "
        "or group_by labels).")
    conditions: list[ConditionSpec] = Field(description="In order; the first that holds "
                                            "decides; none holds: ship.")


class PolicyFileSpec(_Spec):
    """`kind: ErrorBudgetPolicy`: policies in order, the first matching an SLO applies."""

    api_version: Literal["slo-engine/v1"] = Field(alias="apiVersion")
    kind: Literal["ErrorBudgetPolicy"]
    policies: list[ServicePolicySpec] = Field(min_length=1)


@dataclass(frozen=True)
class Condition:
    decision: Decision
    message: str
    remaining_below: float | None = None  # percent
    burn_rate_above: float | None = None
    window: str = "1h"
    firing: tuple[str, ...] = ()
    where: str = ""  # file:line and field path, or the built-in policy

    def describe(self) -> str:
        """The test in words, e.g. 'less than 25% of the error budget left'."""
        parts = []
        if self.remaining_below is not None:
            parts.append(f"less than {self.remaining_below:g}% of the error budget left")
        if self.burn_rate_above is not None:
            parts.append(f"{self.window} burn rate above {self.burn_rate_above:g}x")
        if self.firing:
            parts.append(f"a {' or '.join(self.firing)} alert firing")
        return " and ".join(parts)


@dataclass(frozen=True)
class ServicePolicy:
    services: tuple[str, ...]  # empty: every service
    labels: tuple[tuple[str, str], ...]
    conditions: tuple[Condition, ...]
    where: str = ""

    def applies(self, service: str, labels: Mapping[str, str]) -> bool:
        return (not self.services or service in self.services) and all(
            labels.get(name) == value for name, value in self.labels)


@dataclass(frozen=True)
class ErrorBudgetPolicy:
    policies: tuple[ServicePolicy, ...]
    source: str = BUILT_IN

    def for_slo(self, service: str, labels: Mapping[str, str]) -> ServicePolicy:
        """The first policy matching the SLO; SLOs none matches get the built-in one."""
        found = next((p for p in self.policies if p.applies(service, labels)), None)
        return found if found is not None else DEFAULT_POLICY.policies[0]


DEFAULT_POLICY = ErrorBudgetPolicy((ServicePolicy((), (), (
    Condition("freeze", "error budget overspent: only fixes and rollbacks ship",
              remaining_below=0, where=f"{BUILT_IN}: conditions[0]"),
    Condition("hold", "less than 25% of the error budget left: releases need an override",
              remaining_below=25, where=f"{BUILT_IN}: conditions[1]"),
    Condition("hold", "a page is firing: releases need an override", firing=("page",),
              where=f"{BUILT_IN}: conditions[2]"),
), where=BUILT_IN),))
"""The field guide's policy: below 0% left only fixes and rollbacks ship; below 25% left or
a page firing, releases need an override; otherwise ship."""


def load_budget_policy(path: str | Path) -> ErrorBudgetPolicy:
    """Read and check a policy file; SpecError locates every mistake (file:line:column)."""
    document = read_yaml_file(path, f"'apiVersion: {API_VERSION}' and 'kind: {POLICY_KIND}'")
    return parse_budget_policy(document)


def parse_budget_policy(document: SpecDocument) -> ErrorBudgetPolicy:
    """The policy in a parsed YAML document, or SpecError with every issue located."""
    try:
        spec = PolicyFileSpec.model_validate(document.data)
    except ValidationError as error:
        raise SpecError(model_issues(error, document, PolicyFileSpec)) from None
    issues = []
    for index, policy in enumerate(spec.policies[:-1]):
        if not policy.services and not policy.labels:
            issues.append(document.issue(
                ("policies", index), f"this policy matches every SLO, so policies[{index + 1}] "
                "and later never apply; move it last, or give it services or labels"))
    if issues:
        raise SpecError(issues)
    return ErrorBudgetPolicy(tuple(
        ServicePolicy(
            services=tuple(policy.services or ()),
            labels=tuple(sorted((policy.labels or {}).items())),
            conditions=tuple(_condition(c, document, ("policies", i, "conditions", j))
                             for j, c in enumerate(policy.conditions)),
            where=_where(document, ("policies", i)),
        )
        for i, policy in enumerate(spec.policies)), source=document.file)


def _condition(spec: ConditionSpec, document: SpecDocument,
               path: tuple[str | int, ...]) -> Condition:
    condition = Condition(
        decision=spec.decision,
        message=spec.message or "",
        remaining_below=spec.remaining_below,
        burn_rate_above=spec.burn_rate_above,
        window=format_duration(parse_duration(spec.window or "1h")),
        firing=tuple(spec.firing or ()),
        where=_where(document, path),
    )
    if spec.message:
        return condition
    return replace(condition, message=f"{condition.describe()}: "
                   f"{_DEFAULT_MESSAGES[spec.decision]}")


_DEFAULT_MESSAGES: dict[Decision, str] = {
    "ship": "releases ship",
    "hold": "releases need an override",
    "freeze": "only fixes and rollbacks ship",
}


def _where(document: SpecDocument, path: tuple[str | int, ...]) -> str:
    line, _ = document.position(path)
    return f"{document.file}:{line}: {format_path(path)}"


# --- the decision ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SLOVerdict:
    """What the policy says of one SLO (one group of it)."""

    status: BudgetStatus
    decision: Decision | None  # None: no data, or the policy cannot be applied to it
    condition: Condition | None = None
    problem: str | None = None  # why the policy cannot be applied (a window it lacks)

    @property
    def name(self) -> str:
        group = f"{{{self.status.group}}}" if self.status.group else ""
        return f"{self.status.service}/{self.status.slo}{group}"

    def reason(self) -> str:
        figures = budget_figures(self.status)
        if self.problem is not None:
            return f"{self.name}: cannot decide: {self.problem}"
        if self.decision is None:
            return f"{self.name}: no data in the period, not considered"
        if self.condition is None:
            return f"{self.name}: ship ({figures}): no condition of the policy holds"
        return (f"{self.name}: {self.decision} ({figures}): {self.condition.message} "
                f"[{self.condition.where}]")

    def as_json(self) -> dict[str, Any]:
        status = self.status.as_json()
        return {
            "service": self.status.service,
            "slo": self.status.slo,
            "labels": self.status.labels,
            "decision": self.decision,
            "message": self.condition.message if self.condition else None,
            "condition": self.condition.describe() if self.condition else None,
            "where": self.condition.where if self.condition else None,
            "problem": self.problem,
            "error_budget_remaining": status["error_budget_remaining"],
            "burn_rates": status["burn_rates"],
            "firing": status["firing"],
            "status": status["status"],
            "reason": self.reason(),
        }


def budget_figures(status: BudgetStatus) -> str:
    """'12.5% of the budget left, 1h burn 2.3x, firing: page 1h/5m', as the reason shows."""
    remaining = status.error_budget_remaining
    left = "no data" if remaining is None else f"{remaining * 100:.1f}% of the budget left"
    burn = status.burn_rates.get("1h")
    rate = "-" if burn is None else f"{burn:.2f}x"
    firing = ", ".join(status.firing) if status.firing else "none"
    return f"{left}, 1h burn {rate}, firing: {firing}"


@dataclass(frozen=True)
class GateResult:
    service: str
    at: datetime
    outcome: Outcome
    verdicts: tuple[SLOVerdict, ...]
    policy: str  # where the policy came from

    @property
    def deciding(self) -> tuple[SLOVerdict, ...]:
        """The verdicts that made the outcome (the strictest SLOs, or the undecidable ones)."""
        if self.outcome == "undecided":
            return tuple(v for v in self.verdicts if v.problem is not None) or self.verdicts
        return tuple(v for v in self.verdicts if v.decision == self.outcome)

    def summary(self) -> str:
        if self.outcome == "undecided" and not any(v.problem for v in self.verdicts):
            return f"no SLO of {self.service} has data in its period: cannot decide"
        return "; ".join(v.reason() for v in self.deciding)


def decide(policy: ErrorBudgetPolicy, service: str, statuses: Sequence[BudgetStatus],
           at: datetime,
           slo_labels: Mapping[tuple[str, str], Mapping[str, str]] | None = None) -> GateResult:
    """The gate's answer for `service` from its SLOs' budgets at `at`.

    `slo_labels` maps (service, slo) to the SLO's labels (the spec's), which policies may
    match on besides the group labels of each status. SLOs without data are left out; with
    none left, or a condition reading a window an SLO lacks, the outcome is `undecided`.
    """
    verdicts = tuple(_verdict(policy, status, (slo_labels or {}).get(
        (status.service, status.slo), {})) for status in statuses if status.service == service)
    decided: list[Decision] = [v.decision for v in verdicts if v.decision is not None]
    outcome: Outcome = "undecided"
    if decided and not any(v.problem is not None for v in verdicts):
        strictest: Decision = max(decided, key=STRICTNESS.__getitem__)
        outcome = strictest
    return GateResult(service, at, outcome, verdicts, policy.source)


def _verdict(policy: ErrorBudgetPolicy, status: BudgetStatus,
             labels: Mapping[str, str]) -> SLOVerdict:
    if status.status == "no_data" or status.total_events <= 0:
        return SLOVerdict(status, None)
    rules = policy.for_slo(status.service, {**labels, **status.labels})
    for condition in rules.conditions:
        if condition.burn_rate_above is not None and condition.window not in status.burn_rates:
            known = ", ".join(status.burn_rates)
            return SLOVerdict(status, None, condition, problem=(
                f"{condition.where} reads the {condition.window} burn rate, which the "
                f"budget report does not compute for this SLO; use one of {known}"))
        if _holds(condition, status):
            return SLOVerdict(status, condition.decision, condition)
    return SLOVerdict(status, "ship")


def _holds(condition: Condition, status: BudgetStatus) -> bool:
    if condition.remaining_below is not None:
        remaining = status.error_budget_remaining
        if remaining is None or not round(remaining * 100, _PRECISION) < condition.remaining_below:
            return False
    if condition.burn_rate_above is not None:
        burn = status.burn_rates.get(condition.window)
        if burn is None or not round(burn, _PRECISION) > condition.burn_rate_above:
            return False
    if condition.firing:
        severities = {tier.split(" ", 1)[0] for tier in status.firing}
        if not severities & set(condition.firing):
            return False
    return True


# --- overrides ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Release:
    """The gate's answer with the override applied: what the pipeline should do."""

    result: GateResult
    exit_code: int
    message: str
    override: str | None = None  # the reason, when an override let the release through
    fix: bool = False

    def change(self, version: str | None = None,
               previous_version: str | None = None) -> Change | None:
        """The change event an override leaves, so the next page shows who overrode what."""
        if self.override is None:
            return None
        result = self.result
        what = "fix released under gate override (budget frozen)" if self.fix \
            else "released under gate override"
        description = f"{what}: {self.override}; the gate said {result.outcome}: " \
            f"{result.summary()}"
        return parse_change({"time": result.at, "service": result.service, "kind": "deploy",
                             "version": version, "previous_version": previous_version,
                             "description": description[:2000], "source": "gate"},
                            "gate --override")

    def as_json(self) -> dict[str, Any]:
        result = self.result
        return {
            "service": result.service,
            "at": iso_utc(result.at),
            "decision": result.outcome,
            "exit_code": self.exit_code,
            "ships": self.exit_code == SHIP,
            "message": self.message,
            "override": None if self.override is None else {"reason": self.override,
                                                            "fix": self.fix},
            "policy": result.policy,
            "slos": [v.as_json() for v in result.verdicts],
        }


def release(result: GateResult, override: str | None = None, fix: bool = False) -> Release:
    """Apply an override: a hold ships with a reason; a freeze only when it is a fix.

    An override is not used (nor recorded) when the release ships anyway or the gate could
    not decide: it answers a budget that is short, not a missing one.
    """
    outcome = result.outcome
    if outcome == "undecided":
        return Release(result, UNDECIDED, f"cannot decide: {result.summary()}")
    if outcome == "ship":
        note = " (override not needed, not recorded)" if override else ""
        return Release(result, SHIP, f"ship: the error budget allows releases{note}")
    if override is None:
        how = ("only fixes and rollbacks ship; if this release is one, pass --override REASON "
               "--fix" if outcome == "freeze" else "pass --override REASON to release anyway")
        return Release(result, HOLD, f"{outcome}: {how}")
    if outcome == "freeze" and not fix:
        return Release(result, HOLD, "freeze: only fixes and rollbacks ship, and --override "
                       "without --fix does not lift a freeze; add --fix if this release is a "
                       "fix or a rollback")
    return Release(result, SHIP, f"{outcome} overridden: {override}", override, fix)


def render_text(outcome: Release, warnings: Sequence[str] = ()) -> str:
    """The gate's answer for a pipeline log: the verdict first, then every SLO's reason."""
    result = outcome.result
    lines = [f"gate {result.service}: {outcome.message}", f"policy: {result.policy}"]
    lines += [f"  {v.reason()}" for v in result.verdicts]
    lines += [f"warning: {w}" for w in warnings]
    return "\n".join(lines) + "\n"
