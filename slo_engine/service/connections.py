"""Connection hygiene uvicorn's h11 protocol lacks: header and body read timeouts, and a
bound on connections, total and per client.

uvicorn times out only keep-alive gaps, and its `limit_concurrency` counts idle connections:
99 sockets that never send a byte made every request, probes and Alertmanager's webhook
included, a 503. Here an idle or slow connection is closed after `header_timeout`, the
connection count never refuses a request, and a client over its share of connections gets
429 with Retry-After on its writes while the probes stay answered.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import h11
import uvicorn
from uvicorn._types import ASGI3Application, ASGIReceiveCallable, ASGISendCallable, Scope
from uvicorn.protocols.http.h11_impl import H11Protocol

PROBES = frozenset({"/healthz", "/readyz", "/metrics"})
RETRY_AFTER_SECONDS = 1


class GuardedConfig(uvicorn.Config):
    """uvicorn's Config plus the limits the protocol below enforces, and the shared count of
    open connections by client address (one event loop, so no lock)."""

    def __init__(self, app: Any, *, header_timeout: float, body_timeout: float,
                 max_connections: int, max_connections_per_client: int,
                 **options: Any) -> None:
        super().__init__(app, http=GuardedH11Protocol, **options)
        self.header_timeout = header_timeout
        self.body_timeout = body_timeout
        self.max_connections = max_connections
        self.max_connections_per_client = max_connections_per_client
        self.open_connections: Counter[str] = Counter()


class GuardedH11Protocol(H11Protocol):
    """H11Protocol with a request-head deadline, a body inactivity timeout and connection
    bounds; everything else is uvicorn's."""

    def __init__(self, config: uvicorn.Config, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        assert isinstance(config, GuardedConfig)
        self.guard = config
        self._host: str | None = None
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._host = self.client[0] if self.client else ""
        self.guard.open_connections[self._host] += 1
        if self.guard.open_connections.total() > self.guard.max_connections:
            # Nothing can be answered without a request; the client sees a reset and retries.
            self.transport.abort()
            return
        if self.guard.open_connections[self._host] > self.guard.max_connections_per_client:
            self.app = _over_client_limit(self.app)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._host is not None:
            self.guard.open_connections[self._host] -= 1
            if self.guard.open_connections[self._host] <= 0:
                del self.guard.open_connections[self._host]
            self._host = None
        self._cancel_timers()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._track_state()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._track_state()

    def _track_state(self) -> None:
        """Arm the timer the request's phase needs: a deadline for the head (a drip-fed
        head does not extend it), an inactivity timeout for the body."""
        if self.transport.is_closing():
            self._cancel_timers()
            return
        state = self.conn.their_state
        if state is h11.IDLE and self.conn.our_state is h11.IDLE:
            if self._head_timer is None and self.timeout_keep_alive_task is None:
                self._arm_head_timer()
        elif self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None
        if state is h11.SEND_BODY:
            self._body_timer = self.loop.call_later(self.guard.body_timeout, self._expire)

    def _arm_head_timer(self) -> None:
        self._head_timer = self.loop.call_later(self.guard.header_timeout, self._expire)

    def _expire(self) -> None:
        """Too slow: close, so the connection stops holding a slot. A request reading its
        body sees a disconnect."""
        if self.flow.read_paused:  # the app, not the client, is behind: wait for it
            self._body_timer = self.loop.call_later(self.guard.body_timeout, self._expire)
            return
        self._head_timer = self._body_timer = None
        if not self.transport.is_closing():
            self.transport.close()

    def _cancel_timers(self) -> None:
        for timer in (self._head_timer, self._body_timer):
            if timer is not None:
                timer.cancel()
        self._head_timer = self._body_timer = None


def _over_client_limit(app: ASGI3Application) -> ASGI3Application:
    """The app for a connection beyond its client's share: probes are served (they cost the
    event loop nothing), anything else gets 429 with Retry-After and the connection closed."""

    async def guarded(scope: Scope, receive: ASGIReceiveCallable,
                      send: ASGISendCallable) -> None:
        if scope["type"] == "http" and scope["path"] in PROBES:
            await app(scope, receive, send)
            return
        await _drain(receive)
        body = b'{"detail": "too many connections from this client; retry shortly"}'
        await send({"type": "http.response.start", "status": 429, "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"retry-after", str(RETRY_AFTER_SECONDS).encode()),
            (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body, "more_body": False})

    return guarded


async def _drain(receive: ASGIReceiveCallable, limit: int = 1 << 20) -> None:
    """Read (and drop) the request body before answering: closing a socket with unread data
    resets it, and the client would never see the 429."""
    read = 0
    while read <= limit:
        message = await receive()
        if message["type"] != "http.request":
            return
        read += len(message.get("body", b""))
        if not message.get("more_body", False):
            return
