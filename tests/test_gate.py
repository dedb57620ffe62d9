"""Release gates on the error budget: policy files, decisions, overrides, and `slo-engine gate`.

Decisions are checked on hand-built budget states (every threshold exactly at, just under and
just over), then through the CLI on ledger files, with overrides recorded in the state DB.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from slo_engine.budget import accounting as budget
from slo_engine.budget.accounting import BudgetStatus
from slo_engine.budget.ledger import group_labels
from slo_engine.cli import main
from slo_engine.errors import SpecError
from slo_engine.release import gate
from slo_engine.release.gate import DEFAULT_POLICY, decide, load_budget_policy, release
from slo_engine.spec.loader import load_services
from slo_engine.storage.sqlite import StateDB
from tests.support.processes import free_port

AT = datetime(2026, 5, 12, 12, 0, tzinfo=UTC)
CASES = Path(__file__).parent / "release_cases"


def status(remaining: float | None, *, burn: float | None = 0.5, firing: tuple[str, ...] = (),
           slo: str = "availability", service: str = "checkout", group: str = "",
           burn_6h: float | None = 0.5) -> BudgetStatus:
    """A budget row as `budget.report` makes them; only what policies read varies."""
    total = 0.0 if remaining is None else 100_000.0
    allowed = total * 0.001
    consumed = None if remaining is None else 1 - remaining
    return BudgetStatus(
        service=service, slo=slo, group=group, objective=99.9, period="30d",
        period_start=AT - timedelta(days=30), at=AT, total_events=total,
        bad_events=0.0 if consumed is None else consumed * allowed,
        sli=None if remaining is None else 0.999, error_budget_events=allowed,
        error_budget_consumed=consumed, error_budget_remaining=remaining,
        burn_rates={"5m": burn, "1h": burn, "6h": burn_6h}, time_to_exhaustion_s=None,
        time_to_exhaustion_period_avg_s=None,
        status="no_data" if remaining is None else "healthy", firing=firing, partial=False,
        labels=group_labels(group),
    )


def outcome(*statuses: BudgetStatus, policy: gate.ErrorBudgetPolicy = DEFAULT_POLICY,
            labels: dict[tuple[str, str], dict[str, str]] | None = None) -> str:
    return decide(policy, "checkout", statuses, AT, labels).outcome


# --- the built-in policy -------------------------------------------------------------------


@pytest.mark.parametrize(("remaining", "expected"), [
    (1.0, "ship"),
    (0.2500000001, "ship"),
    (0.25, "ship"),  # exactly at 25%: not below it
    (0.2499999, "hold"),
    (0.0, "hold"),  # exactly spent: not below 0%, so releases still need only an override
    (-0.0000001, "freeze"),
    (-1.5, "freeze"),
])
def test_default_policy_thresholds_compare_strictly(remaining: float, expected: str) -> None:
    assert outcome(status(remaining)) == expected


def test_a_firing_page_holds_and_a_ticket_does_not() -> None:
    assert outcome(status(0.9, firing=("page 1h/5m",))) == "hold"
    assert outcome(status(0.9, firing=("ticket 1d/2h",))) == "ship"
    assert outcome(status(-0.1, firing=("page 1h/5m",))) == "freeze"  # first condition wins


def test_float_noise_at_a_threshold_does_not_flip_the_decision() -> None:
    """75 bad of 100,000 at 99.9% is exactly 25% left; float arithmetic says 24.99999999999%."""
    service = load_services([CASES / "checkout.yaml"])[0]
    slo = next(s for s in service.slos if s.name == "latency")  # 99.9%
    rows = pd.DataFrame({"timestamp": [AT - timedelta(minutes=5)], "service": ["checkout"],
                         "slo": ["latency"], "group": [""], "total": [100_000.0],
                         "bad": [75.0]})
    computed = budget.status_of(slo, "", rows, AT)
    assert computed.error_budget_remaining is not None
    assert computed.error_budget_remaining * 100 < 25  # the noise this test is about
    assert outcome(computed) == "ship"
    rows.loc[0, "bad"] = 76.0
    assert outcome(budget.status_of(slo, "", rows, AT)) == "hold"


def test_the_strictest_slo_decides_and_is_named() -> None:
    result = decide(DEFAULT_POLICY, "checkout", [
        status(0.9, slo="availability"), status(0.1, slo="latency"),
        status(-0.2, slo="payments", service="payments")], AT)
    assert result.outcome == "hold"  # payments is another service: not considered
    assert [v.status.slo for v in result.deciding] == ["latency"]
    assert "checkout/latency: hold (10.0% of the budget left" in result.summary()
    assert "releases need an override" in result.summary()


def test_no_data_is_left_out_and_only_no_data_cannot_decide() -> None:
    assert outcome(status(None), status(0.1, slo="latency")) == "hold"
    result = decide(DEFAULT_POLICY, "checkout", [status(None), status(None, slo="latency")], AT)
    assert result.outcome == "undecided"
    assert "no SLO of checkout has data" in result.summary()
    assert decide(DEFAULT_POLICY, "unknown", [status(0.9)], AT).outcome == "undecided"


# --- policy files --------------------------------------------------------------------------


POLICY = """\
apiVersion: slo-engine/v1
kind: ErrorBudgetPolicy
policies:
  - services: [checkout]
    labels: {tier: "1"}
    conditions:
      - remaining_below: -10
        decision: freeze
        message: tier 1 overspent by a tenth; only fixes ship
      - burn_rate_above: 6
        window: 6h
        decision: hold
        message: burning 6x over 6h
      - remaining_below: 50
        firing: [ticket]
        decision: hold
  - services: [checkout]
    conditions: []
  - conditions:
      - remaining_below: 0
        decision: hold
"""


@pytest.fixture
def policy(tmp_path: Path) -> gate.ErrorBudgetPolicy:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY)
    return load_budget_policy(path)


TIER_1 = {("checkout", "availability"): {"tier": "1"}}


def test_policy_conditions_apply_in_order_to_the_slos_they_match(
        policy: gate.ErrorBudgetPolicy) -> None:
    # tier 1 of checkout: the first policy
    assert outcome(status(-0.1), policy=policy, labels=TIER_1) == "ship"  # -10%: not below
    assert outcome(status(-0.11), policy=policy, labels=TIER_1) == "freeze"
    assert outcome(status(0.9, burn_6h=6.0), policy=policy, labels=TIER_1) == "ship"
    assert outcome(status(0.9, burn_6h=6.01), policy=policy, labels=TIER_1) == "hold"
    # both tests of a condition must hold
    assert outcome(status(0.4), policy=policy, labels=TIER_1) == "ship"
    assert outcome(status(0.6, firing=("ticket 1d/2h",)), policy=policy, labels=TIER_1) == "ship"
    assert outcome(status(0.4, firing=("ticket 1d/2h",)), policy=policy,
                   labels=TIER_1) == "hold"
    # other checkout SLOs: the second policy, which never holds
    assert outcome(status(-5.0), policy=policy) == "ship"
    # other services: the catch-all
    result = decide(policy, "search", [status(-0.5, service="search")], AT)
    assert result.outcome == "hold"
    assert result.verdicts[0].condition is not None
    assert result.verdicts[0].condition.where.endswith(":20: policies[2].conditions[0]")
    assert "releases need an override" in result.summary()  # the default message


def test_group_labels_match_too(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("apiVersion: slo-engine/v1\nkind: ErrorBudgetPolicy\npolicies:\n"
                    "  - labels: {region: eu}\n    conditions:\n"
                    "      - {remaining_below: 90, decision: freeze}\n")
    policy = load_budget_policy(path)
    assert outcome(status(0.5, group="region=eu"), policy=policy) == "freeze"
    # SLOs no policy matches get the built-in policy
    assert outcome(status(0.5, group="region=us"), policy=policy) == "ship"
    assert outcome(status(0.2, group="region=us"), policy=policy) == "hold"


def test_a_window_the_report_lacks_cannot_decide(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("apiVersion: slo-engine/v1\nkind: ErrorBudgetPolicy\npolicies:\n"
                    "  - conditions:\n"
                    "      - {burn_rate_above: 2, window: 45m, decision: hold}\n")
    result = decide(load_budget_policy(path), "checkout", [status(0.9)], AT)
    assert result.outcome == "undecided"
    assert "reads the 45m burn rate" in result.summary()
    assert "use one of 5m, 1h, 6h" in result.summary()
    assert "policy.yaml:5: policies[0].conditions[0]" in result.summary()


@pytest.mark.parametrize(("text", "messages"), [
    ("apiVersion: slo-engine/v1\nkind: ErrorBudgetPolicy\npolicies:\n  - conditions:\n"
     "      - remaining_belw: 10\n        decision: hold\n",
     ["policy.yaml:5:9: policies[0].conditions[0].remaining_belw: unknown field "
      "'remaining_belw'; did you mean 'remaining_below'?"]),
    ("apiVersion: slo-engine/v1\nkind: ErrorBudgetPolicy\npolicies:\n  - conditions:\n"
     "      - remaining_below: 10\n        decision: block\n",
     ["policy.yaml:6:19: policies[0].conditions[0].decision: got 'block'; input should be "
      "'ship', 'hold' or 'freeze'"]),
    ("apiVersion: slo-engine/v1\nkind: ErrorBudgetPolicy\npolicies:\n  - conditions:\n"
     "      - decision: hold\n      - {window: 1h, remaining_below: 5, decision: hold}\n"
     "      - {burn_rate_above: '6', decision: hold}\n",
     ["policy.yaml:5:9: policies[0].conditions[0]: a condition needs at least one of "
      "remaining_below, burn_rate_above or firing",
      "policy.yaml:6:9: policies[0].conditions[1]: window is the window of burn_rate_above",
      "policy.yaml:7:28: policies[0].conditions[2].burn_rate_above: expected a number, got "
      "str '6'; remove the quotes"]),
    ("apiVersion: slo-engine/v1\nkind: BudgetPolicy\npolicies: []\n",
     ["policy.yaml:2:7: kind: got 'BudgetPolicy'; input should be 'ErrorBudgetPolicy'",
      "policy.yaml:3:11: policies: must not be empty"]),
    ("apiVersion: slo-engine/v1\nkind: ErrorBudgetPolicy\npolicies:\n"
     "  - conditions: []\n  - services: [a]\n    conditions: []\n",
     ["policy.yaml:4:5: policies[0]: this policy matches every SLO, so policies[1] and later "
      "never apply"]),
    ("apiVersion: slo-engine/v1\nkind: ErrorBudgetPolicy\npolicies:\n  - conditions:\n"
     "      - {firing: [pager], decision: hold}\n",
     ["policy.yaml:5:19: policies[0].conditions[0].firing[0]: got 'pager'; input should be "
      "'page' or 'ticket'"]),
])
def test_bad_policy_files_name_line_field_and_fix(tmp_path: Path, text: str,
                                                  messages: list[str]) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    with pytest.raises(SpecError) as caught:
        load_budget_policy(path)
    found = str(caught.value).replace(str(tmp_path) + "/", "")
    assert len(caught.value.issues) == len(messages), found
    for message in messages:
        assert message in found


def test_an_empty_policy_file_says_how_it_starts(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("\n")
    with pytest.raises(SpecError, match="kind: ErrorBudgetPolicy"):
        load_budget_policy(path)


# --- overrides -----------------------------------------------------------------------------


def test_an_override_ships_a_hold_and_leaves_a_change_with_its_reason() -> None:
    held = decide(DEFAULT_POLICY, "checkout", [status(0.1)], AT)
    assert release(held).exit_code == gate.HOLD
    assert "--override REASON" in release(held).message
    shipped = release(held, "INC-42 hotfix approved by on-call")
    assert shipped.exit_code == gate.SHIP
    change = shipped.change("web:2026.05.12-8f3a91c", "web:2026.05.10-41c2d2a")
    assert change is not None
    assert (change.service, change.kind, change.source, change.time) == (
        "checkout", "deploy", "gate", AT)
    assert change.version == "web:2026.05.12-8f3a91c"
    assert change.rollback() == "deploy web:2026.05.10-41c2d2a"
    assert change.description is not None
    assert change.description.startswith(
        "released under gate override: INC-42 hotfix approved by on-call; the gate said hold")
    assert "10.0% of the budget left" in change.description


def test_a_freeze_ships_only_a_fix() -> None:
    frozen = decide(DEFAULT_POLICY, "checkout", [status(-0.3)], AT)
    assert release(frozen).exit_code == gate.HOLD
    assert "--fix" in release(frozen).message
    plain = release(frozen, "we need the feature")
    assert plain.exit_code == gate.HOLD and plain.change() is None
    fix = release(frozen, "rollback of 8f3a91c", fix=True)
    assert fix.exit_code == gate.SHIP
    change = fix.change()
    assert change is not None and change.description is not None
    assert change.description.startswith("fix released under gate override (budget frozen)")


def test_an_override_is_not_used_when_not_needed_or_when_undecided() -> None:
    healthy = release(decide(DEFAULT_POLICY, "checkout", [status(0.9)], AT), "just in case")
    assert healthy.exit_code == gate.SHIP and healthy.change() is None
    blind = release(decide(DEFAULT_POLICY, "checkout", [status(None)], AT), "ship it")
    assert blind.exit_code == gate.UNDECIDED and blind.change() is None


# --- the command ---------------------------------------------------------------------------


def ledger_file(path: Path, bad_per_bucket: float) -> Path:
    """24 hours of 5m buckets of 1,000 requests, `bad_per_bucket` of them failing, for the
    availability SLO (99%) of checkout; its latency SLO has no data at all."""
    stamps = pd.date_range(end=AT, periods=288, freq="5min", tz="UTC")
    pd.DataFrame({"timestamp": stamps.strftime("%Y-%m-%dT%H:%M:%SZ"), "service": "checkout",
                  "slo": "availability", "total": 1000.0,
                  "bad": bad_per_bucket}).to_csv(path, index=False)
    return path


def run_gate(tmp_path: Path, bad: float, *extra: str) -> int:
    events = ledger_file(tmp_path / f"events-{bad}.csv", bad)
    return main(["gate", "--service", "checkout", str(CASES / "checkout.yaml"), "--data",
                 str(events), "--at", AT.isoformat(), "--state", str(tmp_path / "state.db"),
                 *extra])


def test_gate_ships_a_healthy_service(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_gate(tmp_path, 1.0) == 0  # 10% of the budget spent
    out = capsys.readouterr().out
    assert out.startswith("gate checkout: ship: the error budget allows releases\n")
    assert "checkout/availability: ship (90.0% of the budget left, 1h burn 0.10x" in out
    assert "checkout/latency: no data in the period, not considered" in out


def test_gate_holds_and_an_override_is_recorded(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    assert run_gate(tmp_path, 8.0, "--format", "json") == 1  # 80% spent
    held = json.loads(capsys.readouterr().out)
    assert (held["decision"], held["exit_code"], held["ships"]) == ("hold", 1, False)
    availability = next(s for s in held["slos"] if s["slo"] == "availability")
    assert availability["decision"] == "hold"
    assert availability["error_budget_remaining"] == pytest.approx(0.2)
    assert availability["burn_rates"]["1h"] == pytest.approx(0.8)
    assert availability["where"] == "built-in policy: conditions[1]"
    assert held["recorded_change"] is None
    assert not (tmp_path / "state.db").exists() or not StateDB(tmp_path / "state.db").changes()

    assert run_gate(tmp_path, 8.0, "--override", "INC-7: payment fix", "--version", "v2",
                    "--previous-version", "v1") == 0
    out = capsys.readouterr().out
    assert out.startswith("gate checkout: hold overridden: INC-7: payment fix\n")
    assert "recorded change: released under gate override: INC-7: payment fix" in out
    with StateDB(tmp_path / "state.db") as state:
        changes = state.changes(["checkout"])
    assert len(changes) == 1
    change = changes[0]
    assert (change.kind, change.version, change.source, change.time) == ("deploy", "v2", "gate",
                                                                         AT)
    assert change.rollback() == "deploy v1"
    assert change.description is not None and "INC-7: payment fix" in change.description


def test_gate_freeze_needs_a_fix(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_gate(tmp_path, 12.0, "--override", "feature") == 1  # 120% spent
    assert "freeze" in capsys.readouterr().out
    assert run_gate(tmp_path, 12.0, "--override", "revert 8f3a91c", "--fix") == 0
    with StateDB(tmp_path / "state.db") as state:
        [change] = state.changes(["checkout"])
    assert change.description is not None
    assert change.description.startswith("fix released under gate override (budget frozen): "
                                         "revert 8f3a91c")


def test_gate_with_a_policy_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    # checkout/availability has tier "1" in its spec: 20% left and a 0.8x burn ship there
    assert run_gate(tmp_path, 8.0, "--policy", str(policy)) == 0
    assert f"policy: {policy.as_posix()}" in capsys.readouterr().out


def test_gate_cannot_decide_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["gate", "--service", "checkot", str(CASES / "checkout.yaml"), "--data",
                 str(ledger_file(tmp_path / "e.csv", 1.0))]) == 2
    assert "--service 'checkot': no SLOs for this service in the given files; did you mean " \
        "'checkout'?" in capsys.readouterr().err
    # no data for any SLO of the service
    empty = tmp_path / "empty.csv"
    empty.write_text("timestamp,service,slo,total,bad\n")
    assert main(["gate", "--service", "checkout", str(CASES / "checkout.yaml"), "--data",
                 str(empty), "--override", "x"]) == 2
    assert "cannot decide: no SLO of checkout has data" in capsys.readouterr().out
    # a bad policy file: located, and "cannot decide" rather than "hold"
    policy = tmp_path / "bad.yaml"
    policy.write_text("apiVersion: slo-engine/v1\nkind: ErrorBudgetPolicy\npolicies:\n"
                      "  - conditions:\n      - {remaining_below: 10, decison: hold}\n")
    assert run_gate(tmp_path, 1.0, "--policy", str(policy)) == 2
    err = capsys.readouterr().err
    assert "bad.yaml:5:31: policies[0].conditions[0].decison: unknown field 'decison'; did you " \
        "mean 'decision'?" in err
    assert "1 error found" in err and "Traceback" not in err
    # the same for a JSON reader: an answer on stdout, the error on stderr
    assert run_gate(tmp_path, 1.0, "--policy", str(policy), "--format", "json") == 2
    answer = json.loads(capsys.readouterr().out)
    assert answer["decision"] == "undecided" and answer["exit_code"] == 2
    assert "unknown field 'decison'" in answer["error"]
    # --fix alone
    assert run_gate(tmp_path, 1.0, "--fix") == 2
    assert "--override REASON --fix" in capsys.readouterr().err
    # an override without a reason: nothing to show on the next page
    assert run_gate(tmp_path, 8.0, "--override", " ") == 2
    assert "--override needs a reason" in capsys.readouterr().err
    assert not (tmp_path / "state.db").exists()


def test_a_version_the_change_event_refuses_is_a_clear_error_not_a_hold(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_gate(tmp_path, 8.0, "--override", "INC-7", "--version", "v2\n",
                    "--previous-version", "v" * 501) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: gate --override: version: ") and "Traceback" not in err
    assert "previous_version: String should have at most 500 characters" in err


def test_gate_with_prometheus_down_exits_2_naming_the_url(
        capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    assert main(["gate", "--service", "checkout", str(CASES / "checkout.yaml"),
                 "--prometheus-url", url]) == 2
    err = capsys.readouterr().err
    assert f"Prometheus at {url} is unavailable" in err and "Traceback" not in err


def test_gate_reads_prometheus_from_the_engine_config(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    config = tmp_path / "slo-engine.yaml"
    config.write_text(f"apiVersion: slo-engine/v1\nkind: EngineConfig\nprometheus:\n"
                      f"  url: {url}\n  headers: {{X-Scope-OrgID: team-a}}\n")
    assert main(["gate", "--service", "checkout", str(CASES / "checkout.yaml"), "--config",
                 str(config)]) == 2
    assert f"Prometheus at {url} is unavailable" in capsys.readouterr().err
    assert main(["gate", "--service", "checkout", str(CASES / "checkout.yaml")]) == 2
    assert "no Prometheus to ask: give --prometheus-url URL, or --config FILE with a " \
        "prometheus section, or --data FILE" in capsys.readouterr().err
