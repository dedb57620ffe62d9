"""Pages on Slack: one message per incident, delivered through a persistent outbox.

The lifecycle (post once, update in place, resolve in the thread) is decided from the state
database, not from memory, so a restarted engine never pages twice and still resolves the
message it posted before. Every Slack call goes through the outbox in order: when Slack is
down or keeps rate-limiting, messages wait there and go out when it recovers — none lost,
none duplicated. Slack refusing the set-up itself (token, channel) is a NotifyError that says
how to fix it; an outage never raises.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import random
import re
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, NamedTuple, Protocol

from slo_engine.config import SlackConfig
from slo_engine.errors import ConfigError, NotifyError, SloEngineError
from slo_engine.paging.blocks import SlackMessage, as_plain_text
from slo_engine.paging.page import (
    PageContext,
    mark_resolved,
    render_page,
    render_resolution,
)
from slo_engine.spec.durations import parse_duration
from slo_engine.storage.sqlite import StateDB

if TYPE_CHECKING:
    from rich.console import Console
    from slack_sdk.http_retry.jitter import Jitter
    from slack_sdk.web import SlackResponse

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS notify_outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,              -- post, update, reply, upload
    channel TEXT NOT NULL,           -- as routed; a sent post keeps the ID Slack answered
    parent_id INTEGER,               -- the post whose channel and ts an update/reply needs
    notice_key TEXT UNIQUE,          -- send_notice's idempotency key
    body TEXT NOT NULL,              -- message JSON; an upload's title
    filename TEXT,
    content BLOB,
    state TEXT NOT NULL DEFAULT 'queued',  -- queued, sending, sent, failed
    ts TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    created_at TEXT NOT NULL,
    sent_at TEXT
);
CREATE INDEX IF NOT EXISTS notify_outbox_by_state ON notify_outbox (state, id);
CREATE TABLE IF NOT EXISTS notify_incidents (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    incident_key TEXT NOT NULL,
    service TEXT NOT NULL,
    slo TEXT NOT NULL,
    group_key TEXT NOT NULL,
    severity TEXT NOT NULL,
    channel TEXT NOT NULL,
    post_id INTEGER NOT NULL,
    tiers TEXT NOT NULL,             -- JSON list of the tiers firing now
    opened_at TEXT NOT NULL,
    resolved_at TEXT,
    consumed_at_open REAL,
    budget_spent REAL,
    fingerprint TEXT NOT NULL,       -- of the last rendered page: an identical repeat is skipped
    message TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS notify_open_incident
    ON notify_incidents (incident_key) WHERE resolved_at IS NULL;
"""

_TOKEN_FIX = ("set slack.token in the engine config (e.g. ${SLACK_BOT_TOKEN}) to the app's Bot "
              "User OAuth Token (xoxb-...) from https://api.slack.com/apps > OAuth & Permissions")
_TOKEN_ERRORS = {
    "invalid_auth": "the token is not valid for this workspace",
    "not_authed": "no token was sent",
    "account_inactive": "the token's bot or user was deactivated",
    "token_revoked": "the token was revoked",
    "token_expired": "the token expired",
    "not_allowed_token_type": "this kind of token cannot post; use a bot token",
    "team_access_not_granted": "the app is not installed in this workspace",
    "ekm_access_denied": "the workspace's key management denied access",
    "no_permission": "the token lacks a permission",
    "missing_scope": "the app lacks a scope: add chat:write (and files:write for charts) under "
                     "OAuth & Permissions and reinstall the app",
}
_CHANNEL_ERRORS = {
    "channel_not_found": "no such channel is visible to the bot: route the owner to a channel "
                         "ID (C...) in slack.owners or slack.fallback_channel, and invite the "
                         "app to private channels",
    "not_in_channel": "the app is not a member: /invite it to the channel",
    "is_archived": "the channel is archived: route the owner to a live channel",
    "restricted_action": "posting there is restricted: let the app post, or route elsewhere",
    "restricted_action_read_only_channel": "the channel is read-only: route elsewhere",
    "message_not_found": "the page's message was deleted; it will not be updated",
    "cant_update_message": "the message cannot be updated by this token",
    "edit_window_closed": "the workspace no longer allows editing that message",
}
_ERROR_CODE = re.compile(r"[a-z0-9_]+")
# Delivered calls and resolved incidents are kept this long, then pruned: long enough for a
# quarter's incident reviews and every notice key's idempotency, short enough to stay small.
OUTBOX_RETENTION = timedelta(days=90)
_TRANSIENT_ERRORS = {"ratelimited", "internal_error", "fatal_error", "service_unavailable",
                     "request_timeout"}


class SlackRefused(NotifyError):
    """Slack refused a call for a reason retrying will not fix. `blocks_all` when it is the
    set-up (token, base URL): every message would fail, so they stay queued for the fix."""

    def __init__(self, message: str, *, code: str, blocks_all: bool) -> None:
        super().__init__(message)
        self.code = code
        self.blocks_all = blocks_all


class SlackUnavailable(SloEngineError):
    """Slack did not take the call — down, 5xx, rate-limiting past the retries, unreachable.
    The outbox keeps the message; `notify-test` reports it."""


class Posted(NamedTuple):
    """Where a message landed: Slack answers the channel ID even when posted by name, and
    chat.update needs that ID."""

    channel: str
    ts: str


class Delivery(Protocol):
    """Where messages go: Slack, or the terminal in a dry run."""

    def post(self, channel: str, message: SlackMessage) -> Posted: ...

    def update(self, channel: str, ts: str, message: SlackMessage) -> None: ...

    def reply(self, channel: str, thread_ts: str, message: SlackMessage) -> Posted: ...

    def upload(self, channel: str, filename: str, content: bytes, title: str) -> None: ...


@dataclass(frozen=True)
class DeliveryReport:
    """What one flush of the outbox did."""

    sent: int
    failed: int
    queued: int
    errors: tuple[str, ...] = ()


class SlackDelivery:
    """Slack's Web API through slack-sdk, with its retry handlers: 429 waits for Retry-After,
    5xx and connection errors back off; what is still failing after `retries` is reported as
    SlackUnavailable (stays queued) or SlackRefused (needs a fix)."""

    def __init__(self, slack: SlackConfig, *, timeout: int = 15,
                 backoff_seconds: float = 0.5) -> None:
        from slack_sdk import WebClient
        from slack_sdk.http_retry.builtin_handlers import (
            ConnectionErrorRetryHandler,
            RateLimitErrorRetryHandler,
            ServerErrorRetryHandler,
        )
        from slack_sdk.http_retry.builtin_interval_calculators import (
            BackoffRetryIntervalCalculator,
        )

        if slack.token is None or not slack.token.get_secret_value().strip():
            raise ConfigError("no Slack token: set slack.token: ${SLACK_BOT_TOKEN} in the "
                              "engine config and export SLACK_BOT_TOKEN (a bot token, xoxb-...)")
        self.base_url = slack.base_url
        self.retries = slack.retries
        backoff = BackoffRetryIntervalCalculator(backoff_factor=backoff_seconds,
                                                 jitter=_proportional_jitter())
        self._client = WebClient(
            token=slack.token.get_secret_value(), base_url=slack.base_url, timeout=timeout,
            logger=logging.getLogger(f"{__name__}.slack_sdk"),
            retry_handlers=[
                RateLimitErrorRetryHandler(max_retry_count=slack.retries),
                ServerErrorRetryHandler(max_retry_count=slack.retries,
                                        interval_calculator=backoff),
                ConnectionErrorRetryHandler(max_retry_count=slack.retries,
                                            interval_calculator=backoff),
            ])

    def identity(self) -> str:
        """Who the token is (auth.test): notify-test shows it, so a wrong workspace is seen."""
        answer = self._call("auth.test", None, self._client.auth_test)
        return f"{answer.get('user', '?')} in workspace {answer.get('team', '?')}"

    def post(self, channel: str, message: SlackMessage) -> Posted:
        answer = self._call("chat.postMessage", channel, lambda: self._client.chat_postMessage(
            channel=channel, text=message.text, blocks=message.blocks, unfurl_links=False,
            unfurl_media=False))
        return Posted(str(answer["channel"]), str(answer["ts"]))

    def update(self, channel: str, ts: str, message: SlackMessage) -> None:
        self._call("chat.update", channel, lambda: self._client.chat_update(
            channel=channel, ts=ts, text=message.text, blocks=message.blocks))

    def reply(self, channel: str, thread_ts: str, message: SlackMessage) -> Posted:
        answer = self._call("chat.postMessage", channel, lambda: self._client.chat_postMessage(
            channel=channel, thread_ts=thread_ts, text=message.text, blocks=message.blocks,
            unfurl_links=False, unfurl_media=False))
        return Posted(str(answer["channel"]), str(answer["ts"]))

    def upload(self, channel: str, filename: str, content: bytes, title: str) -> None:
        self._call("files.upload", channel, lambda: self._client.files_upload_v2(
            channel=channel, filename=filename, content=content, title=title))

    def _call(self, method: str, channel: str | None,
              call: Callable[[], SlackResponse]) -> SlackResponse:
        from slack_sdk.errors import SlackApiError, SlackClientError

        try:
            return call()
        except SlackApiError as error:
            data = error.response.data
            code = str(data.get("error", "")) if isinstance(data, dict) else ""
            code = code if _ERROR_CODE.fullmatch(code) else ""  # not slack-sdk's own prose
            failure: SloEngineError = self._classify(method, channel,
                                                     error.response.status_code, code)
        except (SlackClientError, OSError, http.client.HTTPException) as error:
            failure = SlackUnavailable(f"Slack did not answer {method} at {self.base_url} "
                                       f"after {self.retries} retries: {_describe(error)}")
        raise failure

    def _classify(self, method: str, channel: str | None, status: int,
                  code: str) -> SloEngineError:
        where = f" to {channel}" if channel else ""
        if status == 429 or code == "ratelimited":
            return SlackUnavailable(f"Slack kept rate-limiting {method}{where} after "
                                    f"{self.retries} retries, each after its Retry-After")
        if status >= 500 or code in _TRANSIENT_ERRORS:
            return SlackUnavailable(f"Slack answered {method}{where} with HTTP {status}"
                                    f"{f' ({code})' if code else ''} after {self.retries} "
                                    "retries")
        if code in _TOKEN_ERRORS:
            return SlackRefused(f"Slack refused the token ({code}: {_TOKEN_ERRORS[code]}); "
                                f"{_TOKEN_FIX}", code=code, blocks_all=True)
        if code in _CHANNEL_ERRORS:
            return SlackRefused(f"Slack refused {method}{where} ({code}): "
                                f"{_CHANNEL_ERRORS[code]}", code=code, blocks_all=False)
        if not code:
            return SlackRefused(f"{self.base_url} answered {method} with HTTP {status} and no "
                                "Slack error code: check slack.base_url (default "
                                "https://slack.com/api/)", code=f"http_{status}",
                                blocks_all=True)
        return SlackRefused(f"Slack refused {method}{where} ({code}); see "
                            f"https://api.slack.com/methods/{method}#errors", code=code,
                            blocks_all=False)


class DryRunDelivery:
    """The terminal instead of Slack: the demo and `notify-test --dry-run` show the page as
    the channel would, and nothing leaves the machine."""

    def __init__(self, console: Console | None = None) -> None:
        from rich.console import Console

        self.console = console if console is not None else Console()

    def post(self, channel: str, message: SlackMessage) -> Posted:
        posted = Posted(channel, _dry_run_ts())
        self._show(f"post to {channel} (ts {posted.ts})", message)
        return posted

    def update(self, channel: str, ts: str, message: SlackMessage) -> None:
        self._show(f"update of {ts} in {channel}", message)

    def reply(self, channel: str, thread_ts: str, message: SlackMessage) -> Posted:
        posted = Posted(channel, _dry_run_ts())
        self._show(f"reply in the thread of {thread_ts} in {channel}", message)
        return posted

    def upload(self, channel: str, filename: str, content: bytes, title: str) -> None:
        from rich.text import Text

        self.console.print(Text(f"upload to {channel}: {filename} ({len(content)} bytes) "
                                f"{title}"))

    def _show(self, title: str, message: SlackMessage) -> None:
        from rich.panel import Panel
        from rich.text import Text

        self.console.print(Panel(Text(as_plain_text(message).rstrip()), title=Text(title),
                                 title_align="left", expand=False))


def delivery_from_config(slack: SlackConfig) -> Delivery:
    """Slack, or the terminal when the config says dry_run."""
    return DryRunDelivery() if slack.dry_run else SlackDelivery(slack)


class Notifier:
    """The incident lifecycle on Slack, kept in the state database.

    One message per BurnAlert.incident_key: the first firing posts it, later firings update
    it in place (an identical one calls nothing), and when every tier that fired for it has
    resolved the message is marked resolved and the thread gets the duration and the budget
    the incident spent. When several tiers of one severity fire, the fastest one's figures
    are shown, so the message does not flip between them.
    """

    def __init__(self, state: StateDB, delivery: Delivery, route: Callable[[str, str], str],
                 *, retention: timedelta = OUTBOX_RETENTION) -> None:
        self._state = state
        self._retention = retention
        self._delivery = delivery
        self._route = route
        self._flushing = threading.Lock()  # one flush at a time keeps the order
        state.ensure_schema(_SCHEMA)
        with state.transaction() as connection:
            # A call cut short by a crash may or may not have reached Slack: sending it again
            # risks a duplicate message, not sending it risks a lost page. We send.
            connection.execute("UPDATE notify_outbox SET state = 'queued' "
                               "WHERE state = 'sending'")

    def handle(self, context: PageContext) -> None:
        """Record what the alert means for its incident, queue the Slack calls, and try to
        deliver them. Never raises on a Slack outage (the calls wait in the outbox); raises
        NotifyError, after recording, when Slack refused the token or a channel."""
        if context.alert.firing:
            self._fire(context)
        else:
            self._resolve(context)
        self._raise_refusals(self.flush())

    def send_notice(self, channel: str, message: SlackMessage, key: str,
                    attachment: tuple[str, bytes] | None = None, *,
                    title: str | None = None) -> bool:
        """Post a notice (budget policy, digest) once per `key`, with an optional file
        (filename, bytes) after it, titled `title` (default: the message's first line).
        False when that key was already sent or queued."""
        now = _now()
        with self._state.transaction() as connection:
            if _row(connection, "SELECT id FROM notify_outbox WHERE notice_key = ?", (key,)):
                return False
            post_id = _enqueue(connection, "post", channel, _body(message), now, notice_key=key)
            if attachment is not None:
                filename, content = attachment
                title = (title or message.text.partition("\n")[0])[:250] or filename
                connection.execute(
                    "INSERT INTO notify_outbox (kind, channel, parent_id, body, filename, "
                    "content, created_at) VALUES ('upload', ?, ?, ?, ?, ?, ?)",
                    (channel, post_id, title, filename, content, now))
        self._raise_refusals(self.flush())
        return True

    def has_notice(self, key: str) -> bool:
        """Whether a notice under `key` was already sent or queued: work only a new notice
        needs (drawing its chart) can be skipped."""
        return bool(self._state.query("SELECT 1 FROM notify_outbox WHERE notice_key = ?",
                                      (key,)))

    def flush(self) -> DeliveryReport:
        """Deliver queued calls in order, stopping at the first outage (so nothing overtakes
        a message that is still waiting). A refused call is marked failed and the rest go on,
        unless the refusal is the token's: then everything waits for the fix."""
        sent = failed = 0
        errors: list[str] = []
        with self._flushing:
            while (item := self._claim_next()) is not None:
                outcome = self._deliver(item)
                if outcome is None:
                    sent += 1
                    continue
                if isinstance(outcome, SlackUnavailable):
                    log.warning("Slack unavailable, %d call(s) wait in the outbox: %s",
                                self.outbox_depth(), outcome)
                    break
                errors.append(str(outcome))
                if outcome.blocks_all:
                    break
                failed += 1
            if sent or failed:
                self._prune(datetime.now(UTC) - self._retention)
        return DeliveryReport(sent=sent, failed=failed, queued=self.outbox_depth(),
                              errors=tuple(errors))

    def _prune(self, before: datetime) -> None:
        """Forget delivered calls and resolved incidents older than `before`, so a service
        running for years keeps a bounded database; a call an open incident or a waiting
        call still needs stays."""
        cutoff = before.isoformat()
        with self._state.transaction() as connection:
            connection.execute(
                "DELETE FROM notify_outbox WHERE state IN ('sent', 'failed') "
                "AND created_at < ? "
                "AND id NOT IN (SELECT post_id FROM notify_incidents WHERE resolved_at IS NULL) "
                "AND id NOT IN (SELECT parent_id FROM notify_outbox "
                "               WHERE parent_id IS NOT NULL AND state IN ('queued', 'sending'))",
                (cutoff,))
            connection.execute("DELETE FROM notify_incidents WHERE resolved_at IS NOT NULL "
                               "AND opened_at < ?", (cutoff,))

    def outbox_depth(self) -> int:
        rows = self._state.query("SELECT COUNT(*) AS n FROM notify_outbox "
                                 "WHERE state IN ('queued', 'sending')")
        return int(rows[0]["n"])

    # --- the lifecycle

    def _fire(self, context: PageContext) -> None:
        alert = context.alert
        message = _body(render_page(context))
        fingerprint = hashlib.sha256(message.encode()).hexdigest()
        now = _now()
        with self._state.transaction() as connection:
            incident = _open_incident(connection, alert.incident_key)
            if incident is None or _post_state(connection, incident) == "failed":
                self._open(connection, context, incident, message, fingerprint, now)
                return
            tiers = sorted({*json.loads(incident["tiers"]), alert.tier}, key=_tier_speed)
            leads = tiers[0] == alert.tier
            if leads and fingerprint != incident["fingerprint"]:
                _enqueue_update(connection, incident, message, now)
                connection.execute("UPDATE notify_incidents SET fingerprint = ?, message = ? "
                                   "WHERE id = ?", (fingerprint, message, incident["id"]))
                log.info("incident %s: page updated", alert.incident_key)
            connection.execute("UPDATE notify_incidents SET tiers = ? WHERE id = ?",
                               (json.dumps(tiers), incident["id"]))

    def _open(self, connection: sqlite3.Connection, context: PageContext,
              failed: sqlite3.Row | None, message: str, fingerprint: str, now: str) -> None:
        alert = context.alert
        channel = self._route(context.slo.owner, alert.severity)
        post_id = _enqueue(connection, "post", channel, message, now)
        if failed is not None:  # the last post was refused (e.g. a channel fixed since): again
            connection.execute(
                "UPDATE notify_incidents SET channel = ?, post_id = ?, fingerprint = ?, "
                "message = ?, tiers = ? WHERE id = ?",
                (channel, post_id, fingerprint, message, json.dumps([alert.tier]),
                 failed["id"]))
            return
        consumed = context.status.error_budget_consumed if context.status else None
        connection.execute(
            "INSERT INTO notify_incidents (incident_key, service, slo, group_key, severity, "
            "channel, post_id, tiers, opened_at, consumed_at_open, fingerprint, message) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (alert.incident_key, alert.service, alert.slo, alert.group_key, alert.severity,
             channel, post_id, json.dumps([alert.tier]), alert.at.isoformat(), consumed,
             fingerprint, message))
        log.info("incident %s: paging %s", alert.incident_key, channel)

    def _resolve(self, context: PageContext) -> None:
        alert = context.alert
        now = _now()
        with self._state.transaction() as connection:
            incident = _open_incident(connection, alert.incident_key)
            if incident is None:
                log.info("resolution of %s ignored: no open incident (never paged, or "
                         "already resolved)", alert.incident_key)
                return
            firing = json.loads(incident["tiers"])
            if alert.tier not in firing:
                log.info("resolution of tier %s of %s ignored: that tier was not firing",
                         alert.tier, alert.incident_key)
                return
            still = [tier for tier in firing if tier != alert.tier]
            if still:
                connection.execute("UPDATE notify_incidents SET tiers = ? WHERE id = ?",
                                   (json.dumps(still), incident["id"]))
                return
            opened = datetime.fromisoformat(incident["opened_at"])
            duration = (alert.at - opened).total_seconds()
            consumed = context.status.error_budget_consumed if context.status else None
            spent = (None if consumed is None or incident["consumed_at_open"] is None
                     else max(0.0, consumed - incident["consumed_at_open"]))
            page = SlackMessage.from_json(json.loads(incident["message"]))
            resolved = _body(mark_resolved(page, alert.at, duration))
            if _post_state(connection, incident) != "failed":  # else nothing to update
                _enqueue_update(connection, incident, resolved, now)
                _enqueue(connection, "reply", incident["channel"],
                         _body(render_resolution(context, duration, spent)), now,
                         parent_id=incident["post_id"])
            connection.execute(
                "UPDATE notify_incidents SET resolved_at = ?, budget_spent = ?, tiers = '[]', "
                "message = ? WHERE id = ?",
                (alert.at.isoformat(), spent, resolved, incident["id"]))
            log.info("incident %s: resolved after %.0fs", alert.incident_key, duration)

    # --- the outbox

    def _claim_next(self) -> sqlite3.Row | None:
        """The oldest queued call, marked as being sent (so an update cannot be folded into a
        message already on its way)."""
        with self._state.transaction() as connection:
            item = _row(connection, "SELECT * FROM notify_outbox WHERE state = 'queued' "
                        "ORDER BY id LIMIT 1", ())
            if item is None:
                return None
            connection.execute("UPDATE notify_outbox SET state = 'sending', "
                               "attempts = attempts + 1 WHERE id = ?", (item["id"],))
            return item

    def _deliver(self, item: sqlite3.Row) -> SlackUnavailable | SlackRefused | None:
        """Make one call; record the outcome. Anything unexpected puts the call back."""
        finished = False
        try:
            parent = None
            if item["parent_id"] is not None:
                parent = self._state.query("SELECT * FROM notify_outbox WHERE id = ?",
                                           (item["parent_id"],))[0]
                if parent["state"] == "failed":
                    self._finish(item, "failed", error=f"its message was never posted: "
                                 f"{parent['last_error']}")
                    finished = True
                    return SlackRefused(f"{item['kind']} skipped: the message it belongs to "
                                        "was refused", code="parent_failed", blocks_all=False)
                if parent["state"] != "sent":  # another process is still posting it
                    return SlackUnavailable(f"the {item['kind']} waits for its message")
            posted = self._call(item, parent)
            self._finish(item, "sent", posted=posted)
            finished = True
            return None
        except SlackUnavailable as outage:
            return outage
        except SlackRefused as refusal:
            if not refusal.blocks_all:
                self._finish(item, "failed", error=str(refusal))
                finished = True
                log.error("Slack refused a %s: %s", item["kind"], refusal)
            return refusal
        finally:
            if not finished:
                with self._state.transaction() as connection:
                    connection.execute("UPDATE notify_outbox SET state = 'queued' WHERE id = ?",
                                       (item["id"],))

    def _call(self, item: sqlite3.Row, parent: sqlite3.Row | None) -> Posted | None:
        kind = item["kind"]
        channel = parent["channel"] if parent is not None else item["channel"]
        if kind == "upload":
            self._delivery.upload(channel, item["filename"], item["content"], item["body"])
            return None
        message = SlackMessage.from_json(json.loads(item["body"]))
        if kind == "post":
            return self._delivery.post(channel, message)
        assert parent is not None, f"a {kind} needs the post it belongs to"
        if kind == "update":
            self._delivery.update(channel, parent["ts"], message)
            return None
        return self._delivery.reply(channel, parent["ts"], message)

    def _finish(self, item: sqlite3.Row, state: str, *, posted: Posted | None = None,
                error: str | None = None) -> None:
        with self._state.transaction() as connection:
            connection.execute(
                "UPDATE notify_outbox SET state = ?, channel = COALESCE(?, channel), "
                "ts = COALESCE(?, ts), last_error = ?, sent_at = ? WHERE id = ?",
                (state, posted.channel if posted else None, posted.ts if posted else None,
                 error, _now() if state == "sent" else None, item["id"]))
            if item["kind"] == "upload":  # a chart is not needed once Slack has it
                connection.execute("UPDATE notify_outbox SET content = NULL WHERE id = ?",
                                   (item["id"],))

    @staticmethod
    def _raise_refusals(report: DeliveryReport) -> None:
        if report.errors:
            raise NotifyError("; ".join(dict.fromkeys(report.errors)))


def _enqueue(connection: sqlite3.Connection, kind: str, channel: str, body: str, now: str, *,
             parent_id: int | None = None, notice_key: str | None = None) -> int:
    cursor = connection.execute(
        "INSERT INTO notify_outbox (kind, channel, parent_id, notice_key, body, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?)", (kind, channel, parent_id, notice_key, body, now))
    assert cursor.lastrowid is not None
    return cursor.lastrowid


def _enqueue_update(connection: sqlite3.Connection, incident: sqlite3.Row, body: str,
                    now: str) -> None:
    """The newest state replaces what has not gone out yet: a post still queued is posted
    with it, a queued update is overwritten; otherwise one update is queued."""
    post_id = incident["post_id"]
    if connection.execute("UPDATE notify_outbox SET body = ? WHERE id = ? AND state = 'queued'",
                          (body, post_id)).rowcount:
        return
    pending = _row(connection, "SELECT id FROM notify_outbox WHERE parent_id = ? AND kind = "
                   "'update' AND state = 'queued' ORDER BY id DESC LIMIT 1", (post_id,))
    if pending is not None:
        connection.execute("UPDATE notify_outbox SET body = ? WHERE id = ?",
                           (body, pending["id"]))
        return
    _enqueue(connection, "update", incident["channel"], body, now, parent_id=post_id)


def _open_incident(connection: sqlite3.Connection, key: str) -> sqlite3.Row | None:
    return _row(connection, "SELECT * FROM notify_incidents WHERE incident_key = ? AND "
                "resolved_at IS NULL", (key,))


def _post_state(connection: sqlite3.Connection, incident: sqlite3.Row) -> str:
    row = _row(connection, "SELECT state FROM notify_outbox WHERE id = ?", (incident["post_id"],))
    return "failed" if row is None else str(row["state"])


def _row(connection: sqlite3.Connection, sql: str,
         parameters: tuple[object, ...]) -> sqlite3.Row | None:
    cursor = connection.execute(sql, parameters)
    cursor.row_factory = sqlite3.Row
    row: sqlite3.Row | None = cursor.fetchone()
    return row


def _body(message: SlackMessage) -> str:
    return json.dumps(message.as_json(), sort_keys=True, ensure_ascii=False)


def _tier_speed(tier: str) -> tuple[float, str]:
    """Tiers as "long/short"; the fastest (shortest long window) leads the message, the
    name breaking a tie so the lead does not depend on set order."""
    return parse_duration(tier.partition("/")[0]), tier


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _dry_run_ts() -> str:
    return f"{time.time():.6f}"


def _describe(error: BaseException) -> str:
    reason = getattr(error, "reason", None)
    return f"{type(error).__name__}: {reason if reason is not None else error}"


def _proportional_jitter() -> Jitter:
    """Up to half the interval again: retries spread out, and a short backoff stays short
    (slack-sdk's default jitter adds up to a whole second)."""
    from slack_sdk.http_retry.jitter import Jitter

    class ProportionalJitter(Jitter):
        def recalculate(self, duration: float) -> float:
            return duration * (1 + random.random() / 2)

    return ProportionalJitter()
