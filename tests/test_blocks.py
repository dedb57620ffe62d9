"""Block Kit values: Slack's limits and escaping, enforced in one place for every message."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from slo_engine.paging import blocks as kit


def test_a_message_fits_slacks_limits_whatever_went_in() -> None:
    message = kit.message("x" * 5000, [kit.header("h" * 200, "header"),
                                       *[kit.section("s" * 4000, ["f" * 2500] * 12)] * 60])
    assert len(message.text) == kit.MAX_FALLBACK and message.text.endswith("…")
    assert len(message.blocks) == kit.MAX_BLOCKS
    assert message.blocks[-1] == kit.context(["+12 more blocks"], "cut")
    assert len(message.blocks[0]["text"]["text"]) == kit.MAX_HEADER
    section = message.blocks[1]
    assert len(section["text"]["text"]) == kit.MAX_TEXT
    assert len(section["fields"]) == kit.MAX_FIELDS
    assert all(len(f["text"]) == kit.MAX_FIELD for f in section["fields"])


def test_block_ids_are_only_set_when_asked_for() -> None:
    assert kit.section("a") == {"type": "section", "text": {"type": "mrkdwn", "text": "a"}}
    assert list(kit.section("a", ["b"], "id")) == ["type", "block_id", "text", "fields"]


@given(st.text(alphabet="ab&<>", max_size=60), st.integers(min_value=2, max_value=40))
def test_escape_cut_never_exceeds_the_limit_or_splits_an_entity(text: str, limit: int) -> None:
    cut = kit.escape_cut(text, limit)
    assert len(cut) <= limit
    assert kit.plain(cut.removesuffix("…")) == text[:len(kit.plain(cut.removesuffix("…")))]


def test_plain_text_unwraps_mrkdwn() -> None:
    message = kit.message("f", [kit.section("*bold* " + kit.link("https://x/a b", "Runbook")
                                            + " &lt;b&gt;")])
    assert kit.as_plain_text(message) == "bold Runbook (https://x/a%20b) <b>\n"
