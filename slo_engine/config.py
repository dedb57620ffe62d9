"""The engine configuration (`slo-engine.yaml`): where Prometheus, Slack and the state are.

Secrets arrive by `${ENV}` interpolation (`${NAME:-default}` for a default) and are kept as
SecretStr, so no repr, log line or error message can show them.
"""

from __future__ import annotations

import os
import re
import string
from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from slo_engine.changes.events import DEFAULT_ROLLBACK_TEMPLATE, ROLLBACK_PLACEHOLDERS
from slo_engine.errors import ConfigError, SpecError, SpecIssue
from slo_engine.redaction import redact
from slo_engine.spec.durations import parse_duration
from slo_engine.spec.loader import PathKey, SpecDocument, model_issues, read_yaml_file

_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _duration(value: str) -> str:
    parse_duration(value)
    return value


class PrometheusConfig(_Section):
    url: str = Field(description="Base URL of the Prometheus HTTP API (or Mimir/Thanos query).")
    headers: dict[str, SecretStr] = Field(default_factory=dict,
                                          description="e.g. X-Scope-OrgID for a Mimir tenant.")
    timeout: str = "30s"
    step: str = "5m"

    _timeout = field_validator("timeout", "step")(_duration)

    def header_values(self) -> dict[str, str]:
        return {name: value.get_secret_value() for name, value in self.headers.items()}


class OwnerChannels(_Section):
    page: str = Field(description="Channel for pages (fast burns).")
    ticket: str | None = Field(None, description="Channel for tickets; default: the page one.")


class SlackConfig(_Section):
    token: SecretStr | None = Field(None, description="Bot token, e.g. ${SLACK_BOT_TOKEN}.")
    base_url: str = "https://slack.com/api/"
    owners: dict[str, OwnerChannels] = Field(default_factory=dict)
    fallback_channel: str | None = Field(
        None, description="Where pages of an owner without a route go; without it, an "
                          "unrouted owner is a config error.")
    retries: int = Field(3, ge=0, le=20)
    dry_run: bool = Field(False, description="Render messages in the terminal; send nothing.")


class BuildInfoSource(_Section):
    metric: str = "app_build_info"
    service_label: str = "service"
    version_label: str = "version"


class ChangesConfig(_Section):
    lookback: str = Field("6h", description="How far before a burn's onset changes are shown.")
    suspect_window: str = Field("2h", description="How close before the onset a change must be "
                                                  "to be named the suspect.")
    rollback_template: str = DEFAULT_ROLLBACK_TEMPLATE
    files: list[Path] = Field(default_factory=list, description="JSON-lines files to import.")
    build_info: list[BuildInfoSource] = Field(default_factory=list)

    _windows = field_validator("lookback", "suspect_window")(_duration)

    @field_validator("rollback_template")
    @classmethod
    def _placeholders(cls, template: str) -> str:
        """Caught here, a typo in the template is a config error instead of a page whose
        rollback command silently keeps `{previous_verison}` as written."""
        try:
            names = {name for _, name, _, _ in string.Formatter().parse(template) if name}
        except ValueError as error:
            raise ValueError(f"{error}; write literal braces as {{{{ and }}}}") from None
        unknown = sorted(names - set(ROLLBACK_PLACEHOLDERS))
        if unknown:
            raise ValueError(f"unknown placeholder {{{unknown[0]}}}; use "
                             + ", ".join(f"{{{n}}}" for n in ROLLBACK_PLACEHOLDERS)
                             + " (literal braces as {{ and }})")
        if "previous_version" not in names:
            raise ValueError("needs {previous_version}: the version to roll back to")
        return template


class StateConfig(_Section):
    path: Path = Field(Path(".slo-engine/state.db"), description=(
        "SQLite file of the state (one engine); exclusive with url."))
    url: SecretStr | None = Field(None, description=(
        "PostgreSQL shared by replicas, e.g. postgresql://slo:${PGPASSWORD}@db:5432/slo; "
        "exclusive with path."))

    @field_validator("url")
    @classmethod
    def _postgresql(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith(
                ("postgresql://", "postgres://")):
            raise ValueError("not a PostgreSQL URL; write "
                             "postgresql://USER:PASSWORD@HOST:PORT/DATABASE (the password "
                             "as ${ENV})")
        return value

    @model_validator(mode="after")
    def _one_store(self) -> StateConfig:
        if self.url is not None and "path" in self.model_fields_set:
            raise ValueError("state.path (SQLite) and state.url (PostgreSQL) are exclusive: "
                             "keep one")
        return self

    @property
    def location(self) -> str:
        """Where the state lives, for messages: the path, or the URL without credentials."""
        return redact(self.url.get_secret_value()) if self.url is not None else str(self.path)


class ScheduleConfig(_Section):
    evaluate: str = "1m"
    budget_refresh: str = "5m"
    digest_cron: str = Field("0 9 * * *", description="Daily digest, crontab fields, UTC.")
    digest_chart: bool = Field(True, description="Attach to each digest the burn-down of its "
                                                 "SLO with the least error budget left.")
    no_data_after: str = Field("10m", description="Prometheus silent this long: a notice.")

    _intervals = field_validator("evaluate", "budget_refresh", "no_data_after")(_duration)


class ViewConfig(_Section):
    """Who may read the web view at `/`: anyone by default (it is read-only; put it behind
    the company's proxy), or holders of a bearer token, or basic-auth users."""

    enabled: bool = Field(True, description="Serve the read-only web view at /.")
    auth: Literal["none", "basic", "bearer"] = "none"
    tokens: list[SecretStr] = Field(default_factory=list, description=(
        "auth: bearer: the tokens that may read the view, e.g. ${SLO_VIEW_TOKEN}."))
    users: dict[str, SecretStr] = Field(default_factory=dict, description=(
        "auth: basic: user name to password, e.g. {oncall: ${SLO_VIEW_PASSWORD}}."))

    @model_validator(mode="after")
    def _credentials(self) -> ViewConfig:
        if self.auth == "bearer" and not any(t.get_secret_value() for t in self.tokens):
            raise ValueError("auth: bearer needs at least one token under http.view.tokens")
        if self.auth == "basic" and not self.users:
            raise ValueError("auth: basic needs at least one user under http.view.users")
        return self


class ServiceConfig(_Section):
    replica_id: str | None = Field(None, min_length=1, max_length=200, description=(
        "This replica's name in the leadership lease; default hostname-pid. Unique per "
        "replica sharing one state store."))
    lease: str = Field("30s", description=(
        "How long the leader's lease lasts unrenewed (renewed every third of it): a killed "
        "leader's standby takes over within it."))

    @field_validator("lease")
    @classmethod
    def _lease(cls, value: str) -> str:
        if parse_duration(value) < 3:
            raise ValueError(f"{value!r} is too short: the lease is renewed every third of "
                             "it; write at least 3s (default 30s)")
        return value


class HttpConfig(_Section):
    listen: str = Field("127.0.0.1:8080", description="host:port; [::1]:8080 for IPv6.")
    public_url: str | None = Field(None, description=(
        "The web view's URL as Slack readers reach it, e.g. https://slo.example.com: pages "
        "and notices link to <public_url>/slo/<service>/<slo> when an SLO has no "
        "dashboard_url."))
    view: ViewConfig = ViewConfig()
    tokens: list[SecretStr] = Field(default_factory=list,
                                    description="Bearer tokens accepted for writes.")
    max_body_bytes: int = Field(65_536, ge=1024, le=10_485_760)
    header_timeout: float = Field(10.0, gt=0, le=300, description=(
        "Seconds a connection may take to send a request's headers (idle ones included)."))
    body_timeout: float = Field(10.0, gt=0, le=300, description=(
        "Seconds a request body may go without a byte before the connection is closed."))
    max_connections: int = Field(4096, ge=16, le=65_536, description=(
        "Open connections in all; beyond it new ones are reset."))
    max_connections_per_client: int = Field(256, ge=1, le=65_536, description=(
        "Open connections per client address; beyond it writes get 429 (probes are served)."))
    max_queued_writes: int = Field(512, ge=1, le=65_536, description=(
        "Writes waiting for the state database; beyond it, or after 10 s waiting, 429."))

    @field_validator("public_url")
    @classmethod
    def _absolute_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("https://", "http://")):
            raise ValueError(f"{value!r} is not an absolute URL; write e.g. "
                             "https://slo.example.com (Slack links need the scheme)")
        return value

    @field_validator("listen")
    @classmethod
    def _host_and_port(cls, value: str) -> str:
        port = value.rpartition(":")[2]
        if not (port.isdigit() and int(port) <= 65535):
            raise ValueError(f"{value!r} is not host:port; write e.g. 127.0.0.1:8080, or "
                             "0.0.0.0:8080 to listen on every interface")
        return value


class EngineConfig(_Section):
    """The whole `slo-engine.yaml`."""

    api_version: Literal["slo-engine/v1"] = Field(alias="apiVersion")
    kind: Literal["EngineConfig"]
    slo_files: list[Path] = Field(default_factory=lambda: [Path("slo_definitions")])
    paging: Literal["engine", "alertmanager"] = Field(
        "engine", description="engine: evaluate tiers itself; alertmanager: enrich webhooks.")
    prometheus: PrometheusConfig
    slack: SlackConfig = SlackConfig()
    changes: ChangesConfig = ChangesConfig()
    state: StateConfig = StateConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    http: HttpConfig = HttpConfig()
    service: ServiceConfig = ServiceConfig()

    def channel_for(self, owner: str, severity: str) -> str:
        """The Slack channel of an owner's pages or tickets; ConfigError when unrouted."""
        route = self.slack.owners.get(owner)
        if route is None:
            if self.slack.fallback_channel:
                return self.slack.fallback_channel
            raise ConfigError(f"no Slack channel for owner {owner!r}: add it under "
                              "slack.owners in the engine config, or set "
                              "slack.fallback_channel")
        return route.ticket if severity == "ticket" and route.ticket else route.page


def load_config(path: str | Path, environ: Mapping[str, str] | None = None) -> EngineConfig:
    """Read, interpolate and check the engine config; SpecError locates every mistake."""
    document = read_yaml_file(path, "'apiVersion: slo-engine/v1' and 'kind: EngineConfig'")
    issues: list[SpecIssue] = []
    environ = os.environ if environ is None else environ
    hidden = _environment_values(document.data, environ)
    document.data = _interpolate(document.data, (), document, environ, issues)
    if issues:
        raise SpecError(issues)
    try:
        config = EngineConfig.model_validate(document.data)
    except ValidationError as error:
        raise SpecError(_redacted(model_issues(error, document, EngineConfig),
                                  hidden | _secret_values(document.data))) from None
    base = Path(path).parent
    return config.model_copy(update={
        "slo_files": [base / p for p in config.slo_files],
        "state": config.state.model_copy(update={"path": base / config.state.path}),
        "changes": config.changes.model_copy(
            update={"files": [base / p for p in config.changes.files]}),
    })


def routing_issues(config: EngineConfig, owners: set[str]) -> list[str]:
    """Owners of loaded SLOs that no channel would receive: `config check` lists them."""
    if config.slack.fallback_channel:
        return []
    return [f"owner {owner!r} has no Slack channel: add slack.owners.{owner}.page, or set "
            "slack.fallback_channel" for owner in sorted(owners - set(config.slack.owners))]


def _secret_values(data: Any) -> set[str]:
    """The strings given where secrets go (tokens, headers), whatever their shape, so an
    error about a mistyped secret never prints it."""
    if not isinstance(data, dict):
        return set()
    found: list[Any] = []
    for section, key in (("slack", "token"), ("http", "tokens"), ("prometheus", "headers"),
                         ("state", "url")):
        part = data.get(section)
        if isinstance(part, dict) and key in part:
            found.append(part[key])
    return {value for value in _strings(found) if value}


def _environment_values(data: Any, environ: Mapping[str, str]) -> set[str]:
    """The values of the environment variables a config reads: secrets arrive that way,
    so no error shows them, whichever field they landed in."""
    names = {name for text in _strings([data]) for name, _ in _VARIABLE.findall(text)}
    return {environ[name] for name in names if environ.get(name)}


def _strings(values: list[Any]) -> Iterator[str]:
    while values:
        value = values.pop()
        if isinstance(value, dict):
            values.extend(value.values())
        elif isinstance(value, list):
            values.extend(value)
        elif isinstance(value, str):
            yield value


def _redacted(issues: list[SpecIssue], secrets: set[str]) -> list[SpecIssue]:
    def scrub(text: str) -> str:
        for secret in sorted(secrets, key=len, reverse=True):
            text = text.replace(secret, "***")
        return text
    return [replace(issue, message=scrub(issue.message)) for issue in issues]


def _interpolate(value: Any, path: PathKey, document: SpecDocument, environ: Mapping[str, str],
                 issues: list[SpecIssue]) -> Any:
    if isinstance(value, dict):
        return {k: _interpolate(v, (*path, k), document, environ, issues)
                for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, (*path, i), document, environ, issues)
                for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in environ:
            return environ[name]
        if default is not None:
            return default
        issues.append(document.issue(path, f"environment variable {name} is not set; export "
                                     f"it or write ${{{name}:-default}}"))
        return ""
    return _VARIABLE.sub(substitute, value)
