"""Prometheus durations: parsing what SREs write, formatting what rules need."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from slo_engine.spec.durations import format_duration, parse_duration


@pytest.mark.parametrize(("text", "seconds"), [
    ("500ms", 0.5),
    ("1ms", 0.001),
    ("0s", 0),
    ("90s", 90),
    ("5m", 300),
    ("1h", 3600),
    ("1h30m", 5400),
    ("1m5ms", 60.005),
    ("1d", 86400),
    ("30d", 2_592_000),
    ("1w", 604_800),
    ("4w", 2_419_200),
    ("1w2d3h4m5s6ms", 604_800 + 2 * 86400 + 3 * 3600 + 4 * 60 + 5 + 0.006),
    (" 5m ", 300),
])
def test_parse(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", [
    pytest.param("", id="empty"),
    pytest.param("5", id="no unit"),
    pytest.param("m", id="no number"),
    pytest.param("5 m", id="space inside"),
    pytest.param("1.5h", id="a fraction"),
    pytest.param("-5m", id="negative"),
    pytest.param("5M", id="capital unit"),
    pytest.param("30days", id="a word for the unit"),
    pytest.param("1m1h", id="units out of order"),
    pytest.param("5m5m", id="a unit twice"),
    pytest.param("1y", id="years are not accepted"),
])
def test_not_a_duration(text: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_duration(text)
    assert str(caught.value) == (f"{text!r} is not a duration; write a number and a unit, "
                                 "e.g. 500ms, 5m, 1h, 30d, 4w")


def test_non_strings_are_not_durations() -> None:
    with pytest.raises(ValueError, match="is not a duration"):
        parse_duration(300)  # type: ignore[arg-type]


@pytest.mark.parametrize(("seconds", "text"), [
    (0, "0s"),
    (-5, "0s"),
    (0.5, "500ms"),
    (1, "1s"),
    (60, "1m"),
    (300, "5m"),
    (5400, "1h30m"),
    (86400, "1d"),
    (604_800, "7d"),  # periods read as days, never weeks
    (2_592_000, "30d"),
    (90061.5, "1d1h1m1s500ms"),
])
def test_format(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize(("written", "normal"), [
    ("60m", "1h"),
    ("300s", "5m"),
    ("4w", "28d"),
    ("1w", "7d"),
    ("24h", "1d"),
    ("1000ms", "1s"),
    ("90m", "1h30m"),
])
def test_format_normalises_what_was_written(written: str, normal: str) -> None:
    assert format_duration(parse_duration(written)) == normal


@given(millis=st.integers(min_value=1, max_value=10**12))
def test_format_then_parse_round_trips(millis: int) -> None:
    text = format_duration(millis / 1000)
    assert round(parse_duration(text) * 1000) == millis
    assert format_duration(parse_duration(text)) == text
