"""`slo-engine ui` in a child process for the tests: started on a port it picks (it prints the
URL first), stopped by its PID however the test ends."""

from __future__ import annotations

import re
import select
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

START_TIMEOUT = 60.0


@contextmanager
def serving_ui(arguments: Sequence[str]) -> Iterator[str]:
    """`slo-engine ui ARGUMENTS --listen 127.0.0.1:0`; yields its base URL."""
    process = subprocess.Popen(
        [sys.executable, "-m", "slo_engine", "ui", *arguments, "--listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        yield _served_url(process)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def _served_url(process: subprocess.Popen[bytes]) -> str:
    assert process.stdout is not None
    deadline = time.monotonic() + START_TIMEOUT
    output = b""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([process.stdout], [], [], 0.5)
        if ready:
            line = process.stdout.readline()
            output += line
            found = re.search(rb"http://127\.0\.0\.1:\d+", line)
            if found:
                return found.group().decode()
        if process.poll() is not None:
            break
    raise AssertionError(f"slo-engine ui did not start:\n{output.decode(errors='replace')}")
