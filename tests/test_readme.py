"""The README's examples work: every config and policy file in it loads, and every command
it lists exists with the options it shows."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from slo_engine.budget.backtest import load_alert_policy
from slo_engine.cli import main
from slo_engine.config import load_config
from slo_engine.release.gate import load_budget_policy
from tests.support.paths import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")
YAML_BLOCKS = re.findall(r"```yaml\n(.*?)```", README, flags=re.S)


def _blocks(kind: str) -> list[str]:
    return [b for b in YAML_BLOCKS if re.search(rf"^kind: {kind}$", b, flags=re.M)]


@pytest.mark.parametrize("block", _blocks("EngineConfig"))
def test_engine_config_examples_load(block: str, tmp_path: Path) -> None:
    path = tmp_path / "slo-engine.yaml"
    path.write_text(block, encoding="utf-8")
    config = load_config(path, {"SLACK_BOT_TOKEN": "xoxb-1", "SLO_ENGINE_TOKEN": "t"})
    assert config.prometheus.url.startswith("http")


@pytest.mark.parametrize("block", _blocks("ErrorBudgetPolicy"))
def test_error_budget_policy_examples_load(block: str, tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(block, encoding="utf-8")
    load_budget_policy(path)


@pytest.mark.parametrize("block", _blocks("AlertPolicy"))
def test_alert_policy_examples_load(block: str, tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(block, encoding="utf-8")
    load_alert_policy(path)


def test_there_are_examples_of_each_file_kind() -> None:
    assert all(_blocks(kind) for kind in ("EngineConfig", "ErrorBudgetPolicy", "AlertPolicy"))


def _listed_commands() -> list[list[str]]:
    """The `slo-engine ...` lines of the Commands section, as argument lists up to the first
    placeholder, so each names a real subcommand and real options."""
    section = README[README.index("## Commands"):README.index("## The demo")]
    commands = []
    for line in re.findall(r"^slo-engine (.+)$", section, flags=re.M):
        text = re.sub(r"[][(){}|]", " ", line.split("  #")[0])
        words = shlex.split(text, comments=True)
        commands.append([w for w in words if re.fullmatch(r"--?[a-z-]+|[a-z-]+", w)])
    return commands


@pytest.mark.parametrize("words", _listed_commands(), ids=lambda w: " ".join(w[:2]))
def test_listed_commands_and_options_exist(words: list[str],
                                           capsys: pytest.CaptureFixture[str]) -> None:
    subcommand = words[:2] if words[0] in ("changes", "config") else words[:1]
    with pytest.raises(SystemExit) as exited:
        main([*subcommand, "--help"])
    assert exited.value.code == 0
    usage = capsys.readouterr().out
    for option in (w for w in words if w.startswith("--")):
        assert option in usage, f"slo-engine {' '.join(subcommand)} has no {option}"
