"""Running the real promtool over rule files and unit-test files."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


def run(promtool: str, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600, check=False)


def test_rules(promtool: str, files: Sequence[Path]) -> list[str]:
    """Run `promtool test rules` on each file, both cores busy; return the failures' output."""
    def one(path: Path) -> str | None:
        result = run(promtool, "test", "rules", path.name, cwd=path.parent)
        return None if result.returncode == 0 else f"{path}:\n{result.stdout}{result.stderr}"

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        return [failure for failure in pool.map(one, files) if failure]
