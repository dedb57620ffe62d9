"""The engine config: ${ENV} interpolation, located mistakes, secrets kept out of every
repr and message, and owner → channel routing."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from slo_engine.cli import main
from slo_engine.config import EngineConfig, load_config, routing_issues
from slo_engine.errors import ConfigError, SpecError

SECRET = "xoxb-0000-very-secret"
HTTP_SECRET = "http-very-secret"

BASE = """\
apiVersion: slo-engine/v1
kind: EngineConfig
prometheus:
  url: ${PROM_URL:-http://prometheus:9090}
  headers: {X-Scope-OrgID: "${TENANT}"}
slack:
  token: ${SLACK_BOT_TOKEN}
  owners:
    shop: {page: "#shop-pages", ticket: "#shop-tickets"}
    search: {page: "#search"}
state: {path: data/state.db}
changes: {files: [changes.jsonl]}
http:
  tokens: ["${HTTP_TOKEN}"]
"""
ENVIRON = {"TENANT": "team-a", "SLACK_BOT_TOKEN": SECRET, "HTTP_TOKEN": HTTP_SECRET}


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "slo-engine.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def _load(tmp_path: Path, text: str = BASE, **environ: str) -> EngineConfig:
    return load_config(_write(tmp_path, text), {**ENVIRON, **environ})


def _issues(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(SpecError) as caught:
        load_config(_write(tmp_path, text), ENVIRON if environ is None else environ)
    return [str(issue) for issue in caught.value.issues]


def test_variables_are_interpolated_with_defaults(tmp_path: Path) -> None:
    config = _load(tmp_path)
    assert config.prometheus.url == "http://prometheus:9090"  # the default
    assert config.prometheus.header_values() == {"X-Scope-OrgID": "team-a"}
    assert config.slack.token is not None
    assert config.slack.token.get_secret_value() == SECRET
    assert [t.get_secret_value() for t in config.http.tokens] == [HTTP_SECRET]
    assert _load(tmp_path, PROM_URL="http://other:9090").prometheus.url == "http://other:9090"


def test_a_missing_variable_is_located_and_says_how_to_fix_it(tmp_path: Path) -> None:
    environ = {k: v for k, v in ENVIRON.items() if k != "SLACK_BOT_TOKEN"}
    issues = _issues(tmp_path, BASE, environ)
    assert len(issues) == 1
    assert issues[0].startswith(f"{tmp_path / 'slo-engine.yaml'}:7:10: slack.token: ")
    assert "SLACK_BOT_TOKEN is not set" in issues[0]
    assert "${SLACK_BOT_TOKEN:-default}" in issues[0]


def test_paths_are_relative_to_the_config_file(tmp_path: Path) -> None:
    config = _load(tmp_path)
    assert config.state.path == tmp_path / "data/state.db"
    assert config.changes.files == [tmp_path / "changes.jsonl"]
    assert config.slo_files == [tmp_path / "slo_definitions"]


def test_every_mistake_is_reported_at_its_line_and_field(tmp_path: Path) -> None:
    text = BASE.replace("state: {path: data/state.db}", "state: {paht: data/state.db}") + (
        "schedule:\n  evaluate: 1 minute\npaging: prometheus\n")
    issues = _issues(tmp_path, text)
    where = str(tmp_path / "slo-engine.yaml")
    assert len(issues) == 3
    assert f"{where}:11:9: state.paht: unknown field 'paht'; did you mean 'path'?" in issues
    assert any(i.startswith(f"{where}:16:13: schedule.evaluate: '1 minute' is not a duration")
               for i in issues)
    assert any(i.startswith(f"{where}:17:9: paging: ") and "engine" in i and "alertmanager" in i
               for i in issues)


@pytest.mark.parametrize("listen", ["localhost", "127.0.0.1:http", "0.0.0.0:65536"])
def test_a_listen_address_without_a_port_is_located(tmp_path: Path, listen: str) -> None:
    text = ("apiVersion: slo-engine/v1\nkind: EngineConfig\nprometheus: {url: http://p}\n"
            f"http: {{listen: '{listen}'}}\n")
    [issue] = _issues(tmp_path, text)
    assert issue.startswith(f"{tmp_path / 'slo-engine.yaml'}:4:") and "http.listen: " in issue
    assert f"'{listen}' is not host:port; write e.g. 127.0.0.1:8080" in issue
    for fine in ("0.0.0.0:8080", ":8080", "[::1]:8080"):
        assert _load(tmp_path, text.replace(listen, fine)).http.listen == fine


@pytest.mark.parametrize(("template", "reported"), [
    ("kubectl rollout undo {servce} --to {previous_version}", "unknown placeholder {servce}"),
    ("deploy {service}", "needs {previous_version}"),
    ("patch -p '{\"image\": {previous_version}'", "literal braces as {{ and }}"),
])
def test_a_rollback_template_is_checked_at_load(tmp_path: Path, template: str,
                                                reported: str) -> None:
    text = ("apiVersion: slo-engine/v1\nkind: EngineConfig\nprometheus: {url: http://p}\n"
            f"changes:\n  rollback_template: {json.dumps(template)}\n")
    [issue] = _issues(tmp_path, text)
    assert ":5:" in issue and "changes.rollback_template: " in issue and reported in issue
    fine = "helm rollback {service} --version {previous_version} # {{not a placeholder}}"
    config = _load(tmp_path, text.replace(json.dumps(template), json.dumps(fine)))
    assert config.changes.rollback_template == fine


def test_a_file_that_is_not_an_engine_config_says_what_it_should_start_with(
        tmp_path: Path) -> None:
    issues = _issues(tmp_path, "service: checkout\nslos: []\n")
    assert any("apiVersion" in i for i in issues)


@pytest.mark.parametrize(("mistake", "reported"), [
    ('http: {tokens: "${HTTP_TOKEN}"}', "http.tokens: expected a list"),
    ('slack: {token: {value: "${SLACK_BOT_TOKEN}"}}', "slack.token: expected a string"),
    ('slack: {owners: {shop: "${HTTP_TOKEN}"}}', "slack.owners.shop: expected a mapping"),
    ('slack: {token: "${SLACK_BOT_TOKEN}", retries: 99}', "slack.retries: got 99"),
    ('http: {tokens: ["${HTTP_TOKEN}"], max_body_bytes: "${HTTP_TOKEN}"}',
     "http.max_body_bytes: "),
    ('slack: {token: "xoxb-literal-secret-value", retries: [x]}', "slack.retries: "),
])
def test_secrets_never_appear_in_errors(tmp_path: Path, mistake: str, reported: str) -> None:
    text = "apiVersion: slo-engine/v1\nkind: EngineConfig\nprometheus: {url: http://p}\n"
    issues = "\n".join(_issues(tmp_path, text + mistake + "\n"))
    assert reported in issues  # the mistake is reported ...
    for secret in (SECRET, HTTP_SECRET, "xoxb-literal-secret-value"):
        assert secret not in issues  # ... without the secret


def test_secrets_never_appear_in_repr_dumps_or_logs(tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    config = _load(tmp_path)
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("test").info("config: %s %r", config, config)
    shown = "\n".join([repr(config), str(config), config.model_dump_json(),
                       str(config.model_dump()), caplog.text])
    assert SECRET not in shown
    assert HTTP_SECRET not in shown
    assert "team-a" not in shown  # header values are secrets too (they may be credentials)


def test_owners_route_pages_and_tickets(tmp_path: Path) -> None:
    config = _load(tmp_path)
    assert config.channel_for("shop", "page") == "#shop-pages"
    assert config.channel_for("shop", "ticket") == "#shop-tickets"
    assert config.channel_for("search", "ticket") == "#search"  # no ticket channel: the page one
    with pytest.raises(ConfigError, match=r"no Slack channel for owner 'billing'.*slack\.owners"):
        config.channel_for("billing", "page")
    assert routing_issues(config, {"shop", "billing", "ads"}) == [
        "owner 'ads' has no Slack channel: add slack.owners.ads.page, or set "
        "slack.fallback_channel",
        "owner 'billing' has no Slack channel: add slack.owners.billing.page, or set "
        "slack.fallback_channel",
    ]


def test_the_fallback_channel_receives_unrouted_owners(tmp_path: Path) -> None:
    text = BASE.replace("slack:\n", "slack:\n  fallback_channel: '#sre'\n")
    config = _load(tmp_path, text)
    assert config.channel_for("billing", "page") == "#sre"
    assert config.channel_for("shop", "page") == "#shop-pages"
    assert routing_issues(config, {"billing"}) == []


def test_defaults_are_the_documented_ones(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, "apiVersion: slo-engine/v1\nkind: EngineConfig\n"
                                          "prometheus: {url: http://p:9090}\n"), {})
    assert config.paging == "engine"
    assert (config.schedule.evaluate, config.schedule.budget_refresh) == ("1m", "5m")
    assert config.schedule.digest_cron == "0 9 * * *"
    assert config.schedule.digest_chart is True
    assert config.schedule.no_data_after == "10m"
    assert config.http.listen == "127.0.0.1:8080"
    assert config.http.tokens == []
    assert config.changes.lookback == "6h"


# --- `slo-engine config check` ---------------------------------------------------------------


def _check(tmp_path: Path, text: str, capsys: pytest.CaptureFixture[str],
           *extra: str) -> tuple[int, list[str]]:
    path = _write(tmp_path, text)
    code = main(["config", "check", "--config", str(path), *extra])
    out = capsys.readouterr().out
    return code, out.splitlines()


def _slo_file(directory: Path, owner: str = "shop") -> None:
    directory.mkdir(exist_ok=True)
    (directory / "checkout.yaml").write_text(
        f"apiVersion: slo-engine/v1\nservice: checkout\nowner: {owner}\nslos:\n"
        "  - name: success\n    objective: 99.9\n"
        "    sli: {ratio: {bad: 'x_total{code=\"500\"}', total: x_total}}\n", encoding="utf-8")


CHECKED = """\
apiVersion: slo-engine/v1
kind: EngineConfig
slo_files: [slos]
prometheus: {url: "http://127.0.0.1:9"}
slack: {token: "${SLACK_BOT_TOKEN}", owners: {shop: {page: "#shop"}}}
http: {tokens: ["${HTTP_TOKEN}"]}
state: {path: state/state.db}
"""


def test_config_check_passes_a_working_config(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in ENVIRON.items():
        monkeypatch.setenv(name, value)
    _slo_file(tmp_path / "slos")
    code, lines = _check(tmp_path, CHECKED, capsys)
    assert code == 0
    assert lines[-1].endswith("slo-engine.yaml: 0 problems")
    assert any("1 SLOs of 1 services" in line for line in lines)
    assert not (tmp_path / "state").exists()  # checking creates nothing


def test_config_check_lists_every_problem_without_secrets(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in ENVIRON.items():
        monkeypatch.setenv(name, value)
    _slo_file(tmp_path / "slos", owner="billing")  # no channel for billing
    (tmp_path / "state").write_text("a file where a directory belongs", encoding="utf-8")
    text = CHECKED.replace("http: {tokens: [\"${HTTP_TOKEN}\"]}\n", "paging: alertmanager\n") \
        .replace("slack: {", "slack: {base_url: 'http://127.0.0.1:9/api/', retries: 0, ") \
        + "schedule: {digest_cron: '0 25 * * *'}\n"
    code, lines = _check(tmp_path, text, capsys, "--connect")
    problems = [line for line in lines if line.startswith("problem: ")]
    assert code == 1
    assert len(problems) == 6, lines
    assert any("owner 'billing' has no Slack channel" in p for p in problems)
    assert any("state.path" in p and "is a file, not a directory" in p for p in problems)
    assert any("schedule.digest_cron '0 25 * * *'" in p for p in problems)
    assert any("http.tokens is empty" in p and "paging is alertmanager" in p for p in problems)
    assert any("Prometheus at http://127.0.0.1:9 is unavailable: connection refused" in p
               for p in problems)
    assert any("Slack did not answer auth.test at http://127.0.0.1:9/api/" in p
               for p in problems)
    assert lines[-1].endswith("6 problems")
    assert SECRET not in "\n".join(lines)


def test_config_check_locates_mistakes_in_the_config_and_the_slo_files(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, lines = _check(tmp_path, "apiVersion: slo-engine/v1\nkind: EngineConfig\n"
                                   "prometheus: {url: http://p, timout: 5s}\n", capsys)
    assert code == 1
    assert any(":3:29: prometheus.timout: unknown field 'timout'; did you mean 'timeout'?" in
               line for line in lines)
    _slo_file(tmp_path / "slos")
    broken = tmp_path / "slos" / "cart.yaml"
    broken.write_text("apiVersion: slo-engine/v1\nservice: cart\nowner: shop\nslos:\n"
                      "  - name: success\n    objective: 120\n"
                      "    sli: {ratio: {total: x_total}}\n", encoding="utf-8")
    code, lines = _check(tmp_path, CHECKED.replace("${SLACK_BOT_TOKEN}", "x").replace(
        "${HTTP_TOKEN}", "y"), capsys)
    assert code == 1
    assert any(line.startswith(f"problem: {broken}:6:") and "objective" in line
               for line in lines)
