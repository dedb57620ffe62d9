"""Change events: what landed on a service (deploys, config, flags, migrations, infrastructure).

A page is only actionable with the changes that preceded the burn, so changes are kept as
typed, de-duplicated events: one per (service, kind, version, time), whatever path brought
them (CLI, JSON-lines file, HTTP, build-info metric, release gates).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, field_validator

from slo_engine.errors import ChangeError

ChangeKind = Literal["deploy", "config", "feature_flag", "migration", "infrastructure"]
CHANGE_KINDS: tuple[ChangeKind, ...] = ("deploy", "config", "feature_flag", "migration",
                                        "infrastructure")
SUSPECT_KINDS: tuple[ChangeKind, ...] = ("deploy", "config", "feature_flag")
DEFAULT_ROLLBACK_TEMPLATE = "deploy {previous_version}"
ROLLBACK_PLACEHOLDERS = ("previous_version", "service", "version")
_PRINTABLE = r"^[^\x00-\x1f\x7f]+$"  # names end up in Slack messages and terminals
# The span a change may fall in: the state database keeps times as int64 nanoseconds and
# pandas as Timestamps (1677-2262), so anything outside is refused where it enters.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)
# What records changes; any other client-set `source` is counted as "other" in metrics.
CHANGE_SOURCES = ("api", "cli", "file", "http", "build_info", "gate", "canary")


class Change(BaseModel):
    """One change event, as in DESIGN.md; `time` is always UTC."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    time: AwareDatetime
    service: str = Field(min_length=1, max_length=200, pattern=_PRINTABLE)
    kind: ChangeKind
    version: str | None = Field(None, max_length=500, pattern=_PRINTABLE)
    previous_version: str | None = Field(None, max_length=500, pattern=_PRINTABLE)
    commit: str | None = Field(None, max_length=200)
    author: str | None = Field(None, max_length=200)
    url: str | None = Field(None, max_length=2000)
    rollback_command: str | None = Field(None, max_length=2000)
    description: str | None = Field(None, max_length=2000)
    source: str = Field("api", max_length=100,
                        description="What recorded it: cli, file, http, build_info, gate, canary.")

    @field_validator("time")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        try:
            utc = value.astimezone(UTC)
        except OverflowError:  # year 1 or 9999 shifted past the calendar by its offset
            utc = None
        if utc is None or not EARLIEST <= utc < LATEST:
            raise ValueError(f"{value.isoformat().replace('+00:00', 'Z')} is out of range; a "
                             f"change falls between {EARLIEST.date()} and {LATEST.date()} (UTC)")
        return utc

    @property
    def identity(self) -> tuple[str, str, str, str]:
        """What makes two reports the same change (a retried CD step must not add a second)."""
        # In UTC even on a copy (model_copy skips the validator that converts it).
        return (self.service, self.kind, self.version or "",
                self.time.astimezone(UTC).isoformat())

    def rollback(self, template: str = DEFAULT_ROLLBACK_TEMPLATE) -> str | None:
        """The command that undoes this change: the given one, else one built from the
        previous version; None when neither is known."""
        if self.rollback_command:
            return self.rollback_command
        if not self.previous_version or "{previous_version}" not in template:
            return None
        values = dict(zip(ROLLBACK_PLACEHOLDERS,
                          (self.previous_version, self.service, self.version or ""), strict=True))
        try:
            return template.format(**values)
        except (KeyError, IndexError, ValueError):
            # Braces of the command itself (JSON) or a placeholder we do not know: fill the
            # known ones and keep the rest as written, rather than fail the page.
            for name, value in values.items():
                template = template.replace(f"{{{name}}}", value)
            return template

    def as_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


def parse_change(data: Any, where: str = "change") -> Change:
    """A change from decoded JSON, or ChangeError naming `where` and each bad field."""
    try:
        return Change.model_validate(data)
    except ValidationError as error:
        raise ChangeError(f"{where}: {describe_errors(error)}") from None


def describe_errors(error: ValidationError) -> str:
    """Pydantic's errors on a change as one line a CD pipeline log can show."""
    parts = []
    for item in error.errors(include_url=False):
        field = ".".join(str(p) for p in item["loc"]) or "change"
        name = str(item["loc"][-1]) if item["loc"] else ""
        message = str(item["msg"])
        if item["type"] == "extra_forbidden":
            message = f"unknown field; expected one of: {', '.join(Change.model_fields)}"
        elif item["type"] == "literal_error" and name == "kind":
            message = f"got {item.get('input')!r}; expected one of: {', '.join(CHANGE_KINDS)}"
        elif item["type"] == "timezone_aware":
            message = "needs a timezone, e.g. 2026-05-12T14:03:00Z"
        elif item["type"] == "value_error":
            message = message.removeprefix("Value error, ")
        parts.append(f"{field}: {message}")
    return "; ".join(parts)


def read_change_lines(path: Path) -> list[Change]:
    """Every change of a JSON-lines file; one bad line fails the import, naming file:line, so
    nothing is half-imported."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ChangeError(f"{path}: cannot read the file: {error}") from None
    changes: list[Change] = []
    problems: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as error:
            problems.append(f"{path}:{number}:{error.colno}: not JSON: {error.msg}")
            continue
        try:
            changes.append(parse_change({"source": "file", **data} if isinstance(data, dict)
                                        else data, f"{path}:{number}"))
        except ChangeError as error:
            problems.append(str(error))
    if problems:
        raise ChangeError("\n".join(problems))
    return changes


def newest_first(changes: Iterable[Change]) -> list[Change]:
    return sorted(changes, key=lambda c: (c.time, c.identity), reverse=True)
