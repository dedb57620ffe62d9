"""The HTTP face of `slo-engine run`: change intake, Alertmanager's webhook, status, probes.

A thin shell over the engine: every write needs a bearer token and a bounded body, every
rejection says why (401 no or wrong token, 413 too large, 422 what is invalid, 429 when to
retry), and the engine's own work runs in the thread pool so a slow Prometheus never blocks
the probes. Writes take at most a few of its threads and queue, boundedly, for them, so a
flood of deploys is answered 201 or 429 while the probes and Alertmanager stay served.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

import uvicorn
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from pydantic import TypeAdapter, ValidationError
from pydantic.json_schema import models_json_schema
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Receive, Scope, Send

from slo_engine.budget.accounting import BudgetStatus
from slo_engine.changes.events import Change, describe_errors
from slo_engine.config import HttpConfig
from slo_engine.errors import SloEngineError
from slo_engine.paging.alertmanager import WebhookPayload
from slo_engine.service.connections import RETRY_AFTER_SECONDS, GuardedConfig
from slo_engine.service.leadership import Role
from slo_engine.service.telemetry import Telemetry
from slo_engine.spec.model import Service

MAX_CHANGES = 1000
WRITES_IN_FLIGHT = 4  # of the thread pool's 40: the rest stay free for probes and reads
WRITE_WAIT_SECONDS = 10.0
_CHANGES: TypeAdapter[list[Change]] = TypeAdapter(list[Change])


class EngineAPI(Protocol):
    """What the HTTP API needs of the engine (slo_engine.service.engine.Engine provides it)."""

    telemetry: Telemetry

    @property
    def services(self) -> list[Service]: ...

    def record_changes(self, changes: list[Change]) -> list[Change]: ...

    def slo_statuses(self) -> list[BudgetStatus]: ...

    def readiness(self) -> dict[str, str]: ...

    def role(self) -> Role: ...

    def handle_alertmanager(self, payload: WebhookPayload) -> int: ...


class _Rejected(Exception):
    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers


class _WriteGate:
    """At most WRITES_IN_FLIGHT writes in the thread pool, `queued` more waiting; beyond that,
    or after WRITE_WAIT_SECONDS, a 429 with Retry-After rather than a pile-up."""

    def __init__(self, queued: int) -> None:
        self._slots = asyncio.Semaphore(WRITES_IN_FLIGHT)
        self._queued = queued
        self._waiting = 0

    async def run(self, function: Callable[..., Any], *args: Any) -> Any:
        busy = _Rejected(429, "the engine is busy recording writes; retry shortly",
                         {"Retry-After": str(RETRY_AFTER_SECONDS)})
        if self._waiting >= self._queued:
            raise busy
        self._waiting += 1
        try:
            await asyncio.wait_for(self._slots.acquire(), WRITE_WAIT_SECONDS)
        except TimeoutError:
            raise busy from None
        finally:
            self._waiting -= 1
        try:
            return await _engine_call(function, *args)
        finally:
            self._slots.release()


def create_app(engine: EngineAPI, http: HttpConfig, view: ASGIApp | None = None) -> FastAPI:
    """The API; `view` (the read-only web view) is served at `/` behind its routes."""
    app = FastAPI(title="slo-engine", version="1", docs_url=None, redoc_url=None)
    app.state.http = http
    app.add_middleware(_RefuseSmuggling)
    tokens = [t.get_secret_value().encode() for t in http.tokens if t.get_secret_value()]
    # Alertmanager's webhook has a gate of its own: a deploy flood must not delay a page.
    change_writes = _WriteGate(http.max_queued_writes)
    alert_writes = _WriteGate(http.max_queued_writes)

    @app.exception_handler(_Rejected)
    async def rejected(request: Request, error: _Rejected) -> JSONResponse:
        return JSONResponse({"detail": error.detail}, status_code=error.status,
                            headers=error.headers)

    @app.exception_handler(ClientDisconnect)
    async def disconnected(request: Request, error: ClientDisconnect) -> Response:
        """The client left mid-body: nobody to answer and nothing to log (uvicorn drops it)."""
        return Response(status_code=400)

    async def authorised_json(request: Request) -> Any:
        _authorise(request, tokens)
        body = await _bounded_body(request, http.max_body_bytes)
        try:
            return json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise _Rejected(422, f"the body is not JSON: {error}") from None
        except RecursionError:  # a few kilobytes of '[' are enough
            raise _Rejected(422, "the body's JSON nests too deeply") from None
        except ValueError as error:  # an integer of over 4,300 digits
            raise _Rejected(422, f"the body's JSON has a number out of range: {error}") from None

    @app.post("/api/v1/changes", status_code=201, openapi_extra=_body_schema(
        {"oneOf": [{"$ref": "#/components/schemas/Change"},
                   {"type": "array", "items": {"$ref": "#/components/schemas/Change"},
                    "maxItems": MAX_CHANGES}]}))
    async def post_changes(request: Request) -> JSONResponse:
        """Record one change event or a list of them; known ones are skipped, not failed."""
        data = await authorised_json(request)
        items = data if isinstance(data, list) else [data]
        if len(items) > MAX_CHANGES:
            raise _Rejected(413, f"{len(items)} changes in one request; send at most "
                            f"{MAX_CHANGES}")
        tagged = [{"source": "http", **i} if isinstance(i, dict) else i for i in items]
        try:
            changes = (_CHANGES.validate_python(tagged) if isinstance(data, list)
                       else [Change.model_validate(tagged[0])])
        except ValidationError as error:
            raise _Rejected(422, describe_errors(error)) from None
        added = await change_writes.run(engine.record_changes, changes)
        watched = {service.name for service in engine.services}
        for change in added:
            engine.telemetry.change_recorded(change, watched)
        return JSONResponse({"received": len(changes), "recorded": len(added),
                             "already_known": len(changes) - len(added)}, status_code=201)

    @app.post("/api/v1/alertmanager", openapi_extra=_body_schema(
        {"$ref": "#/components/schemas/WebhookPayload"}))
    async def post_alertmanager(request: Request) -> JSONResponse:
        """Alertmanager's webhook receiver (payload version 4)."""
        data = await authorised_json(request)
        try:
            payload = WebhookPayload.model_validate(data)
        except ValidationError as error:
            problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'payload'}: "
                                 f"{e['msg']}" for e in error.errors(include_url=False))
            raise _Rejected(422, problems) from None
        accepted = await alert_writes.run(engine.handle_alertmanager, payload)
        return JSONResponse({"alerts": len(payload.alerts), "accepted": accepted})

    @app.get("/api/v1/slos")
    async def slos() -> JSONResponse:
        """Every SLO's budget as of the last refresh (the `report --format json` contract)."""
        statuses = await _engine_call(engine.slo_statuses)
        return JSONResponse({"slos": [s.as_json() for s in statuses]})

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        return JSONResponse({"status": "ok"})

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        """Ready when Prometheus answers and the state database takes writes, leader or
        standby (a standby serves the API and takes webhooks); `role` says which."""
        checks = await run_in_threadpool(engine.readiness)
        ready = all(value == "ok" for value in checks.values())
        return JSONResponse({"ready": ready, "checks": checks, "role": engine.role().as_json()},
                            status_code=200 if ready else 503)

    @app.get("/metrics")
    async def metrics() -> Response:
        body, content_type = engine.telemetry.render()
        return Response(body, media_type=content_type)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(title=app.title, version=app.version, routes=app.routes)
            _, definitions = models_json_schema(
                [(Change, "validation"), (WebhookPayload, "validation")],
                ref_template="#/components/schemas/{model}")
            document.setdefault("components", {}).setdefault("schemas", {}).update(
                definitions.get("$defs", {}))
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    if view is not None:
        app.mount("/", view)
    return app


def _authorise(request: Request, tokens: list[bytes]) -> None:
    challenge = {"WWW-Authenticate": 'Bearer realm="slo-engine"'}
    if not tokens:
        raise _Rejected(401, "writes are disabled: no tokens are configured under http.tokens "
                        "in the engine config", challenge)
    scheme, _, credential = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not credential:
        raise _Rejected(401, "missing bearer token: send 'Authorization: Bearer <token>'",
                        challenge)
    given = credential.strip().encode()
    if not any(hmac.compare_digest(given, token) for token in tokens):
        raise _Rejected(401, "invalid bearer token", challenge)


async def _bounded_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it exceeds `limit` (declared or streamed)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _Rejected(413, f"the body has {declared} bytes; the limit is {limit} "
                        "(http.max_body_bytes)")
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > limit:
            raise _Rejected(413, f"the body exceeds the limit of {limit} bytes "
                            "(http.max_body_bytes)")
    return bytes(body)


async def _engine_call(function: Callable[..., Any], *args: Any) -> Any:
    try:
        return await run_in_threadpool(function, *args)
    except SloEngineError as error:
        raise _Rejected(503, str(error)) from None


class _RefuseSmuggling:
    """Both Content-Length and Transfer-Encoding: the request's end is ambiguous, so a proxy
    in front may see a different second request than we would (RFC 9112 6.1). Answer 400
    and close the connection; nothing pipelined behind it is served."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            names = {name.lower() for name, _ in scope["headers"]}
            if b"content-length" in names and b"transfer-encoding" in names:
                response = JSONResponse(
                    {"detail": "both Content-Length and Transfer-Encoding; send one"},
                    status_code=400, headers={"Connection": "close"})
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _body_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """Declare the JSON body in the OpenAPI document: it is read raw, to bound its size."""
    return {"requestBody": {"required": True,
                            "content": {"application/json": {"schema": schema}}}}


class HttpServer:
    """uvicorn in a background thread, so the scheduler and the API share one process."""

    def __init__(self, app: ASGIApp, listen: str) -> None:
        host, _, port = listen.rpartition(":")
        http: HttpConfig = getattr(getattr(app, "state", None), "http", None) or HttpConfig()
        # No limit_concurrency: it counts idle connections and answers 503 to everyone once
        # they fill it. The guarded protocol bounds connections and times out slow ones.
        self._server = uvicorn.Server(GuardedConfig(
            app, host=host.strip("[]") or "127.0.0.1", port=int(port), log_level="warning",
            lifespan="off", access_log=False, timeout_keep_alive=5,
            h11_max_incomplete_event_size=16_384, timeout_graceful_shutdown=5,
            header_timeout=http.header_timeout, body_timeout=http.body_timeout,
            max_connections=http.max_connections,
            max_connections_per_client=http.max_connections_per_client))
        self._thread: threading.Thread | None = None
        self.port = int(port)

    def start(self, timeout: float = 10.0) -> None:
        self._thread = threading.Thread(target=self._server.run, name="slo-engine-http",
                                        daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise SloEngineError(f"the HTTP API could not listen on port {self.port}: is "
                                     "it in use? (http.listen in the engine config)")
            time.sleep(0.02)
        sockets = [s for server in self._server.servers for s in server.sockets]
        if sockets:
            self.port = int(sockets[0].getsockname()[1])

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
