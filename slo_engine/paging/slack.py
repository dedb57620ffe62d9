"""Slack transport: where messages go (the Web API through slack-sdk, or the terminal).

Retries of short outages happen here (slack-sdk's handlers, with backoff); what is still
failing after them is classified once: SlackUnavailable (an outage, the outbox keeps the
message) or SlackRefused (the set-up or a channel needs a fix, says which). A 429 is not
waited out here: it is a SlackUnavailable carrying Retry-After, and the outbox holds the
call until then, so no thread sleeps for Slack. The incident lifecycle and the outbox are
the notifier's.
"""

from __future__ import annotations

import http.client
import logging
import random
import re
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, NamedTuple, Protocol

from slo_engine.config import SlackConfig
from slo_engine.errors import ConfigError, SlackRefused, SlackUnavailable, SloEngineError
from slo_engine.paging.blocks import SlackMessage, as_plain_text
from slo_engine.redaction import redact

if TYPE_CHECKING:
    from rich.console import Console
    from slack_sdk.http_retry.jitter import Jitter
    from slack_sdk.web import SlackResponse

__all__ = ["Delivery", "DryRunDelivery", "Posted", "SlackDelivery", "SlackRefused",
           "SlackUnavailable", "delivery_from_config"]

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
_TRANSIENT_ERRORS = {"ratelimited", "internal_error", "fatal_error", "service_unavailable",
                     "request_timeout"}
DEFAULT_RETRY_AFTER = 5.0  # seconds, for a 429 without a readable Retry-After
MAX_RETRY_AFTER = 3600.0  # a larger Retry-After is taken as this: an hour is already long




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


class SlackDelivery:
    """Slack's Web API through slack-sdk, with its retry handlers for 5xx and connection
    errors (backoff); what is still failing after `retries` is reported as SlackUnavailable
    (stays queued) or SlackRefused (needs a fix). A 429 is reported at once with its
    Retry-After: sleeping it out here would hold whichever thread called."""

    def __init__(self, slack: SlackConfig, *, timeout: int = 15,
                 backoff_seconds: float = 0.5) -> None:
        from slack_sdk import WebClient
        from slack_sdk.http_retry.builtin_handlers import (
            ConnectionErrorRetryHandler,
            ServerErrorRetryHandler,
        )
        from slack_sdk.http_retry.builtin_interval_calculators import (
            BackoffRetryIntervalCalculator,
        )

        if slack.token is None or not slack.token.get_secret_value().strip():
            raise ConfigError("no Slack token: set slack.token: ${SLACK_BOT_TOKEN} in the "
                              "engine config and export SLACK_BOT_TOKEN (a bot token, xoxb-...)")
        self.base_url = redact(slack.base_url)  # shown in messages; the client gets it whole
        self.retries = slack.retries
        backoff = BackoffRetryIntervalCalculator(backoff_factor=backoff_seconds,
                                                 jitter=_proportional_jitter())
        self._client = WebClient(
            token=slack.token.get_secret_value(), base_url=slack.base_url, timeout=timeout,
            logger=logging.getLogger(f"{__name__}.slack_sdk"),
            retry_handlers=[
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
                                                     error.response.status_code, code,
                                                     error.response.headers)
        except (SlackClientError, OSError, http.client.HTTPException) as error:
            failure = SlackUnavailable(f"Slack did not answer {method} at {self.base_url} "
                                       f"after {self.retries} retries: {_describe(error)}")
        raise failure

    def _classify(self, method: str, channel: str | None, status: int, code: str,
                  headers: Mapping[str, object] | None = None) -> SloEngineError:
        where = f" to {channel}" if channel else ""
        if status == 429 or code == "ratelimited":
            wait = _retry_after(headers or {})
            return SlackUnavailable(f"Slack is rate-limiting {method}{where}: it asks to "
                                    f"wait {wait:g} s (Retry-After)", retry_after=wait)
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


def _dry_run_ts() -> str:
    return f"{time.time():.6f}"


def _retry_after(headers: Mapping[str, object]) -> float:
    """Retry-After in seconds (Slack sends whole seconds), bounded; a default when absent
    or unreadable (an HTTP date is not something Slack sends)."""
    for name, value in headers.items():
        if name.lower() == "retry-after":
            text = value[0] if isinstance(value, list) and value else value
            try:
                seconds = float(str(text).strip())
            except ValueError:
                break
            if seconds == seconds:  # not NaN
                return min(max(seconds, 0.0), MAX_RETRY_AFTER)
            break
    return DEFAULT_RETRY_AFTER


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
