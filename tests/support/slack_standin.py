"""A stand-in of Slack's Web API on 127.0.0.1, for slack-sdk's real HTTP path.

It speaks the methods the notifier calls (auth.test, chat.postMessage, chat.update and the
three steps of files_upload_v2), checks the bearer token, the channel and Block Kit's limits
as Slack does, records every request with its arrival time, and can be scripted to fail:
429 with Retry-After, 500, an `ok: false` error code, or be stopped (connection refused)
and started again on the same port.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

TOKEN = "xoxb-standin-0123456789-secret"
CHANNELS = {"C0PAGE": "checkout-oncall", "C0TICKET": "checkout-tickets",
            "C0NOTICE": "slo-notices", "C0OTHER": "payments-oncall"}


@dataclass(frozen=True)
class Request:
    """One request as the stand-in received it, and what it answered."""

    method: str  # e.g. chat.postMessage; "upload" for the file upload URL
    params: dict[str, Any]
    authorization: str | None
    at: float  # time.monotonic() on arrival
    status: int
    answer: dict[str, Any]

    @property
    def ok(self) -> bool:
        return self.status == 200 and bool(self.answer.get("ok"))


@dataclass
class Message:
    """A message as a channel shows it now."""

    channel: str
    ts: str
    text: str
    blocks: list[dict[str, Any]]
    thread_ts: str | None = None
    updates: int = 0


@dataclass
class Fault:
    kind: str  # "429", "500" or "error"
    remaining: int
    retry_after: int = 1
    code: str = ""
    method: str | None = None  # only calls of this method; None: every API call


@dataclass
class Upload:
    file_id: str
    filename: str
    length: int
    content: bytes | None = None
    title: str | None = None
    channel: str | None = None


@dataclass
class SlackStandIn:
    token: str = TOKEN
    channels: dict[str, str] = field(default_factory=lambda: dict(CHANNELS))
    requests: list[Request] = field(default_factory=list)
    messages: dict[str, Message] = field(default_factory=dict)
    uploads: dict[str, Upload] = field(default_factory=dict)
    port: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._counter = itertools.count(1)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle

    def start(self) -> SlackStandIn:
        """Listen (again) on 127.0.0.1: a random port the first time, the same one after."""
        server = ThreadingHTTPServer(("127.0.0.1", self.port), _Handler)
        server.daemon_threads = True
        server.standin = self  # type: ignore[attr-defined]
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True,
                                        name=f"slack-standin-{self.port}")
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening: clients get connection refused until start()."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> SlackStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The base_url for WebClient."""
        return f"http://127.0.0.1:{self.port}/api/"

    # --- scripting

    def answer_429(self, count: int, retry_after: int = 1, method: str | None = None) -> None:
        with self._lock:
            self._faults.append(Fault("429", count, retry_after=retry_after, method=method))

    def answer_500(self, count: int, method: str | None = None) -> None:
        with self._lock:
            self._faults.append(Fault("500", count, method=method))

    def answer_error(self, code: str, count: int = 1, method: str | None = None) -> None:
        with self._lock:
            self._faults.append(Fault("error", count, code=code, method=method))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def forget(self) -> None:
        """Start a test afresh on a stand-in shared by a module's tests: no faults, and no
        calls, messages or uploads of earlier tests (a test run twice, once per state
        store, would find the first run's page)."""
        with self._lock:
            self._faults.clear()
            self.requests.clear()
            self.messages.clear()
            self.uploads.clear()

    # --- what happened

    def calls(self, method: str, *, ok_only: bool = False) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.method == method and (r.ok or not ok_only)]

    def posts(self) -> list[Request]:
        """Successful chat.postMessage calls that started a message (not thread replies)."""
        return [r for r in self.calls("chat.postMessage", ok_only=True)
                if not r.params.get("thread_ts")]

    def replies(self, thread_ts: str) -> list[Message]:
        with self._lock:
            return [m for m in self.messages.values() if m.thread_ts == thread_ts]

    # --- the API

    def handle(self, method: str, params: dict[str, Any],
               authorization: str | None) -> tuple[int, dict[str, str], dict[str, Any]]:
        with self._lock:
            status, headers, answer = self._answer(method, params, authorization)
            self.requests.append(Request(method, params, authorization, time.monotonic(),
                                         status, answer))
            return status, headers, answer

    def _answer(self, method: str, params: dict[str, Any], authorization: str | None) -> tuple[
            int, dict[str, str], dict[str, Any]]:
        fault = next((f for f in self._faults if f.remaining > 0
                      and f.method in (None, method)), None)
        if fault is not None and method != "upload":
            fault.remaining -= 1
            if fault.kind == "429":
                return 429, {"Retry-After": str(fault.retry_after)}, {
                    "ok": False, "error": "ratelimited"}
            if fault.kind == "500":
                return 500, {}, {}
            return 200, {}, {"ok": False, "error": fault.code}
        if method == "upload":
            return self._upload(params)
        if authorization is None:
            return 200, {}, {"ok": False, "error": "not_authed"}
        if authorization != f"Bearer {self.token}":
            return 200, {}, {"ok": False, "error": "invalid_auth"}
        handler = {"auth.test": self._auth_test, "chat.postMessage": self._post,
                   "chat.update": self._update,
                   "files.getUploadURLExternal": self._upload_url,
                   "files.completeUploadExternal": self._complete_upload}.get(method)
        if handler is None:
            return 200, {}, {"ok": False, "error": "unknown_method"}
        return 200, {}, handler(params)

    def _auth_test(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True, "url": "https://standin.slack.com/", "team": "Stand-in",
                "user": "slo-engine", "team_id": "T0STANDIN", "user_id": "U0BOT",
                "bot_id": "B0BOT"}

    def _channel(self, name: str | None) -> str | None:
        if name in self.channels:
            return name
        wanted = (name or "").lstrip("#")
        return next((cid for cid, cname in self.channels.items() if cname == wanted), None)

    def _post(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(params.get("channel"))
        if channel is None:
            return {"ok": False, "error": "channel_not_found"}
        problems = block_kit_problems(params)
        if problems:
            return {"ok": False, "error": "invalid_blocks", "errors": problems}
        thread_ts = params.get("thread_ts")
        if thread_ts is not None and thread_ts not in self.messages:
            return {"ok": False, "error": "thread_not_found"}
        ts = f"{1_700_000_000 + next(self._counter)}.000100"
        self.messages[ts] = Message(channel, ts, params.get("text", ""),
                                    list(params.get("blocks", [])), thread_ts)
        return {"ok": True, "channel": channel, "ts": ts,
                "message": {"text": params.get("text", ""), "ts": ts}}

    def _update(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = params.get("channel")
        if channel not in self.channels:  # chat.update takes IDs only, as Slack's does
            return {"ok": False, "error": "channel_not_found"}
        message = self.messages.get(str(params.get("ts")))
        if message is None or message.channel != channel:
            return {"ok": False, "error": "message_not_found"}
        problems = block_kit_problems(params)
        if problems:
            return {"ok": False, "error": "invalid_blocks", "errors": problems}
        message.text = params.get("text", "")
        message.blocks = list(params.get("blocks", []))
        message.updates += 1
        return {"ok": True, "channel": channel, "ts": message.ts, "text": message.text}

    def _upload_url(self, params: dict[str, Any]) -> dict[str, Any]:
        file_id = f"F{next(self._counter):08d}"
        self.uploads[file_id] = Upload(file_id, str(params.get("filename")),
                                       int(params.get("length", 0)))
        return {"ok": True, "file_id": file_id,
                "upload_url": f"http://127.0.0.1:{self.port}/upload/{file_id}"}

    def _upload(self, params: dict[str, Any]) -> tuple[int, dict[str, str], dict[str, Any]]:
        upload = self.uploads.get(str(params.get("file_id")))
        if upload is None:
            return 404, {}, {"ok": False}
        upload.content = params["content"]
        return 200, {}, {"ok": True}

    def _complete_upload(self, params: dict[str, Any]) -> dict[str, Any]:
        files = json.loads(params.get("files", "[]"))
        channel = params.get("channel_id")
        if channel is not None and channel not in self.channels:
            return {"ok": False, "error": "channel_not_found"}
        done = []
        for item in files:
            upload = self.uploads.get(item.get("id"))
            if upload is None or upload.content is None:
                return {"ok": False, "error": "file_not_found"}
            upload.title = item.get("title")
            upload.channel = channel
            done.append({"id": upload.file_id, "name": upload.filename, "title": upload.title})
        return {"ok": True, "files": done}


def block_kit_problems(params: dict[str, Any]) -> list[str]:
    """What Slack would refuse as invalid_blocks: counts and lengths of Block Kit."""
    blocks = params.get("blocks") or []
    if isinstance(blocks, str):
        blocks = json.loads(blocks)
    problems = []
    if len(blocks) > 50:
        problems.append(f"{len(blocks)} blocks, more than 50")
    if len(params.get("text") or "") > 40_000:
        problems.append("text longer than 40000")
    ids = [b["block_id"] for b in blocks if "block_id" in b]
    if len(ids) != len(set(ids)):
        problems.append("duplicate block_id")
    for index, block in enumerate(blocks):
        kind = block.get("type")
        where = f"blocks[{index}] ({kind})"
        if len(block.get("block_id", "")) > 255:
            problems.append(f"{where}: block_id longer than 255")
        if kind == "header" and len(block["text"]["text"]) > 150:
            problems.append(f"{where}: header text longer than 150")
        if kind == "section":
            text = block.get("text", {}).get("text", "")
            if "text" in block and not 1 <= len(text) <= 3000:
                problems.append(f"{where}: text of {len(text)} characters, not 1-3000")
            fields = block.get("fields", [])
            if len(fields) > 10:
                problems.append(f"{where}: {len(fields)} fields, more than 10")
            problems += [f"{where}: field longer than 2000" for f in fields
                         if len(f["text"]) > 2000]
        if kind == "context":
            elements = block.get("elements", [])
            if len(elements) > 10:
                problems.append(f"{where}: {len(elements)} elements, more than 10")
            problems += [f"{where}: element longer than 3000" for e in elements
                         if len(e.get("text", "")) > 3000]
    return problems


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        standin: SlackStandIn = self.server.standin  # type: ignore[attr-defined]
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        path = self.path.split("?")[0]
        if path.startswith("/upload/"):
            method = "upload"
            params: dict[str, Any] = {"file_id": path.removeprefix("/upload/"), "content": raw}
        else:
            method = path.removeprefix("/api/")
            if "json" in (self.headers.get("Content-Type") or ""):
                params = json.loads(raw or b"{}")
            else:
                params = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
        status, headers, answer = standin.handle(method, params,
                                                 self.headers.get("Authorization"))
        body = (b"<html><body>Internal Server Error</body></html>" if status == 500
                else json.dumps(answer).encode())
        self.send_response(status)
        self.send_header("Content-Type", "text/html" if status == 500
                         else "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the recorded requests are the log."""
