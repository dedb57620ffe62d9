"""A core install (no extras) compiles and accounts; a command that needs an extra names it.

The extras' libraries are hidden from a fresh interpreter by an import hook, as if
`pip install slo-engine` had been run without them; `.ci/run` installs everything, so this is
how the suite sees a core install.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from slo_engine.extras import EXTRA_OF_LIBRARY, missing_extra

ROOT = Path(__file__).resolve().parent.parent

CORE_INSTALL = """
import importlib.abc, sys
HIDDEN = set(sys.argv[1].split(","))
class HideExtras(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in HIDDEN:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, HideExtras())
from slo_engine.cli import main
sys.exit(main(sys.argv[2:]))
"""


def core(*argv: str | Path, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    hidden = ",".join(sorted(EXTRA_OF_LIBRARY))
    return subprocess.run([sys.executable, "-c", CORE_INSTALL, hidden, *map(str, argv)],
                          cwd=cwd, capture_output=True, text=True, timeout=120)


def test_a_core_install_validates_compiles_explains_reports_and_backtests(
        tmp_path: Path) -> None:
    events = tmp_path / "events.csv"
    commands: list[tuple[str | Path, ...]] = [
        ("validate", "slo_definitions"),
        ("compile", "slo_definitions", "--out", tmp_path / "rules"),
        ("explain", "slo_definitions"),
        ("sample-data", "slo_definitions", "--out", events, "--days", "4",
         "--until", "2026-05-31T12:00:00Z"),
        ("report", "slo_definitions", "--data", events, "--at", "2026-05-31T12:00:00Z"),
        ("backtest", "slo_definitions", "--data", events, "--until", "2026-05-31T12:00:00Z",
         "--since", "1d"),
    ]
    for argv in commands:
        done = core(*argv)
        assert done.returncode == 0, (argv, done.stderr)
        assert "Traceback" not in done.stderr
    assert (tmp_path / "rules" / "api.yml").is_file()


@pytest.mark.parametrize(("argv", "extra"), [
    (("run", "--config", "absent.yaml"), "service"),
    (("canary", "slo_definitions", "--slo", "api/api-latency", "--canary", 'track="canary"',
      "--baseline", 'track="stable"', "--prometheus-url", "http://127.0.0.1:9"), "canary"),
    (("report", "slo_definitions", "--data", "{events}", "--at", "2026-05-31T12:00:00Z",
      "--chart", "{charts}"), "charts"),
    (("dashboards", "slo_definitions", "--out", "{charts}"), "dashboards"),
])
def test_a_command_without_its_extra_says_which_to_install(
        tmp_path: Path, argv: tuple[str, ...], extra: str) -> None:
    events = tmp_path / "events.csv"
    assert core("sample-data", "slo_definitions", "--out", events, "--days", "1",
                "--until", "2026-05-31T12:00:00Z").returncode == 0
    argv = tuple(a.format(events=events, charts=tmp_path / "charts") for a in argv)
    done = core(*argv)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert done.stdout == ""  # nothing half done: the error comes before any output
    [line] = done.stderr.strip().splitlines()
    assert line.startswith(f"error: 'slo-engine {argv[0]}' needs the '{extra}' extra")
    assert line.endswith(f"pip install 'slo-engine[{extra}]'")


def test_a_missing_module_no_extra_brings_is_not_blamed_on_an_extra() -> None:
    assert missing_extra(ModuleNotFoundError("x", name="pandas"), "report") is None
    error = missing_extra(ModuleNotFoundError("x", name="scipy.stats"), "canary")
    assert error is not None and "'canary' extra" in str(error)
