"""The README's and the documentation site's examples work: every SLO file, engine config and
policy file shown loads, every `slo-engine` command shown exists with the options it shows,
the README's rule and SLO file are the real ones, the README stays short, and every relative
link resolves."""

from __future__ import annotations

import argparse
import re
import shlex
import unicodedata
from pathlib import Path
from typing import cast

import pytest
from _pytest.mark.structures import ParameterSet

from slo_engine.budget.backtest import load_alert_policy
from slo_engine.cli import _parser, main
from slo_engine.config import load_config
from slo_engine.release.gate import load_budget_policy
from slo_engine.spec.loader import load_services
from tests.support.paths import ROOT

README_MAX_LINES = 250
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
TEXTS = {page: page.read_text(encoding="utf-8") for page in PAGES}
README = TEXTS[ROOT / "README.md"]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", flags=re.S | re.M)
# The engine config's sections: a YAML block made of these alone is a piece of slo-engine.yaml.
CONFIG_SECTIONS = ("slo_files", "paging", "prometheus", "slack", "changes", "state", "schedule",
                   "http")
ENVIRON = {"SLACK_BOT_TOKEN": "xoxb-1", "SLO_ENGINE_TOKEN": "t", "SLO_VIEW_TOKEN": "v",
           "SLO_ENGINE_PG_PASSWORD": "p"}


def _name(page: Path) -> str:
    return str(page.relative_to(ROOT))


def _yaml_blocks() -> list[tuple[str, str]]:
    return [(_name(page), body) for page, text in TEXTS.items()
            for lang, body in FENCE.findall(text) if lang == "yaml"]


def _blocks(kind: str) -> list[ParameterSet]:
    return [pytest.param(block, id=page) for page, block in _yaml_blocks()
            if re.search(rf"^kind: {kind}$", block, flags=re.M)]


def _top_level_keys(block: str) -> set[str]:
    return set(re.findall(r"^([a-z_]+):", block, flags=re.M))


def _config_fragments() -> list[ParameterSet]:
    """Blocks that show some sections of slo-engine.yaml without the rest."""
    return [pytest.param(block, id=page) for page, block in _yaml_blocks()
            if (keys := _top_level_keys(block)) and keys <= set(CONFIG_SECTIONS)]


def _slo_files() -> list[ParameterSet]:
    return [pytest.param(block, id=page) for page, block in _yaml_blocks()
            if re.search(r"^apiVersion: slo-engine/v1$", block, flags=re.M)
            and {"service", "slos"} <= _top_level_keys(block)]


@pytest.mark.parametrize("block", _blocks("EngineConfig"))
def test_engine_config_examples_load(block: str, tmp_path: Path) -> None:
    path = tmp_path / "slo-engine.yaml"
    path.write_text(block, encoding="utf-8")
    config = load_config(path, ENVIRON)
    assert config.prometheus.url.startswith("http")


@pytest.mark.parametrize("block", _config_fragments())
def test_engine_config_fragments_load(block: str, tmp_path: Path) -> None:
    path = tmp_path / "slo-engine.yaml"
    header = "apiVersion: slo-engine/v1\nkind: EngineConfig\n"
    if "prometheus" not in _top_level_keys(block):
        header += "prometheus: {url: http://prometheus:9090}\n"
    path.write_text(header + block, encoding="utf-8")
    load_config(path, ENVIRON)


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


@pytest.mark.parametrize("block", _slo_files())
def test_slo_file_examples_load(block: str, tmp_path: Path) -> None:
    path = tmp_path / "example.yaml"
    path.write_text(block, encoding="utf-8")
    assert load_services([path])


def test_there_are_examples_of_each_file_kind() -> None:
    assert all(_blocks(kind) for kind in ("EngineConfig", "ErrorBudgetPolicy", "AlertPolicy"))
    assert _config_fragments() and _slo_files()


def test_readme_shows_the_real_slo_file_and_rule() -> None:
    """The README's SLO file is slo_definitions/checkout.yaml, and its alert an excerpt of what
    `compile` made of it (rules_out/ is checked against the compiler by `make test`)."""
    blocks = [body for lang, body in FENCE.findall(README) if lang == "yaml"]
    slo_file, alert = blocks[0], blocks[1]
    assert slo_file == (ROOT / "slo_definitions" / "checkout.yaml").read_text(encoding="utf-8")
    assert alert in (ROOT / "rules_out" / "checkout.yml").read_text(encoding="utf-8")


def test_readme_is_short() -> None:
    lines = len(README.splitlines())
    assert lines <= README_MAX_LINES, (
        f"README.md has {lines} lines, at most {README_MAX_LINES}: move reference to docs/")


def test_readme_opens_with_the_two_commands() -> None:
    opening = FENCE.search(README)
    assert opening is not None and opening.group(1) == "sh"
    commands = [line.split()[:2] for line in opening.group(2).splitlines()
                if not line.startswith(" ")]
    assert commands == [["make", "demo"], ["make", "test"]]


# `slo-engine` at the start of a command, not in `slo-engine.yaml`, `slo-engine/v1` or
# `slo-engine:<service>`; in console and text blocks only after a `$ ` prompt.
_COMMAND = re.compile(r"(?:^|[\s`;|&(]|^\$ )slo-engine (?=[a-z])(.+)$")


def _command_lines(lang: str, body: str) -> list[str]:
    """The `slo-engine ...` commands of one code block, continuation lines joined (a trailing
    backslash, or an indented line that goes on with options or brackets)."""
    lines = body.splitlines()
    commands = []
    for index, line in enumerate(lines):
        if lang in ("console", "text", "") and not line.startswith("$ "):
            continue
        found = _COMMAND.search(line)
        if not found:
            continue
        text = found.group(1)
        for following in lines[index + 1:]:
            if text.endswith("\\"):
                text = text[:-1] + " " + following.strip()
            elif re.match(r"\s+(--|\[|\()", following):
                text += " " + following.strip()
            else:
                break
        commands.append(text)
    return commands


def _inline_commands(text: str) -> list[str]:
    prose = FENCE.sub("", text)
    return list(re.findall(r"`slo-engine ([a-z][^`]*)`", prose))


def _words(command: str) -> list[str]:
    """A command as the words up to its placeholders: the subcommand and the options."""
    text = re.sub(r"[][(){}|]", " ", command.split("  #")[0]).replace("\n", " ")
    try:
        words = shlex.split(text, comments=True)
    except ValueError:  # a quote opened in the shown line and closed on one not shown
        words = text.split()
    return [w for w in words if re.fullmatch(r"--?[a-z-]+|[a-z-]+", w)]


def _listed_commands() -> list[ParameterSet]:
    commands = []
    for page, text in TEXTS.items():
        shown = [c for lang, body in FENCE.findall(text) for c in _command_lines(lang, body)]
        for command in shown + _inline_commands(text):
            words = _words(command)
            commands.append(pytest.param(words, id=f"{_name(page)}: {' '.join(words[:2])}"))
    return commands


@pytest.mark.parametrize("words", _listed_commands())
def test_listed_commands_and_options_exist(words: list[str],
                                           capsys: pytest.CaptureFixture[str]) -> None:
    subcommand = words[:2] if words[0] in ("changes", "config", "state") else words[:1]
    with pytest.raises(SystemExit) as exited:
        main([*subcommand, "--help"])
    assert exited.value.code == 0
    usage = capsys.readouterr().out
    for option in (w for w in words if w.startswith("--")):
        assert option in usage, f"slo-engine {' '.join(subcommand)} has no {option}"


def _subcommands(parser: argparse.ArgumentParser) -> list[str]:
    names = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                names += [f"{name} {n}" for n in _subcommands(sub)] or [name]
    return names


def test_every_command_of_the_cli_is_documented() -> None:
    shown = [cast(list[str], p.values[0]) for p in _listed_commands()]
    documented = {" ".join(w[:2]) for w in shown} | {w[0] for w in shown}
    missing = [name for name in _subcommands(_parser()) if name not in documented]
    assert not missing, f"not shown in README.md or docs/: slo-engine {', '.join(missing)}"


def _slug(heading: str) -> str:
    """The anchor Python-Markdown's toc extension (mkdocs) gives a heading."""
    text = re.sub(r"\[([^]]*)\]\([^)]*\)", r"\1", heading).replace("`", "").replace("*", "")
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def _anchors(page: Path) -> set[str]:
    prose = FENCE.sub("", page.read_text(encoding="utf-8"))
    return {_slug(h) for h in re.findall(r"^#{1,6} (.+)$", prose, flags=re.M)}


def _relative_links() -> list[ParameterSet]:
    links = []
    for page, text in TEXTS.items():
        prose = re.sub(r"`[^`\n]*`", "", FENCE.sub("", text))
        for target in re.findall(r"\]\(([^)\s]+)\)", prose):
            if not re.match(r"[a-z]+:", target):
                links.append(pytest.param(page, target, id=f"{_name(page)} -> {target}"))
    return links


@pytest.mark.parametrize(("page", "target"), _relative_links())
def test_relative_links_resolve(page: Path, target: str) -> None:
    path, _, anchor = target.partition("#")
    resolved = (page.parent / path).resolve() if path else page
    assert resolved.exists(), f"{_name(page)} links to {target}: no such file"
    if anchor:
        assert anchor in _anchors(resolved), f"{_name(page)} links to {target}: no such heading"


def test_every_test_a_page_names_exists() -> None:
    """The fault catalog (and any page) points at tests by path and name: each must exist,
    so a renamed test cannot leave a claim without its proof."""
    named = {(match[0], match[1]) for text in TEXTS.values() for match in re.findall(
        r"`(tests/[\w/]+\.py)((?:::\w+)?)`", text)}
    for path, name in sorted(named):
        source = (ROOT / path).read_text(encoding="utf-8")
        assert name == "" or f"def {name[2:]}(" in source, f"{path}{name} does not exist"
    for text in TEXTS.values():
        for path, names in re.findall(r"`(tests/[\w/]+\.py)::\w+`((?:, `::\w+`)+)", text):
            source = (ROOT / path).read_text(encoding="utf-8")
            for name in re.findall(r"`::(\w+)`", names):
                assert f"def {name}(" in source, f"{path}::{name} does not exist"
    assert named
