"""The slice of PromQL the compiler needs: vector selectors, parsed and rendered back.

Ratio and latency SLIs name counters by selector, so a typo there is caught at validate
time with the column of the mistake instead of as a rule-loading failure in Prometheus.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_OPERATORS = ("=~", "!~", "!=", "=")
WINDOW_PLACEHOLDER = "{{window}}"


class SelectorSyntaxError(ValueError):
    def __init__(self, offset: int, message: str) -> None:
        self.offset = offset
        super().__init__(message)


@dataclass(frozen=True)
class Matcher:
    name: str
    op: str
    value: str

    def render(self) -> str:
        escaped = self.value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'{self.name}{self.op}"{escaped}"'

    def matches(self, value: str) -> bool:
        """Prometheus semantics: regexes are anchored, absent labels are the empty string."""
        if self.op == "=":
            return value == self.value
        if self.op == "!=":
            return value != self.value
        found = re.fullmatch(self.value, value) is not None
        return found if self.op == "=~" else not found


@dataclass(frozen=True)
class Selector:
    metric: str
    matchers: tuple[Matcher, ...] = ()

    def render(self, extra: tuple[Matcher, ...] = ()) -> str:
        matchers = (*self.matchers, *extra)
        inner = ", ".join(m.render() for m in matchers)
        return f"{self.metric}{{{inner}}}" if inner else self.metric

    def with_metric(self, metric: str) -> Selector:
        return Selector(metric, self.matchers)


def parse_selector(text: str, *, allow_empty_name: bool = False) -> Selector:
    """Parse `name{label op "value", ...}`; raise SelectorSyntaxError at the bad offset."""
    pos = _skip_space(text, 0)
    metric = ""
    name_match = METRIC_NAME.match(text, pos)
    if name_match:
        metric = name_match.group()
        pos = name_match.end()
    elif not (allow_empty_name and text[pos:pos + 1] == "{"):
        raise SelectorSyntaxError(pos, "expected a metric name such as http_requests_total")
    pos = _skip_space(text, pos)
    matchers: list[Matcher] = []
    if pos < len(text) and text[pos] == "{":
        pos = _skip_space(text, pos + 1)
        while pos < len(text) and text[pos] != "}":
            matcher, pos = _matcher(text, pos)
            matchers.append(matcher)
            pos = _skip_space(text, pos)
            if pos < len(text) and text[pos] == ",":
                pos = _skip_space(text, pos + 1)
            elif pos < len(text) and text[pos] != "}":
                raise SelectorSyntaxError(pos, f"expected ',' or '}}', found {text[pos]!r}")
        if pos >= len(text):
            raise SelectorSyntaxError(pos, "unclosed '{'; add the closing '}'")
        pos = _skip_space(text, pos + 1)
    if pos < len(text):
        if text[pos] in "[(":
            raise SelectorSyntaxError(pos, "give a plain selector; the engine adds rate() and "
                                      "the window itself (use a 'query' SLI for other PromQL)")
        raise SelectorSyntaxError(pos, f"unexpected {text[pos:pos + 10]!r} after the selector")
    if not metric and not allow_empty_name:
        raise SelectorSyntaxError(0, "a selector needs a metric name")
    return Selector(metric, tuple(matchers))


def _skip_space(text: str, pos: int) -> int:
    while pos < len(text) and text[pos].isspace():
        pos += 1
    return pos


def _matcher(text: str, pos: int) -> tuple[Matcher, int]:
    name_match = LABEL_NAME.match(text, pos)
    if not name_match:
        raise SelectorSyntaxError(pos, "expected a label name")
    name = name_match.group()
    pos = _skip_space(text, name_match.end())
    op = next((o for o in _OPERATORS if text.startswith(o, pos)), None)
    if op is None:
        raise SelectorSyntaxError(pos, f"expected one of = != =~ !~ after label {name!r}")
    pos = _skip_space(text, pos + len(op))
    value, end = _string(text, pos)
    if op in ("=~", "!~"):
        try:
            re.compile(value)
        except re.error as error:
            raise SelectorSyntaxError(pos, f"invalid regular expression {value!r}: {error}") \
                from None
    return Matcher(name, op, value), end


def _string(text: str, pos: int) -> tuple[str, int]:
    if pos >= len(text) or text[pos] not in "\"'`":
        raise SelectorSyntaxError(pos, 'expected a quoted label value, e.g. "value"')
    quote = text[pos]
    out: list[str] = []
    i = pos + 1
    while i < len(text):
        char = text[i]
        if char == quote:
            return "".join(out), i + 1
        if char == "\\" and quote != "`" and i + 1 < len(text):
            nxt = text[i + 1]
            out.append({"n": "\n", "t": "\t"}.get(nxt, nxt))
            i += 2
            continue
        out.append(char)
        i += 1
    raise SelectorSyntaxError(pos, f"unterminated string starting with {quote}")


def check_query(text: str) -> tuple[int, str] | None:
    """A cheap structural check of arbitrary PromQL: (offset, problem) or None.

    Full PromQL is checked by promtool on the generated rules; this catches what a person
    mistypes most (missing placeholder, unbalanced brackets, unterminated strings).
    """
    if WINDOW_PLACEHOLDER not in text:
        return 0, ("the query needs the {{window}} placeholder in its range selector, "
                   "e.g. sum(rate(jobs_total[{{window}}]))")
    rendered = text.replace(WINDOW_PLACEHOLDER, "5m")
    stack: list[tuple[str, int]] = []
    pairs = {")": "(", "]": "[", "}": "{"}
    i = 0
    while i < len(rendered):
        char = rendered[i]
        if char in "\"'`":
            try:
                _, i = _string(rendered, i)
            except SelectorSyntaxError as error:
                return _original_offset(text, error.offset), str(error)
            continue
        if char in "([{":
            stack.append((char, i))
        elif char in ")]}":
            if not stack or stack[-1][0] != pairs[char]:
                return _original_offset(text, i), f"unbalanced {char!r}"
            stack.pop()
        i += 1
    if stack:
        char, offset = stack[-1]
        return _original_offset(text, offset), f"unclosed {char!r}"
    if "{{" in rendered or "}}" in rendered:
        return _original_offset(text, rendered.find("{{")), \
            "unknown placeholder; only {{window}} is replaced"
    return None


def _original_offset(original: str, rendered_offset: int) -> int:
    """Map an offset in the rendered query back to the spec's text."""
    delta = len(WINDOW_PLACEHOLDER) - len("5m")
    prefix = original
    count = 0
    index = prefix.find(WINDOW_PLACEHOLDER)
    while index != -1 and index - count * delta < rendered_offset:
        count += 1
        index = prefix.find(WINDOW_PLACEHOLDER, index + 1)
    return rendered_offset + count * delta
