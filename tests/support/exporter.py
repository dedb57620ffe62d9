"""A small /metrics exporter whose traffic the test controls while Prometheus scrapes it.

Counters advance with wall time at `rps`, split by the current error ratio and slow share,
so a test turns an outage on and off with `set()` and sees it in Prometheus seconds later.
Series: http_requests_total{code}, http_request_duration_seconds_bucket{le} (+ _count,
_sum), and app_build_info{service, version} = 1.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
FAST_SECONDS = 0.04
SLOW_SECONDS = 2.0


class Exporter:
    def __init__(self, *, rps: float = 100.0, error_ratio: float = 0.0, slow_ratio: float = 0.0,
                 labels: Mapping[str, str] | None = None, service: str = "api",
                 version: str = "v1") -> None:
        self.rps = rps
        self.error_ratio = error_ratio
        self.slow_ratio = slow_ratio
        self.labels = dict(labels or {})
        self.service = service
        self.version = version
        self._lock = threading.Lock()
        self._last = time.monotonic()
        self._ok = 0.0
        self._errors = 0.0
        self._fast = 0.0
        self._slow = 0.0
        self._server: ThreadingHTTPServer | None = None

    def start(self) -> Exporter:
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = exporter.render().encode() if self.path == "/metrics" else b""
                self.send_response(200 if self.path == "/metrics" else 404)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    @property
    def port(self) -> int:
        assert self._server is not None, "start() the exporter first"
        return int(self._server.server_address[1])

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def set(self, *, error_ratio: float | None = None, slow_ratio: float | None = None,
            rps: float | None = None, version: str | None = None) -> None:
        """Change the traffic from now on; what was served so far stays counted."""
        with self._lock:
            self._advance()
            if error_ratio is not None:
                self.error_ratio = error_ratio
            if slow_ratio is not None:
                self.slow_ratio = slow_ratio
            if rps is not None:
                self.rps = rps
            if version is not None:
                self.version = version

    def _advance(self) -> None:
        now = time.monotonic()
        served = self.rps * (now - self._last)
        self._last = now
        self._errors += served * self.error_ratio
        self._ok += served * (1 - self.error_ratio)
        self._slow += served * self.slow_ratio
        self._fast += served * (1 - self.slow_ratio)

    def render(self) -> str:
        with self._lock:
            self._advance()
            ok, errors, fast, slow = self._ok, self._errors, self._fast, self._slow
            version = self.version
        base = ",".join(f'{k}="{v}"' for k, v in sorted(self.labels.items()))
        sep = "," if base else ""
        lines = ["# TYPE http_requests_total counter",
                 f'http_requests_total{{{base}{sep}code="200"}} {ok:.3f}',
                 f'http_requests_total{{{base}{sep}code="500"}} {errors:.3f}',
                 "# TYPE http_request_duration_seconds histogram"]
        for bound in BUCKETS:
            count = fast + (slow if bound >= SLOW_SECONDS else 0.0)
            lines.append(f'http_request_duration_seconds_bucket{{{base}{sep}le="{bound}"}} '
                         f"{count:.3f}")
        lines.append(f'http_request_duration_seconds_bucket{{{base}{sep}le="+Inf"}} '
                     f"{fast + slow:.3f}")
        lines.append(f"http_request_duration_seconds_count{{{base}}} {fast + slow:.3f}")
        lines.append(f"http_request_duration_seconds_sum{{{base}}} "
                     f"{fast * FAST_SECONDS + slow * SLOW_SECONDS:.3f}")
        lines.append("# TYPE app_build_info gauge")
        lines.append(f'app_build_info{{service="{self.service}",version="{version}"}} 1')
        return "\n".join(lines) + "\n"
