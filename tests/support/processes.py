"""Server processes the tests start (Prometheus, Alertmanager): launched on 127.0.0.1,
waited for on /-/ready, stopped by PID (TERM, then KILL); an atexit hook stops what an
interrupted run would otherwise leave behind."""

from __future__ import annotations

import atexit
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

READY_TIMEOUT = 30.0  # seconds; both servers are ready in ~0.13 s here
STOP_TIMEOUT = 10.0  # seconds between TERM and KILL; they exit in < 1 s

_STARTED: dict[int, subprocess.Popen[bytes]] = {}


class ServerError(RuntimeError):
    """A server failed to start or answer; the message carries its own output."""


def free_port() -> int:
    """A port free right now on 127.0.0.1 (callers retry if the server loses the race)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def is_ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


@dataclass
class ServerProcess:
    """One running binary, its log appended to `log_file`."""

    name: str
    log_file: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def running(self) -> bool:
        return self.process is not None

    def launch(self, args: Sequence[str], url: str) -> bool:
        """Start and wait until `url` is ready; False when the port was taken (pick another
        and call again), ServerError on any other failure."""
        if self.process is not None:
            raise ServerError(f"{self.name} is already running")
        offset = self.log_file.stat().st_size if self.log_file.exists() else 0
        with self.log_file.open("ab") as log:
            process = subprocess.Popen(list(args), stdout=log, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL)
        self.process = process
        _STARTED[process.pid] = process
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if process.poll() is not None:
                self._forget()
                text = self.log_file.read_bytes()[offset:].decode(errors="replace")
                if "address already in use" in text:
                    return False
                raise ServerError(f"{self.name} exited with {process.returncode}:\n"
                                  f"{text[-3000:]}")
            if is_ready(url):
                return True
            time.sleep(0.05)
        self.stop()
        raise ServerError(f"{self.name} not ready after {READY_TIMEOUT:.0f} s:\n"
                          f"{self.log_tail()}")

    def launch_on_a_free_port(self, port: int, args: Callable[[int], Sequence[str]]) -> int:
        """Launch listening on `port` (a free one when 0) and return the port; when another
        process took it meanwhile, launch on another free one (three tries in all)."""
        for _attempt in range(3):
            port = port or free_port()
            if self.launch(args(port), f"http://127.0.0.1:{port}"):
                return port
            port = 0
        raise ServerError(f"{self.name} could not bind a port:\n{self.log_tail()}")

    def stop(self) -> None:
        """TERM by PID, KILL if it has not exited within STOP_TIMEOUT."""
        process = self.process
        if process is None:
            return
        try:
            _terminate(process)
        finally:
            self._forget()

    def log_tail(self, chars: int = 3000) -> str:
        if not self.log_file.exists():
            return ""
        return self.log_file.read_bytes()[-chars:].decode(errors="replace")

    def _forget(self) -> None:
        if self.process is not None:
            _STARTED.pop(self.process.pid, None)
        self.process = None


def _terminate(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(STOP_TIMEOUT)


@atexit.register
def _stop_all() -> None:
    """Last resort for an interrupted run: stop what this process started, newest first."""
    for pid in sorted(_STARTED, reverse=True):
        _terminate(_STARTED.pop(pid))
