"""Pages on Slack: one message per incident, delivered through a persistent outbox.

The lifecycle (post once, update in place, resolve in the thread) is decided from the state
store, not from memory, so a restarted engine never pages twice and still resolves the
message it posted before. Every Slack call goes through the outbox in order: when Slack is
down or keeps rate-limiting, messages wait there and go out when it recovers — none lost,
none duplicated. Slack refusing the set-up itself (token, channel) is a NotifyError that says
how to fix it; an outage never raises. A 429 holds the outbox until its Retry-After (kept
with the call, so a restart waits too) instead of sleeping in the caller. The transport is
`paging.slack`; which alerts reach the notifier at all is `paging.dedup`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from slo_engine.errors import NotifyError, SlackRefused, SlackUnavailable
from slo_engine.paging.blocks import SlackMessage
from slo_engine.paging.page import (
    PageContext,
    mark_resolved,
    render_page,
    render_resolution,
)
from slo_engine.paging.slack import Delivery, Posted
from slo_engine.spec.durations import parse_duration
from slo_engine.storage import Incident, NewIncident, OutboxItem, StateStore, StateWriter

log = logging.getLogger(__name__)

# Delivered calls and resolved incidents are kept this long, then pruned: long enough for a
# quarter's incident reviews and every notice key's idempotency, short enough to stay small.
OUTBOX_RETENTION = timedelta(days=90)


@dataclass(frozen=True)
class DeliveryReport:
    """What one flush of the outbox did."""

    sent: int
    failed: int
    queued: int
    errors: tuple[str, ...] = ()


class Notifier:
    """The incident lifecycle on Slack, kept in the state database.

    One message per BurnAlert.incident_key: the first firing posts it, later firings update
    it in place (an identical one calls nothing), and when every tier that fired for it has
    resolved the message is marked resolved and the thread gets the duration and the budget
    the incident spent. When several tiers of one severity fire, the fastest one's figures
    are shown, so the message does not flip between them.
    """

    def __init__(self, state: StateStore, delivery: Delivery,
                 route: Callable[[str, str], str], *,
                 retention: timedelta = OUTBOX_RETENTION,
                 fence: Callable[[StateWriter], None] | None = None) -> None:
        """`fence`, for replicas sharing the store: called first in every transaction of a
        delivery (claim, outcome, requeue), it raises LeaseLost unless this replica leads,
        so a deposed leader's delivery writes roll back. The leader requeues the calls a
        crash left being sent when it takes the lease; without `fence` that is done here."""
        self._state = state
        self._retention = retention
        self._delivery = delivery
        self._route = route
        self._fence = fence
        self._flushing = threading.Lock()  # one flush at a time keeps the order
        if fence is None:
            with state.transaction() as unit:
                # A call cut short by a crash may or may not have reached Slack: sending it
                # again risks a duplicate message, not sending it risks a lost page. We send.
                unit.requeue_interrupted()

    def handle(self, context: PageContext) -> None:
        """Record what the alert means for its incident, queue the Slack calls, and try to
        deliver them. Never raises on a Slack outage (the calls wait in the outbox); raises
        NotifyError, after recording, when Slack refused the token or a channel."""
        with self._state.transaction() as unit:
            self.record(unit, context)
        self._raise_refusals(self.flush())

    def record(self, unit: StateWriter, context: PageContext) -> None:
        """What the alert means for its incident, written in the caller's unit of work (which
        also saves the firing set, so both commit or neither): queued, not delivered.
        ConfigError, before anything is written, when the owner has no channel."""
        if context.alert.firing:
            self._fire(unit, context)
        else:
            self._resolve(unit, context)

    def send_notice(self, channel: str, message: SlackMessage, key: str,
                    attachment: tuple[str, bytes] | None = None, *,
                    title: str | None = None) -> bool:
        """Post a notice (budget policy, digest) once per `key`, with an optional file
        (filename, bytes) after it, titled `title` (default: the message's first line).
        False when that key was already sent or queued."""
        with self._state.transaction() as unit:
            if not self.queue_notice(unit, channel, message, key, attachment, title=title):
                return False
        self._raise_refusals(self.flush())
        return True

    def queue_notice(self, unit: StateWriter, channel: str, message: SlackMessage, key: str,
                     attachment: tuple[str, bytes] | None = None, *,
                     title: str | None = None) -> bool:
        """`send_notice`'s queueing, in the caller's unit of work (with what records that
        the notice went out); False when that key was already sent or queued."""
        if unit.notice_queued(key):
            return False
        now = datetime.now(UTC)
        post_id = unit.enqueue("post", channel, _body(message), now, notice_key=key)
        if attachment is not None:
            filename, content = attachment
            title = (title or message.text.partition("\n")[0])[:250] or filename
            unit.enqueue("upload", channel, title, now, parent_id=post_id,
                         filename=filename, content=content)
        return True

    def has_notice(self, key: str) -> bool:
        """Whether a notice under `key` was already sent or queued: work only a new notice
        needs (drawing its chart) can be skipped."""
        with self._state.read() as reader:
            return reader.notice_queued(key)

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
                with self._delivering() as unit:
                    unit.prune(datetime.now(UTC) - self._retention)
        return DeliveryReport(sent=sent, failed=failed, queued=self.outbox_depth(),
                              errors=tuple(errors))

    def outbox_depth(self) -> int:
        with self._state.read() as reader:
            return reader.outbox_depth()

    def next_attempt(self) -> datetime | None:
        """When the call at the head of the outbox may be tried again, if Slack asked it to
        wait: a delivery loop sleeps until then instead of asking again at once."""
        with self._state.read() as reader:
            return reader.outbox_not_before()

    # --- the lifecycle

    def _fire(self, unit: StateWriter, context: PageContext) -> None:
        alert = context.alert
        message = _body(render_page(context))
        fingerprint = hashlib.sha256(message.encode()).hexdigest()
        now = datetime.now(UTC)
        incident = unit.open_incident(alert.incident_key)
        if incident is None or _post_state(unit, incident) == "failed":
            self._open(unit, context, incident, message, fingerprint, now)
            return
        tiers = tuple(sorted({*incident.tiers, alert.tier}, key=_tier_speed))
        leads = tiers[0] == alert.tier
        if leads and fingerprint != incident.fingerprint:
            _enqueue_update(unit, incident, message, now)
            unit.update_incident_page(incident.id, fingerprint, message)
            log.info("incident %s: page updated", alert.incident_key)
        unit.update_incident_tiers(incident.id, tiers)

    def _open(self, unit: StateWriter, context: PageContext, failed: Incident | None,
              message: str, fingerprint: str, now: datetime) -> None:
        alert = context.alert
        channel = self._route(context.slo.owner, alert.severity)
        post_id = unit.enqueue("post", channel, message, now)
        if failed is not None:  # the last post was refused (e.g. a channel fixed since): again
            unit.repost_incident(failed.id, channel, post_id, (alert.tier,), fingerprint,
                                 message)
            return
        consumed = context.status.error_budget_consumed if context.status else None
        unit.add_incident(NewIncident(
            incident_key=alert.incident_key, service=alert.service, slo=alert.slo,
            group_key=alert.group_key, severity=alert.severity, channel=channel,
            post_id=post_id, tiers=(alert.tier,), opened_at=alert.at,
            consumed_at_open=consumed, fingerprint=fingerprint, message=message))
        log.info("incident %s: paging %s", alert.incident_key, channel)

    def _resolve(self, unit: StateWriter, context: PageContext) -> None:
        alert = context.alert
        now = datetime.now(UTC)
        incident = unit.open_incident(alert.incident_key)
        if incident is None:
            log.info("resolution of %s ignored: no open incident (never paged, or "
                     "already resolved)", alert.incident_key)
            return
        if alert.tier not in incident.tiers:
            log.info("resolution of tier %s of %s ignored: that tier was not firing",
                     alert.tier, alert.incident_key)
            return
        still = tuple(tier for tier in incident.tiers if tier != alert.tier)
        if still:
            unit.update_incident_tiers(incident.id, still)
            return
        duration = (alert.at - incident.opened_at).total_seconds()
        consumed = context.status.error_budget_consumed if context.status else None
        spent = (None if consumed is None or incident.consumed_at_open is None
                 else max(0.0, consumed - incident.consumed_at_open))
        page = SlackMessage.from_json(json.loads(incident.message))
        resolved = _body(mark_resolved(page, alert.at, duration))
        if _post_state(unit, incident) != "failed":  # else nothing to update
            _enqueue_update(unit, incident, resolved, now)
            unit.enqueue("reply", incident.channel,
                         _body(render_resolution(context, duration, spent)), now,
                         parent_id=incident.post_id)
        unit.resolve_incident(incident.id, alert.at, spent, resolved)
        log.info("incident %s: resolved after %.0fs", alert.incident_key, duration)

    # --- the outbox

    def _claim_next(self) -> OutboxItem | None:
        """The oldest queued call, marked as being sent (so an update cannot be folded into a
        message already on its way); None while it waits for its Retry-After."""
        with self._state.read() as reader:  # no write lock taken when nothing waits
            if reader.outbox_depth() == 0:
                return None
        with self._delivering() as unit:
            return unit.claim_next(datetime.now(UTC))

    def _deliver(self, item: OutboxItem) -> SlackUnavailable | SlackRefused | None:
        """Make one call; record the outcome. Anything unexpected puts the call back; a rate
        limit puts it back not to be tried before its Retry-After."""
        finished = False
        not_before: datetime | None = None
        try:
            parent = None
            if item.parent_id is not None:
                with self._state.read() as reader:
                    parent = reader.outbox_item(item.parent_id)
                if parent is None or parent.state == "failed":
                    reason = parent.last_error if parent is not None else "it was pruned"
                    self._finish(item, "failed", error=f"its message was never posted: "
                                 f"{reason}")
                    finished = True
                    return SlackRefused(f"{item.kind} skipped: the message it belongs to "
                                        "was refused", code="parent_failed", blocks_all=False)
                if parent.state != "sent":  # another process is still posting it
                    return SlackUnavailable(f"the {item.kind} waits for its message")
            posted = self._call(item, parent)
            self._finish(item, "sent", posted=posted)
            finished = True
            return None
        except SlackUnavailable as outage:
            if outage.retry_after is not None:
                not_before = datetime.now(UTC) + timedelta(seconds=outage.retry_after)
            return outage
        except SlackRefused as refusal:
            if not refusal.blocks_all:
                self._finish(item, "failed", error=str(refusal))
                finished = True
                log.error("Slack refused a %s: %s", item.kind, refusal)
            return refusal
        finally:
            if not finished:
                with self._delivering() as unit:
                    unit.requeue(item.id, not_before)

    def _call(self, item: OutboxItem, parent: OutboxItem | None) -> Posted | None:
        kind = item.kind
        channel = parent.channel if parent is not None else item.channel
        if kind == "upload":
            assert item.filename is not None and item.content is not None, \
                "an upload keeps its file until Slack has it"
            self._delivery.upload(channel, item.filename, item.content, item.body)
            return None
        message = SlackMessage.from_json(json.loads(item.body))
        if kind == "post":
            return self._delivery.post(channel, message)
        assert parent is not None and parent.ts is not None, \
            f"a {kind} needs the post it belongs to"
        if kind == "update":
            self._delivery.update(channel, parent.ts, message)
            return None
        return self._delivery.reply(channel, parent.ts, message)

    def _finish(self, item: OutboxItem, state: Literal["sent", "failed"], *,
                posted: Posted | None = None, error: str | None = None) -> None:
        with self._delivering() as unit:
            unit.finish(item.id, state, posted=posted, error=error,
                        sent_at=datetime.now(UTC) if state == "sent" else None,
                        drop_content=item.kind == "upload")  # Slack has the chart now

    @contextmanager
    def _delivering(self) -> Iterator[StateWriter]:
        """A transaction of the delivery, fenced when replicas share the store."""
        with self._state.transaction() as unit:
            if self._fence is not None:
                self._fence(unit)
            yield unit

    @staticmethod
    def _raise_refusals(report: DeliveryReport) -> None:
        if report.errors:
            raise NotifyError("; ".join(dict.fromkeys(report.errors)))


def _enqueue_update(unit: StateWriter, incident: Incident, body: str, now: datetime) -> None:
    """The newest state replaces what has not gone out yet: a post still queued is posted
    with it, a queued update is overwritten; otherwise one update is queued."""
    if unit.replace_queued_body(incident.post_id, body):
        return
    pending = unit.queued_update(incident.post_id)
    if pending is not None:
        unit.replace_queued_body(pending, body)
        return
    unit.enqueue("update", incident.channel, body, now, parent_id=incident.post_id)


def _post_state(unit: StateWriter, incident: Incident) -> str:
    post = unit.outbox_item(incident.post_id)
    return "failed" if post is None else post.state


def _body(message: SlackMessage) -> str:
    return json.dumps(message.as_json(), sort_keys=True, ensure_ascii=False)


def _tier_speed(tier: str) -> tuple[float, str]:
    """Tiers as "long/short"; the fastest (shortest long window) leads the message, the
    name breaking a tie so the lead does not depend on set order."""
    return parse_duration(tier.partition("/")[0]), tier
