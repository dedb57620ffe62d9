"""The one exception hierarchy of slo-engine.

Every error a user can cause is a subclass of SloEngineError, with a message that says
what went wrong, where, and how to fix it; the CLI prints it without a traceback.

    SloEngineError
    ├── SpecError            an SLO file is wrong (carries every SpecIssue found)
    └── RulesOutError        rules_out/ cannot be written or is stale
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


class SpecError(SloEngineError):
    """One or more SLO files are invalid; `issues` lists every mistake, not just the first."""

    def __init__(self, issues: list[SpecIssue]) -> None:
        self.issues = sorted(issues)
        super().__init__("\n".join(str(issue) for issue in self.issues))


class RulesOutError(SloEngineError):
    """Generated rules cannot be written, or the committed ones are stale."""
