"""The HTTP API under hostile connections and bursts, over a real uvicorn on 127.0.0.1:
idle floods, 1,000 concurrent deploys, request smuggling, out-of-range numbers and dates,
clients that leave mid-body. Every flood is bounded in count and time and ends itself."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from slo_engine.config import HttpConfig
from slo_engine.service.http_api import HttpServer, create_app
from tests.test_http_api import AUTH, DEPLOY, TOKEN, Engine, _webhook
from tests.test_http_api import engine as engine  # the fixtures, re-exported
from tests.test_http_api import services as services


@pytest.fixture
def server(engine: Engine) -> Iterator[HttpServer]:
    http = HttpConfig(listen="127.0.0.1:0", tokens=[SecretStr(TOKEN)], header_timeout=2,
                      body_timeout=2)
    running = HttpServer(create_app(engine, http), http.listen)
    running.start()
    try:
        yield running
    finally:
        running.stop()


def _open_idle(port: int, count: int) -> list[socket.socket]:
    sockets = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sockets.append(sock)
    return sockets


def test_500_idle_connections_leave_probes_and_the_webhook_answered(
        engine: Engine, server: HttpServer) -> None:
    base = f"http://127.0.0.1:{server.port}"
    idle = _open_idle(server.port, 500)
    try:
        time.sleep(0.5)
        started = time.monotonic()
        assert httpx.get(f"{base}/healthz", timeout=5).status_code == 200
        assert httpx.get(f"{base}/readyz", timeout=5).status_code == 200
        labels = {"service": "checkout", "slo": "checkout-success", "severity": "page",
                  "long_window": "1h", "short_window": "5m", "region": "eu"}
        # Alertmanager is another host than the flood's: 127.0.0.2 on the loopback.
        with httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.2")) as other:
            hook = other.post(f"{base}/api/v1/alertmanager", headers=AUTH, timeout=5,
                              json=_webhook("firing", **labels))
        assert hook.status_code == 200, hook.text
        change = httpx.post(f"{base}/api/v1/changes", json=DEPLOY, headers=AUTH, timeout=5)
        assert change.status_code == 429 and change.headers["retry-after"] == "1"
        assert time.monotonic() - started < 2
    finally:
        for sock in idle:
            sock.close()


def test_idle_and_drip_fed_connections_are_closed_after_the_header_timeout(
        server: HttpServer) -> None:
    idle, drip = _open_idle(server.port, 2)
    started = time.monotonic()
    for _ in range(8):  # one byte every 0.4 s never completes a head within 2 s
        try:
            drip.sendall(b"G")
        except OSError:
            break
        time.sleep(0.4)
    for sock in (idle, drip):
        sock.settimeout(5)
        with contextlib.suppress(ConnectionResetError):
            assert sock.recv(1024) == b""
        sock.close()
    assert time.monotonic() - started < 5


async def _post_all(port: int, count: int) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=count, max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", limits=limits,
                                 timeout=60) as client:
        bodies = [{**DEPLOY, "version": f"web-api:{n}"} for n in range(count)]
        return await asyncio.gather(*(client.post("/api/v1/changes", json=body, headers=AUTH)
                                      for body in bodies))


def test_1000_concurrent_change_posts_get_201_or_429_and_nothing_is_lost(
        engine: Engine, server: HttpServer) -> None:
    started = time.monotonic()
    responses = asyncio.run(_post_all(server.port, 1000))
    elapsed = time.monotonic() - started
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {201, 429}, {s: statuses.count(s) for s in set(statuses)}
    assert all(r.headers["retry-after"].isdigit() for r in responses if r.status_code == 429)
    created = {r.request.content for r in responses if r.status_code == 201}
    versions = [c.version for c in engine.state.changes(limit=5000)]
    assert len(versions) == len(set(versions)) == len(created) == statuses.count(201)
    assert statuses.count(201) >= 200, f"{statuses.count(201)} of 1000 in {elapsed:.1f}s"
    print(f"1000 concurrent posts: {statuses.count(201)} x 201, {statuses.count(429)} x 429 "
          f"in {elapsed:.1f}s")


def test_content_length_with_transfer_encoding_is_400_and_closes(server: HttpServer) -> None:
    smuggled = (b"POST /api/v1/changes HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
                b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(smuggled)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    assert received.startswith(b"HTTP/1.1 400 ")
    assert b"connection: close" in received.lower()
    assert received.count(b"HTTP/1.1 ") == 1  # the pipelined GET was not served


@pytest.mark.parametrize(("body", "field"), [
    (b'{"time": "2026-05-12T14:03:00Z", "service": "a", "kind": "deploy", "version": '
     + b"9" * 5000 + b"}", "number out of range"),
    ({**DEPLOY, "time": "1600-01-01T00:00:00Z"}, "time: 1600-01-01T00:00:00Z is out of range"),
    ({**DEPLOY, "time": "2263-01-01T00:00:00Z"}, "time: 2263-01-01T00:00:00Z is out of range"),
    ({**DEPLOY, "time": "0001-01-01T00:00:00+14:00"}, "time: 0001-01-01T00:00:00+14:00"),
    ({**DEPLOY, "time": 10**30}, "time: Input should be a valid datetime"),
])
def test_out_of_range_numbers_and_dates_get_422_naming_the_field(
        engine: Engine, server: HttpServer, body: object, field: str) -> None:
    url = f"http://127.0.0.1:{server.port}/api/v1/changes"
    response = (httpx.post(url, content=body, headers=AUTH, timeout=5) if isinstance(body, bytes)
                else httpx.post(url, json=body, headers=AUTH, timeout=5))
    assert response.status_code == 422, response.text
    assert field in response.json()["detail"]
    assert engine.state.changes() == []


def test_a_client_set_source_does_not_become_a_metric_label(engine: Engine,
                                                            server: HttpServer) -> None:
    base = f"http://127.0.0.1:{server.port}"
    for n in range(5):
        body = {**DEPLOY, "version": f"v{n}", "source": f"attacker-{n}"}
        assert httpx.post(f"{base}/api/v1/changes", json=body, headers=AUTH).status_code == 201
    metrics = httpx.get(f"{base}/metrics").text
    assert "attacker" not in metrics
    assert 'slo_engine_changes_recorded_total{source="other"} 5.0' in metrics


def test_a_client_leaving_mid_body_logs_no_traceback(
        server: HttpServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    head = (f"POST /api/v1/changes HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
            "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n").encode()
    for _ in range(3):
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(head + b'{"time": "2026')
            time.sleep(0.2)
    time.sleep(0.5)
    assert httpx.get(f"http://127.0.0.1:{server.port}/healthz").status_code == 200
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert "Traceback" not in caplog.text


def test_cli_out_of_range_times_are_one_line_errors(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from slo_engine.cli import main

    state = str(tmp_path / "state.db")
    lines = tmp_path / "changes.jsonl"
    lines.write_text('{"time": "2263-01-01T00:00:00Z", "service": "a", "kind": "deploy"}\n')
    for argv in (["changes", "add", "--service", "a", "--kind", "deploy", "--time",
                  "1600-01-01T00:00:00Z", "--state", state],
                 ["changes", "import", str(lines), "--state", state]):
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert "out of range" in err and "Traceback" not in err and len(err.splitlines()) == 1
    assert main(["changes", "list", "--since", "400000d", "--state", state]) == 0
    assert "no changes since 1970-01-01" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_:
        main(["changes", "list", "--since", "99999999999d", "--state", state])
    assert exit_.value.code == 2 and "too long a duration" in capsys.readouterr().err
