"""The one exception hierarchy of slo-engine.

Every error a user can cause is a subclass of SloEngineError, with a message that says
what went wrong, where, and how to fix it; the CLI prints it without a traceback.

    SloEngineError
    ├── SpecError            a YAML file is wrong: SLO file, policy, engine config (every issue)
    ├── ConfigError          the engine config cannot work (unknown owner, missing secret)
    ├── ChangeError          a change event is invalid (names the file and line, or the field)
    ├── StateError           the state database cannot be opened or written
    ├── NotifyError          Slack refused the set-up (bad token, unknown channel): not retried
    │   └── SlackRefused         one call refused with Slack's error code (blocks_all: the token)
    ├── SlackUnavailable     Slack did not take a call (down, 5xx, rate limits): it waits, queued
    ├── RulesOutError        rules_out/ cannot be written or is stale
    ├── LedgerError          an event file or frame is not a ledger (names file and line)
    ├── BackfillError        promtool could not backfill (names the command and its output)
    ├── ReleaseError         a release gate or canary cannot run as asked (unknown service)
    ├── MissingExtra         the command needs an optional part of the install (names the extra)
    └── SourceError          Prometheus could not answer a query (names the URL and the query)
        ├── SourceUnavailable    refused, timed out, 5xx, retries exhausted, not a Prometheus API
        └── QueryError           Prometheus rejected the query (4xx: bad PromQL, limits, auth)
"""

from __future__ import annotations

from dataclasses import dataclass


class SloEngineError(Exception):
    """Root of every error a user can cause."""


@dataclass(frozen=True, order=True)
class SpecIssue:
    """One mistake in an SLO file, located so an editor can jump to it."""

    file: str
    line: int
    column: int
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


@dataclass(frozen=True, order=True)
class SpecWarning(SpecIssue):
    """Something in an SLO file that is valid but probably not meant: reported, never fatal."""

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}"
        return (f"{where}: {self.path}: warning: {self.message}" if self.path
                else f"{where}: warning: {self.message}")


class SpecError(SloEngineError):
    """One or more YAML files are invalid; `issues` lists every mistake, not just the first."""

    def __init__(self, issues: list[SpecIssue], warnings: list[SpecWarning] | None = None) -> None:
        self.issues = sorted(issues)
        self.warnings = sorted(warnings or [])
        super().__init__("\n".join(str(issue) for issue in self.issues))


class ConfigError(SloEngineError):
    """The engine configuration is well-formed but cannot work as written."""


class ChangeError(SloEngineError):
    """A change event cannot be accepted; the message names where and which field."""


class StateError(SloEngineError):
    """The state database cannot be opened, migrated or written."""


class LeaseLost(StateError):
    """This replica no longer leads (another took the lease, or it lapsed): leader-only work
    stops until the lease is won again."""


class NotifyError(SloEngineError):
    """Slack rejected the set-up itself (invalid_auth, channel_not_found, ...): retrying will not
    help, the token or the routing must be fixed. Outages are retried, never raised."""


class SlackRefused(NotifyError):
    """Slack refused a call for a reason retrying will not fix. `blocks_all` when it is the
    set-up (token, base URL): every message would fail, so they stay queued for the fix."""

    def __init__(self, message: str, *, code: str, blocks_all: bool) -> None:
        super().__init__(message)
        self.code = code
        self.blocks_all = blocks_all


class SlackUnavailable(SloEngineError):
    """Slack did not take the call — down, 5xx past the retries, rate-limiting, unreachable.
    The outbox keeps the message; `notify-test` reports it. `retry_after`: the seconds Slack
    asked to wait (a 429's Retry-After), which the outbox honours before the next attempt."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RulesOutError(SloEngineError):
    """Generated rules cannot be written, or the committed ones are stale."""


class LedgerError(SloEngineError):
    """An event file or frame cannot be read as a ledger."""


class BackfillError(SloEngineError):
    """A backfill cannot run or promtool failed. The message names the command and its output."""


class ReleaseError(SloEngineError):
    """`gate` or `canary` cannot run as asked: an unknown service or SLO, a selector that is
    not label matchers, an SLI whose traffic cannot be split into canary and baseline."""


class SourceError(SloEngineError):
    """Prometheus could not answer; the message names the URL and the query, and says why."""

    def __init__(self, message: str, *, url: str = "", query: str = "") -> None:
        super().__init__(message)
        self.url = url
        self.query = query


class SourceUnavailable(SourceError):
    """Prometheus cannot be reached or did not answer in time (refused, timeout, 5xx, retries
    exhausted, or the URL does not serve the Prometheus HTTP API): retry later or fix the URL."""


class QueryError(SourceError):
    """Prometheus answered but rejected the query (HTTP 4xx): bad PromQL, a resolution or
    sample limit, or missing credentials; retrying the same request will not help."""


class MissingExtra(SloEngineError):
    """The command needs a library that only an extra of the install brings; the message names
    the command's need and the `pip install` that adds it."""
