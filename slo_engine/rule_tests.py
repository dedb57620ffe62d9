"""promtool unit tests generated from the same model as the rules (filled in next)."""

from __future__ import annotations

from collections.abc import Iterable

from slo_engine.model import Service


def rule_test_files(services: Iterable[Service]) -> dict[str, str]:
    return {}
