"""The public API: `slo_engine.__all__` is sorted, and every name in it can be imported."""

from __future__ import annotations

import importlib
import re

import pytest

import slo_engine


def isort_style(name: str) -> tuple[int, list[str | int]]:
    """Ruff's RUF022 order: CONSTANTS, then Classes, then functions; each naturally sorted."""
    kind = 0 if name.isupper() else 1 if name[:1].isupper() else 2
    natural = [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]
    return kind, natural


def test_all_is_sorted_and_unique() -> None:
    assert slo_engine.__all__ == sorted(set(slo_engine.__all__), key=isort_style)
    assert slo_engine.__all__[:2] == ["SLO", "AlertTier"]  # SLO is a class, but all capitals


def test_the_sort_order_is_rufs() -> None:
    assert sorted(["load", "Service", "API_V2", "API_V10", "AlertTier"], key=isort_style) == [
        "API_V2", "API_V10", "AlertTier", "Service", "load"]


@pytest.mark.parametrize("name", slo_engine.__all__)
def test_every_exported_name_is_importable(name: str) -> None:
    module = importlib.import_module("slo_engine")
    assert getattr(module, name) is not None
    namespace: dict[str, object] = {}
    exec(f"from slo_engine import {name}", namespace)
    assert namespace[name] is getattr(module, name)


def test_exported_names_are_defined_in_the_package() -> None:
    for name in slo_engine.__all__:
        assert getattr(slo_engine, name).__module__.startswith("slo_engine."), name
