"""The read-only web view as an ASGI app: `slo-engine run` mounts it at `/` beside the API and
`slo-engine ui` serves it alone. Server-side rendering (Jinja2, autoescaped), no script, every
asset from the package, a Content-Security-Policy that allows nothing else."""

from __future__ import annotations

import base64
import binascii
import hmac
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from slo_engine import app as use_cases
from slo_engine.app import ViewSnapshot
from slo_engine.config import ViewConfig
from slo_engine.errors import SloEngineError
from slo_engine.redaction import redact
from slo_engine.release.gate import Release
from slo_engine.web import views
from slo_engine.web.burn_down import BurnDown, burn_downs

CONTENT_SECURITY_POLICY = ("default-src 'self'; img-src 'self' data:; style-src 'self'; "
                           "script-src 'self'; object-src 'none'; base-uri 'none'; "
                           "form-action 'self'; frame-ancestors 'none'")
SECURITY_HEADERS = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]
STATIC = Path(__file__).parent / "static"


@dataclass(frozen=True)
class ViewAuth:
    """Who may read the view: anyone (the default, for a view behind the company's proxy),
    holders of a bearer token, or basic-auth users."""

    kind: Literal["none", "basic", "bearer"] = "none"
    tokens: tuple[str, ...] = ()
    users: dict[str, str] = field(default_factory=dict)  # basic: user name to password

    def allows(self, authorization: str) -> bool:
        if self.kind == "none":
            return True
        scheme, _, credential = authorization.partition(" ")
        credential = credential.strip()
        if self.kind == "bearer":
            return scheme.lower() == "bearer" and any(
                hmac.compare_digest(credential.encode(), t.encode()) for t in self.tokens)
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(credential, validate=True).decode().partition(
                ":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        expected = self.users.get(user)
        return expected is not None and hmac.compare_digest(password.encode(),
                                                            expected.encode())

    @property
    def challenge(self) -> str:
        return 'Basic realm="slo-engine"' if self.kind == "basic" else \
            'Bearer realm="slo-engine"'


def view_auth(config: ViewConfig) -> ViewAuth:
    return ViewAuth(config.auth, tuple(t.get_secret_value() for t in config.tokens),
                    {user: p.get_secret_value() for user, p in config.users.items()})


class SnapshotCache:
    """The snapshot the pages read, reloaded when older than `max_age_s` (never when None):
    a page view costs a render, not a Prometheus query. What is derived from a snapshot
    (incidents, gate decisions) is kept with it."""

    def __init__(self, load: Callable[[], ViewSnapshot], max_age_s: float | None) -> None:
        self._load = load
        self._max_age_s = max_age_s
        self._lock = threading.Lock()
        self._snapshot: ViewSnapshot | None = None
        self._loaded = 0.0
        self._derived: dict[tuple[str, ...], Any] = {}

    def get(self) -> ViewSnapshot:
        with self._lock:
            stale = self._max_age_s is not None and \
                time.monotonic() - self._loaded > self._max_age_s
            if self._snapshot is None or stale:
                self._loaded = time.monotonic()  # a failed read is retried after max_age_s
                try:
                    self._snapshot = self._load()
                except SloEngineError as error:
                    if self._snapshot is None:
                        raise
                    self._snapshot = replace(self._snapshot, warnings=[
                        f"could not read newer data, showing the last read: {error}"])
                self._derived = {}
            return self._snapshot

    def derived(self, key: tuple[str, ...], compute: Callable[[ViewSnapshot], Any]) -> Any:
        snapshot = self.get()
        with self._lock:
            if key not in self._derived:
                self._derived[key] = compute(snapshot)
            return self._derived[key]


class _Guard:
    """Security headers on every answer, and the view's auth before anything is served."""

    def __init__(self, app: ASGIApp, auth: ViewAuth) -> None:
        self.app = app
        self.auth = auth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        headers = dict(scope["headers"])
        authorization = headers.get(b"authorization", b"").decode("latin-1")
        if not self.auth.allows(authorization):
            response = Response("authentication required\n", status_code=401,
                                media_type="text/plain",
                                headers={"WWW-Authenticate": self.auth.challenge})
            await response(scope, receive, with_headers)
            return
        await self.app(scope, receive, with_headers)


def create_view(cache: SnapshotCache, auth: ViewAuth | None = None) -> ASGIApp:
    """The view's pages: `/` (the SLO list), `/slo/{service}/{slo}`, `/changes`,
    `/incidents`, and `/static/` for the stylesheet."""
    view = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    templates = Environment(loader=PackageLoader("slo_engine.web", "templates"),
                            autoescape=select_autoescape(default=True, default_for_string=True))
    templates.globals.update(percent=views.percent, burn=views.burn, when=views.when)
    view.mount("/static", StaticFiles(directory=STATIC), name="static")

    @view.exception_handler(SloEngineError)
    def unavailable(request: Request, error: SloEngineError) -> HTMLResponse:
        """Nothing read yet and the source fails (Prometheus down): say so, not a 500."""
        body = templates.get_template("unavailable.html").render(error=redact(str(error)))
        return HTMLResponse(body, status_code=503, headers={"Retry-After": "60"})

    def page(name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        snapshot = cache.get()
        body = templates.get_template(name).render(at=snapshot.at,
                                                   warnings=snapshot.warnings, **context)
        return HTMLResponse(body, status_code=status_code)

    @view.get("/", response_class=HTMLResponse)
    def slo_list(request: Request) -> HTMLResponse:
        rows = cache.derived(("rows",), views.slo_rows)
        listed = views.slo_list(rows, dict(request.query_params))
        return page("list.html", listed=listed, section="slos")

    @view.get("/slo/{service}/{name}", response_class=HTMLResponse)
    def slo_page(service: str, name: str) -> HTMLResponse:
        snapshot = cache.get()
        slo = views.find_slo(snapshot, service, name)
        if slo is None:
            return page("not_found.html", 404, section="slos",
                        what=f"no SLO {service}/{name}")
        incidents: pd.DataFrame = cache.derived(
            ("incidents", service, name), lambda s: use_cases.snapshot_incidents(s, [slo]))
        outcome: Release = cache.derived(
            ("gate", service), lambda s: use_cases.release_decision(s, service))
        shown = views.slo_page(snapshot, slo, incidents, outcome)
        start = min((g.period_start for g in shown.groups), default=snapshot.at)
        charts: list[BurnDown] = cache.derived(
            ("charts", service, name), lambda s: burn_downs(
                slo, s.ledger, shown.changes, start, s.at, views.MAX_GROUP_CHARTS))
        return page("slo.html", page=shown, charts=charts, section="slos")

    @view.get("/changes", response_class=HTMLResponse)
    def changes(service: str = "") -> HTMLResponse:
        snapshot = cache.get()
        return page("changes.html", changes=views.changes_timeline(snapshot, service),
                    service=service, services=sorted({c.service for c in snapshot.changes}),
                    section="changes")

    @view.get("/incidents", response_class=HTMLResponse)
    def incidents() -> HTMLResponse:
        rows = cache.derived(("incidents",), lambda s: views.incident_rows(
            use_cases.snapshot_incidents(s)))
        return page("incidents.html", incidents=rows, section="incidents")

    return _Guard(view, auth or ViewAuth())
