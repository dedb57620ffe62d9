"""A real PostgreSQL for tests and the bench: Debian's server binaries, a cluster created by
`initdb` in a directory of its own, listening on 127.0.0.1 at a free port, stopped by PID.

PostgreSQL refuses to run as root, so as root the cluster belongs to `nobody` and its
directory lives outside pytest's private temporary tree (which `nobody` cannot enter).
Stopping and starting the same cluster again is how tests take the database away.
"""

from __future__ import annotations

import contextlib
import glob
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.binaries import found_or_fail
from tests.support.processes import _STARTED, ServerError, _terminate, free_port

READY_TIMEOUT = 30.0
INSTALL_HINT = ("install Debian's PostgreSQL server: apt-get update && apt-get install -y "
                "--no-install-recommends postgresql (or `make test`, which does it); set "
                "SLO_ENGINE_SKIP_POSTGRES=1 to skip these tests locally")


def server_binaries() -> Path | None:
    """The newest Debian PostgreSQL's bin directory (initdb, postgres), if installed."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"),
                   key=lambda p: int(Path(p).parent.parent.name))
    return Path(found[-1]).parent if found else None


def require_postgres() -> Path:
    """The server binaries, or the test fails with an install hint (skips only on opt-out)."""
    binaries = server_binaries()
    return Path(found_or_fail(str(binaries) if binaries else None, "PostgreSQL server",
                              "SLO_ENGINE_SKIP_POSTGRES", INSTALL_HINT))


def _as_owner(args: list[str]) -> list[str]:
    return ["runuser", "-u", "nobody", "--", *args] if os.geteuid() == 0 else args


@dataclass
class PostgresServer:
    """One PostgreSQL cluster; `url` is a libpq URL of its `postgres` database."""

    binaries: Path
    port: int = 0
    workdir: Path = field(default_factory=lambda: Path(
        tempfile.mkdtemp(prefix="slo-engine-pg-")))
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def data_dir(self) -> Path:
        return self.workdir / "data"

    @property
    def log_file(self) -> Path:
        return self.workdir / "postgres.log"

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def initdb(self) -> None:
        if os.geteuid() == 0:
            shutil.chown(self.workdir, "nobody")
        self.workdir.chmod(0o755)
        done = subprocess.run(
            _as_owner([str(self.binaries / "initdb"), "-D", str(self.data_dir), "-A", "trust",
                       "-U", "postgres", "--no-sync", "-E", "UTF8", "--locale", "C"]),
            capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise ServerError(f"initdb failed:\n{done.stdout}{done.stderr}")

    def start(self) -> PostgresServer:
        """Create the cluster on the first start; start it on its port (a free one the first
        time, the same one after a stop, as a restarted database server keeps its address)."""
        if self.process is not None:
            raise ServerError("PostgreSQL is already running")
        if not (self.data_dir / "PG_VERSION").exists():
            self.initdb()
        if self.port == 0:
            self.port = free_port()
        with self.log_file.open("ab") as log:
            if os.geteuid() == 0:
                shutil.chown(self.log_file, "nobody")
            process = subprocess.Popen(
                _as_owner([str(self.binaries / "postgres"), "-D", str(self.data_dir),
                           "-h", "127.0.0.1", "-p", str(self.port), "-k", str(self.workdir),
                           "-c", "fsync=off", "-c", "full_page_writes=off",
                           "-c", "max_connections=200"]),
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.process = process
        _STARTED[process.pid] = process
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if process.poll() is not None:
                self._forget()
                raise ServerError(f"PostgreSQL exited with {process.returncode}:\n"
                                  f"{self.log_tail()}")
            if self._accepts():
                return self
            time.sleep(0.05)
        self.stop()
        raise ServerError(f"PostgreSQL not ready after {READY_TIMEOUT:.0f} s:\n"
                          f"{self.log_tail()}")

    def _accepts(self) -> bool:
        with contextlib.suppress(OSError), \
                socket.create_connection(("127.0.0.1", self.port), timeout=1):
            done = subprocess.run(
                [str(self.binaries / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port),
                 "-U", "postgres"], capture_output=True, check=False)
            return done.returncode == 0
        return False

    def stop(self) -> None:
        """TERM by PID (PostgreSQL's smart shutdown waits for clients, so fast: INT)."""
        process = self.process
        if process is None:
            return
        try:
            if process.poll() is None:
                process.send_signal(2)  # SIGINT: fast shutdown, clients disconnected
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    _terminate(process)
        finally:
            self._forget()

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def log_tail(self, chars: int = 3000) -> str:
        if not self.log_file.exists():
            return ""
        return self.log_file.read_bytes()[-chars:].decode(errors="replace")

    def _forget(self) -> None:
        if self.process is not None:
            _STARTED.pop(self.process.pid, None)
        self.process = None


def new_database(server: PostgresServer) -> str:
    """A fresh, empty database on `server` (a test's own); its libpq URL."""
    import psycopg

    name = f"t_{secrets.token_hex(6)}"
    with psycopg.connect(server.url, autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {name}")  # type: ignore[arg-type]
    return server.url.rpartition("/")[0] + f"/{name}"


@contextlib.contextmanager
def running_postgres() -> Iterator[PostgresServer]:
    """One server for a module's tests, removed (stopped by PID, its directory deleted) after."""
    server = PostgresServer(require_postgres()).start()
    try:
        yield server
    finally:
        server.remove()
