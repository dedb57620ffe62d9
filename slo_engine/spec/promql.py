"""The slice of PromQL the compiler needs: vector selectors, parsed and rendered back.

Ratio and latency SLIs name counters by selector, so a typo there is caught at validate
time with the column of the mistake instead of as a rule-loading failure in Prometheus.
Whole queries (and, after this module's own checks, selectors) go through the real PromQL
parser, `promql-parser`, so what Prometheus would refuse is refused here, in the spec.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass

import promql_parser

METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_OPERATORS = ("=~", "!~", "!=", "=")
WINDOW_PLACEHOLDER = "{{window}}"
# How a label value's special characters are written inside a double-quoted PromQL string.
_RENDER_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t",
                   "\a": "\\a", "\b": "\\b", "\f": "\\f", "\v": "\\v"}


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
        escaped = "".join(_RENDER_ESCAPES.get(char, char) for char in self.value)
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
        problem = regex_problem(value)
        if problem is not None:
            raise SelectorSyntaxError(pos, f"invalid regular expression '{value}': {problem}")
    return Matcher(name, op, value), end


_PYTHON_ONLY_GROUPS = (("(?=", "lookahead"), ("(?!", "negative lookahead"),
                       ("(?<=", "lookbehind"), ("(?<!", "negative lookbehind"),
                       ("(?>", "atomic group"), ("(?P=", "backreference"))


def regex_problem(pattern: str) -> str | None:
    """Why Prometheus (Go's RE2 syntax) would reject `pattern`, or None.

    Python's `re` checks the syntax; the constructs Python accepts but RE2 does not
    (lookaround, backreferences, atomic groups, possessive quantifiers) are refused here.
    """
    try:
        re.compile(pattern)
    except re.error as error:
        return str(error)
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\":
            if pattern[i + 1:i + 2].isdigit() and pattern[i + 1] != "0":
                return (f"backreference '{pattern[i:i + 2]}' at position {i} is not supported "
                        "by Prometheus (RE2 syntax)")
            i += 2
            continue
        if char == "[":
            i = _class_end(pattern, i)
            continue
        for prefix, what in _PYTHON_ONLY_GROUPS:
            if pattern.startswith(prefix, i):
                return (f"{what} '{prefix}' at position {i} is not supported by Prometheus "
                        "(RE2 syntax); rewrite it with plain alternatives")
        if char in "*+?" and pattern[i + 1:i + 2] == "+" and i > 0:
            return (f"possessive quantifier '{pattern[i:i + 2]}' at position {i} is not "
                    "supported by Prometheus (RE2 syntax)")
        i += 1
    return None


def _class_end(pattern: str, start: int) -> int:
    """The offset after the character class `[...]` opening at `start` (already valid)."""
    i = start + 1
    if pattern[i:i + 1] == "^":
        i += 1
    if pattern[i:i + 1] == "]":
        i += 1
    while i < len(pattern) and pattern[i] != "]":
        i += 2 if pattern[i] == "\\" else 1
    return i + 1


_SIMPLE_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t",
                   "v": "\v", "\\": "\\"}
# Escapes with a code point: (number of digits, base).
_CODE_ESCAPES = {"x": (2, 16), "u": (4, 16), "U": (8, 16)}
_OCTAL = "01234567"


def _string(text: str, pos: int) -> tuple[str, int]:
    """A PromQL string literal at `pos`: its value and the offset after its closing quote.

    Escapes follow PromQL (Go): \\n, \\t, \\\\, the string's own quote, \\xNN, \\uNNNN ...;
    backtick strings are raw. Anything else is an error, as it is in Prometheus.
    """
    if pos >= len(text) or text[pos] not in "\"'`":
        raise SelectorSyntaxError(pos, 'expected a quoted label value, e.g. "value"')
    quote = text[pos]
    out: list[str] = []
    i = pos + 1
    while i < len(text):
        char = text[i]
        if char == quote:
            return "".join(out), i + 1
        if char == "\n" and quote != "`":
            break
        if char == "\\" and quote != "`":
            value, i = _escape(text, i, quote)
            out.append(value)
            continue
        out.append(char)
        i += 1
    raise SelectorSyntaxError(pos, f"unterminated string starting with {quote}; add the closing "
                              f"{quote}")


def _escape(text: str, pos: int, quote: str) -> tuple[str, int]:
    """The escape sequence at `pos` (a backslash): its value and the offset after it."""
    code = text[pos + 1:pos + 2]
    if not code:
        raise SelectorSyntaxError(pos, "escape sequence not terminated")
    if code == quote or code in _SIMPLE_ESCAPES:
        return _SIMPLE_ESCAPES.get(code, code), pos + 2
    if code in _CODE_ESCAPES or code in _OCTAL:
        digits, base = _CODE_ESCAPES.get(code, (3, 8))
        start = pos + 1 if code in _OCTAL else pos + 2
        number = text[start:start + digits]
        allowed = _OCTAL if base == 8 else "0123456789abcdefABCDEF"
        if len(number) == digits and all(c in allowed for c in number):
            value = int(number, base)
            if value <= 0x10FFFF and not 0xD800 <= value <= 0xDFFF:
                return chr(value), start + digits
        kind = "octal" if base == 8 else "hex"
        raise SelectorSyntaxError(pos, f"invalid escape sequence: '\\{code}' takes {digits} "
                                  f"{kind} digits")
    raise SelectorSyntaxError(
        pos, f"unknown escape sequence '\\{code}'; inside double quotes write a backslash twice "
        "(the regex foo\\.bar is \"foo\\\\.bar\"), or quote the value with backticks: `foo\\.bar`"
    )


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
    closers = {opener: closer for closer, opener in pairs.items()}
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
            if not stack:
                return _original_offset(text, i), (f"{char!r} closes nothing; remove it or add "
                                                   f"the opening {pairs[char]!r}")
            if stack[-1][0] != pairs[char]:
                opener = stack[-1][0]
                return _original_offset(text, i), (f"{char!r} cannot close the open {opener!r}; "
                                                   f"close that with {closers[opener]!r} first")
            stack.pop()
        i += 1
    if stack:
        char, offset = stack[-1]
        return _original_offset(text, offset), (f"unclosed {char!r}; add the matching "
                                                f"{closers[char]!r}")
    if "{{" in rendered or "}}" in rendered:
        return _original_offset(text, rendered.find("{{")), \
            "unknown placeholder; only {{window}} is replaced"
    return None


_UNKNOWN_FUNCTION = "unknown function with name "
_NO_DETAIL = "invalid promql query"  # the parser's whole message for many mistakes
# Queries that parse but cannot be a recording rule's expression.
_NOT_INSTANT = {promql_parser.MatrixSelector: "a range vector", promql_parser.SubqueryExpr:
                "a subquery's range vector", promql_parser.StringLiteral: "a string"}


def parser_problem(text: str) -> tuple[int, str] | None:
    """What the PromQL parser says of `text` (with {{window}} as 5m): (offset, problem).

    The parser gives no position; an unknown function is found by its name, anything else
    is reported at the start of the text.
    """
    rendered = text.replace(WINDOW_PLACEHOLDER, "5m")
    try:
        expr = promql_parser.parse(rendered)
    except ValueError as error:
        message = str(error)
        offset = 0
        if message.startswith(_UNKNOWN_FUNCTION):
            name = message.removeprefix(_UNKNOWN_FUNCTION).strip("'")
            found = rendered.find(f"{name}(")
            offset = _original_offset(text, found) if found >= 0 else 0
        if message == _NO_DETAIL:
            message += ("; look for a grouping without parentheses ('by (route)', not "
                        "'by route'), a misspelt keyword or a missing operator")
        return offset, f"PromQL does not parse: {message}"
    kind = _NOT_INSTANT.get(type(expr))
    if kind is not None:
        return 0, (f"the query returns {kind}; a rule needs an instant vector, e.g. "
                   "sum(rate(jobs_total[{{window}}]))")
    return None


def query_selectors(text: str) -> list[str]:
    """The vector selectors a query reads (with {{window}} as 5m), as PromQL, in order: what
    a live check asks Prometheus about. Empty when the query does not parse."""
    try:
        expr = promql_parser.parse(text.replace(WINDOW_PLACEHOLDER, "5m"))
    except ValueError:
        return []
    found: list[str] = []

    def visit(node: promql_parser.Expr) -> bool:
        if isinstance(node, promql_parser.VectorSelector):  # without offset or @
            matchers = node.matchers.matchers
            inner = ",".join(str(m) for m in matchers)
            found.append(f"{node.name or ''}{{{inner}}}" if inner else node.name or "")
        return True

    promql_parser.walk(expr, visit)
    return list(dict.fromkeys(found))


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


def divide(a: float, b: float) -> float:
    """Division as PromQL does it: 0/0 is NaN, x/0 is ±Inf (Python would raise)."""
    if b == 0:
        return math.nan if a == 0 or math.isnan(a) else math.copysign(math.inf, a)
    return a / b


def _neumaier(total: float, compensation: float, value: float) -> tuple[float, float]:
    """One step of Prometheus' kahanSumInc (Neumaier's variant of Kahan summation)."""
    new = total + value
    if abs(total) >= abs(value):
        compensation += (total - new) + value
    else:
        compensation += (value - new) + total
    return new, compensation


def sum_over_time(values: Iterable[float]) -> float:
    """sum_over_time as Prometheus 2.42 adds: in time order, with Kahan-Neumaier
    compensation (a plain float loop differs in the last digit, which flips a comparison
    landing exactly on a threshold)."""
    total = compensation = 0.0
    for value in values:
        total, compensation = _neumaier(total, compensation, value)
    return total if math.isinf(total) else total + compensation


def avg_over_time(values: Iterable[float]) -> float:
    """avg_over_time as Prometheus 2.42 averages finite samples: an incremental mean,
    compensated as `sum_over_time`; NaN without samples."""
    mean = compensation = count = 0.0
    for value in values:
        count += 1
        mean, compensation = _neumaier(mean, compensation, value / count - mean / count)
    if not count:
        return math.nan
    return mean if math.isinf(mean) else mean + compensation


def number(value: float) -> str:
    """A float as PromQL and annotations show it: 14.4, not 14.399999999999999."""
    return format(value, ".10g")
