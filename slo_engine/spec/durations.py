"""Prometheus durations, as written in SLO specs and in generated rules."""

from __future__ import annotations

import re

_UNIT_SECONDS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1, "ms": 0.001}
_DURATION = re.compile(
    r"^(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m(?!s))?(?:(\d+)s)?(?:(\d+)ms)?$"
)
_UNITS = ("w", "d", "h", "m", "s", "ms")


def parse_duration(text: str) -> float:
    """Seconds in a Prometheus duration such as `30d`, `1h30m` or `500ms`.

    Raises ValueError with the accepted forms, for the spec validator to show.
    """
    match = _DURATION.match(text.strip()) if isinstance(text, str) else None
    if not match or not any(match.groups()) or text.strip() == "":
        raise ValueError(
            f"{text!r} is not a duration; write a number and a unit, e.g. 500ms, 5m, 1h, 30d, 4w"
        )
    return sum(int(n) * _UNIT_SECONDS[u] for n, u in zip(match.groups(), _UNITS, strict=True) if n)


def format_duration(seconds: float) -> str:
    """The shortest Prometheus duration for `seconds` (inverse of parse_duration)."""
    if seconds <= 0:
        return "0s"
    millis = round(seconds * 1000)
    parts: list[str] = []
    for unit in _UNITS:
        size = round(_UNIT_SECONDS[unit] * 1000)
        if unit == "w":
            continue  # 7d, 28d and 30d are how SRE write periods
        count, millis = divmod(millis, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def describe_seconds(seconds: float | None) -> str:
    """A span as a person reads it: seconds under a minute, else rounded to the minute."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.0f}s"
    return format_duration(round(seconds / 60) * 60)
