"""What changed before a burn: the changes preceding its onset, and the suspect among them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from slo_engine.changes import Change


@dataclass(frozen=True)
class Correlation:
    """The context of one burn, as the page shows it."""

    onset: datetime | None  # when the error ratio first rose above the tier's threshold
    changes: tuple[Change, ...]  # within the lookback before the onset, newest first
    suspect: Change | None  # latest deploy/config/flag change within the suspect window
    rollback_command: str | None  # the suspect's, given or derived from previous_version
    lookback_seconds: float
