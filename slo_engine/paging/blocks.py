"""Block Kit: the one place that builds Slack message values, escapes user text and keeps
every message within Slack's limits. Pure: pages, budget notices, outage notices and the
digest are built from these values, so a limit or an escaping rule is fixed once for all.

Every text that a user or a spec wrote (names, descriptions, commands) goes through
`escape` (or `escape_cut`) before it lands in mrkdwn, so it cannot inject links or
mentions; every message goes through `message`, which clips its fallback and fits its
blocks, so Slack never refuses one as `invalid_blocks`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

# Block Kit's limits (https://api.slack.com/reference/block-kit/blocks).
MAX_BLOCKS = 50
MAX_TEXT = 3000
MAX_HEADER = 150
MAX_FIELD = 2000
MAX_FIELDS = 10
MAX_CONTEXT_ELEMENTS = 10
MAX_FALLBACK = 3000  # notifications show the first line; the rest is for screen readers

Block = dict[str, Any]


@dataclass(frozen=True)
class SlackMessage:
    """A message as chat.postMessage takes it: Block Kit plus the plain-text fallback."""

    text: str  # plain-text fallback (notifications, screen readers)
    blocks: list[Block]

    def as_json(self) -> dict[str, Any]:
        return {"text": self.text, "blocks": self.blocks}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SlackMessage:
        return cls(text=str(data["text"]), blocks=list(data["blocks"]))


def message(text: str, blocks: Sequence[Block]) -> SlackMessage:
    """A message Slack accepts whatever went into it: fallback clipped, blocks fitted."""
    return SlackMessage(text=clip(text, MAX_FALLBACK), blocks=fit_blocks(list(blocks)))


# --- blocks


def header(text: str, block_id: str | None = None) -> Block:
    """A header: plain text (shown literally, so not escaped), clipped to 150 characters."""
    return {"type": "header", **_id(block_id),
            "text": {"type": "plain_text", "text": clip(text, MAX_HEADER), "emoji": True}}


def section(text: str, fields: Sequence[str] = (), block_id: str | None = None) -> Block:
    """A mrkdwn section with optional two-column fields; callers escape what users wrote."""
    block: Block = {"type": "section", **_id(block_id), "text": {"type": "mrkdwn", "text": text}}
    if fields:
        block["fields"] = [{"type": "mrkdwn", "text": f} for f in fields]
    return block


def context(texts: Sequence[str], block_id: str | None = None) -> Block:
    """A line of small mrkdwn elements (owner, file, freshness)."""
    return {"type": "context", **_id(block_id),
            "elements": [{"type": "mrkdwn", "text": t} for t in texts]}


def divider() -> Block:
    return {"type": "divider"}


def fit_blocks(blocks: list[Block]) -> list[Block]:
    """Blocks within Block Kit's limits, whatever went into them: every text clipped, and past
    50 blocks the tail replaced by one "+N more" line."""
    fitted = [_fit_block(block) for block in blocks]
    if len(fitted) > MAX_BLOCKS:
        dropped = len(fitted) - MAX_BLOCKS + 1
        fitted = [*fitted[:MAX_BLOCKS - 1], context([f"+{dropped} more blocks"], "cut")]
    return fitted


def _id(block_id: str | None) -> dict[str, str]:
    return {} if block_id is None else {"block_id": block_id}


def _fit_block(block: Block) -> Block:
    fitted = dict(block)
    if block.get("type") == "header":
        fitted["text"] = {**block["text"], "text": clip(block["text"]["text"], MAX_HEADER)}
    if block.get("type") == "section":
        if "text" in block:
            fitted["text"] = {**block["text"], "text": clip(block["text"]["text"], MAX_TEXT)}
        if "fields" in block:
            fitted["fields"] = [{**f, "text": clip(f["text"], MAX_FIELD)}
                                for f in block["fields"][:MAX_FIELDS]]
    if block.get("type") == "context":
        fitted["elements"] = [{**e, "text": clip(e["text"], MAX_TEXT)} if "text" in e else e
                              for e in block["elements"][:MAX_CONTEXT_ELEMENTS]]
    return fitted


# --- mrkdwn text


def clip(text: str, limit: int) -> str:
    """At most `limit` characters; a cut ends in "…" so the reader knows there was more."""
    return text if len(text) <= limit else text[:limit - 1] + "…"


def one_line(text: str, limit: int) -> str:
    """`text` on one line (runs of whitespace as one space), clipped: an error's message."""
    return clip(" ".join(text.split()), limit)


def escape(text: str) -> str:
    """Slack's mrkdwn control characters, so user text cannot inject links or mentions."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def escape_cut(text: str, limit: int) -> str:
    """Escaped text of at most `limit` characters, never cutting an entity in half."""
    escaped = escape(text)
    if len(escaped) <= limit:
        return escaped
    keep = limit - 1
    while keep > 0 and len(escape(text[:keep])) > limit - 1:
        keep -= max(1, len(escape(text[:keep])) - (limit - 1))
    return escape(text[:max(keep, 0)]) + "…"


def link(url: str, label: str) -> str:
    """A mrkdwn link whose target cannot end early or smuggle a label of its own."""
    return f"<{link_target(url)}|{label}>"


def link_target(url: str) -> str:
    return url.replace("|", "%7C").replace(">", "%3E").replace("<", "%3C").replace(" ", "%20")


def when(moment: datetime) -> str:
    """A time each reader sees in their own timezone; the fallback is UTC."""
    return f"<!date^{int(moment.timestamp())}^{{date_short_pretty}} {{time}}|" \
           f"{moment:%Y-%m-%d %H:%M} UTC>"


# --- figures, worded alike in every message


def percent(value: float | None, decimals: int = 1) -> str:
    return "-" if value is None else f"{value * 100:.{decimals}f}%"


def burn(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}x" if value < 100 else f"{value:.0f}x"


# --- plain text: fallbacks and terminals


_DATE = re.compile(r"<!date\^\d+\^[^|>]*\|([^>]*)>")
_LINK = re.compile(r"<([^|>]+)\|([^>]*)>")
_BOLD = re.compile(r"\*([^*\n]+)\*")
_CODE = re.compile(r"```(.*?)```", re.DOTALL)


def plain(text: str) -> str:
    """mrkdwn as plain text: dates in UTC, links as "label (url)", no bold, entities undone."""
    text = _DATE.sub(r"\1", text)
    text = _LINK.sub(r"\2 (\1)", text)
    text = _BOLD.sub(r"\1", text)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def as_plain_text(message: SlackMessage) -> str:
    """The message as a terminal shows it (dry runs, the README): mrkdwn unwrapped."""
    lines: list[str] = []
    for block in message.blocks:
        kind = block.get("type")
        if kind == "header":
            title = str(block["text"]["text"])
            lines += [title, "=" * len(title)]
        elif kind == "divider":
            lines.append("-" * 60)
        elif kind == "section":
            if "text" in block:
                lines.append(_unwrap(str(block["text"]["text"])))
            for field in block.get("fields", []):
                name, _, value = _unwrap(str(field["text"])).partition("\n")
                lines.append(f"  {name}: {value.replace(chr(10), ' ')}")
        elif kind == "context":
            lines.append(_unwrap(" · ".join(str(e.get("text", "")) for e in block["elements"])))
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _unwrap(text: str) -> str:
    text = _CODE.sub(lambda m: "\n    " + m.group(1).replace("\n", "\n    "), text)
    return plain(text).replace("\n>", "\n  ")
