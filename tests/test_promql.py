"""The selector parser and renderer, and the structural check of `query` SLIs."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from slo_engine.spec.promql import (
    Matcher,
    Selector,
    SelectorSyntaxError,
    check_query,
    parse_selector,
    parser_problem,
    regex_problem,
)

# --- parsing


@pytest.mark.parametrize(("text", "expected"), [
    pytest.param("up", Selector("up"), id="a bare metric name"),
    pytest.param("job:requests:rate5m", Selector("job:requests:rate5m"),
                 id="recording-rule names have colons"),
    pytest.param("up{}", Selector("up"), id="empty braces"),
    pytest.param('x{a="1"}', Selector("x", (Matcher("a", "=", "1"),)), id="equality"),
    pytest.param('x{a!="1", b=~"2.*", c!~"3|4"}',
                 Selector("x", (Matcher("a", "!=", "1"), Matcher("b", "=~", "2.*"),
                                Matcher("c", "!~", "3|4"))),
                 id="all four operators in order"),
    pytest.param('  x { a = "1" ,b="2", }  ',
                 Selector("x", (Matcher("a", "=", "1"), Matcher("b", "=", "2"))),
                 id="spaces anywhere and a trailing comma"),
    pytest.param("x{a='it\\'s'}", Selector("x", (Matcher("a", "=", "it's"),)),
                 id="single quotes escape their own quote"),
    pytest.param("x{a='\"'}", Selector("x", (Matcher("a", "=", '"'),)),
                 id="the other quote needs no escape"),
    pytest.param('x{path=~`/api/v\\d+`}', Selector("x", (Matcher("path", "=~", "/api/v\\d+"),)),
                 id="backtick strings are raw"),
    pytest.param('x{a="tab\\there\\nnew \\"q\\" back\\\\slash"}',
                 Selector("x", (Matcher("a", "=", 'tab\there\nnew "q" back\\slash'),)),
                 id="Go escapes in double quotes"),
    pytest.param('x{a="\\x41\\u00e9\\U0001F600\\101"}',
                 Selector("x", (Matcher("a", "=", "Aé\U0001F600A"),)),
                 id="hex, unicode and octal escapes"),
    pytest.param('x{a=~"5\\\\d\\\\d"}', Selector("x", (Matcher("a", "=~", "5\\d\\d"),)),
                 id="a doubled backslash is one regex backslash"),
])
def test_parse(text: str, expected: Selector) -> None:
    assert parse_selector(text) == expected


def test_latency_selectors_may_omit_the_metric_name() -> None:
    assert parse_selector('{job="api"}', allow_empty_name=True) == Selector(
        "", (Matcher("job", "=", "api"),))
    assert parse_selector("{}", allow_empty_name=True) == Selector("")
    with pytest.raises(SelectorSyntaxError, match="expected a metric name"):
        parse_selector('{job="api"}')


@pytest.mark.parametrize(("text", "offset", "message"), [
    pytest.param("", 0, "expected a metric name such as http_requests_total", id="empty"),
    pytest.param("  9x", 2, "expected a metric name", id="a name starting with a digit"),
    pytest.param('x{a="1"', 7, "unclosed '{'; add the closing '}'", id="unclosed brace"),
    pytest.param('x{a="1" b="2"}', 8, "expected ',' or '}', found 'b'", id="missing comma"),
    pytest.param('x{1a="1"}', 2, "expected a label name", id="label name with a digit first"),
    pytest.param('x{a=="1"}', 4, 'expected a quoted label value, e.g. "value"',
                 id="doubled equals sign"),
    pytest.param('x{a~"1"}', 3, "expected one of = != =~ !~ after label 'a'",
                 id="tilde without equals"),
    pytest.param("x{a=1}", 4, 'expected a quoted label value, e.g. "value"',
                 id="unquoted value"),
    pytest.param('x{a="1}', 4, 'unterminated string starting with "; add the closing "',
                 id="unterminated string, at its opening quote"),
    pytest.param('x{a="line\nbreak"}', 4, "unterminated string",
                 id="a newline ends a quoted string, as in PromQL"),
    pytest.param('x{a="5\\d"}', 6, "unknown escape sequence '\\d'; inside double quotes write",
                 id="unknown escape, at the backslash"),
    pytest.param('x{a="\\\'"}', 5, "unknown escape sequence '\\''",
                 id="escaping the other quote is an error"),
    pytest.param('x{a="\\x4"}', 5, "invalid escape sequence: '\\x' takes 2 hex digits",
                 id="short hex escape"),
    pytest.param('x{a="\\', 5, "escape sequence not terminated", id="trailing backslash"),
    pytest.param('x{a=~"(a"}', 5, "invalid regular expression '(a': missing ), unterminated",
                 id="regex that does not compile, at its value"),
    pytest.param('x{a=~"(?=a)"}', 5, "invalid regular expression '(?=a)': lookahead '(?=' at "
                 "position 0 is not supported by Prometheus (RE2 syntax)",
                 id="regex Prometheus cannot compile"),
    pytest.param("rate(x[5m])", 4, "give a plain selector; the engine adds rate()",
                 id="a function call"),
    pytest.param("x[5m]", 1, "give a plain selector", id="a range"),
    pytest.param('x{a="1"} offset 5m', 9, "unexpected 'offset 5m' after the selector",
                 id="trailing text"),
])
def test_syntax_errors_carry_the_offset(text: str, offset: int, message: str) -> None:
    with pytest.raises(SelectorSyntaxError) as caught:
        parse_selector(text)
    assert (caught.value.offset, str(caught.value)[:len(message)]) == (offset, message)


# --- rendering


def test_render() -> None:
    selector = parse_selector(' x { b =~ `a|b` , a!="1" } ')
    assert selector.render() == 'x{b=~"a|b", a!="1"}'
    assert Selector("up").render() == "up"
    assert selector.render((Matcher("slo", "=", "s"),)) == 'x{b=~"a|b", a!="1", slo="s"}'
    assert selector.with_metric("y_count").render() == 'y_count{b=~"a|b", a!="1"}'


def test_render_escapes_what_promql_needs() -> None:
    matcher = Matcher("a", "=", 'q"b\\n\nr\rt\t')
    assert matcher.render() == 'a="q\\"b\\\\n\\nr\\rt\\t"'


@pytest.mark.parametrize("text", [
    'x{a="1"}',
    'x{path=~"/api/v\\\\d+", code!~"4..|5..", a!=""}',
    'x{a="it\'s \\"quoted\\" \\\\ and\\nnewline"}',
])
def test_rendered_selectors_are_canonical(text: str) -> None:
    assert parse_selector(text).render() == text


label_names = st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_]{0,10}", fullmatch=True)
metric_names = st.from_regex(r"[a-zA-Z_:][a-zA-Z0-9_:]{0,15}", fullmatch=True)


@given(metric=metric_names,
       matchers=st.lists(st.tuples(label_names, st.sampled_from(["=", "!="]), st.text()),
                         max_size=4))
def test_render_then_parse_is_the_identity(metric: str,
                                           matchers: list[tuple[str, str, str]]) -> None:
    selector = Selector(metric, tuple(Matcher(*m) for m in matchers))
    assert parse_selector(selector.render()) == selector


@given(value=st.text())
def test_regex_values_round_trip(value: str) -> None:
    pattern = "".join("\\" + c if not c.isalnum() else c for c in value)  # a valid literal
    selector = Selector("x", (Matcher("a", "=~", pattern),))
    assert parse_selector(selector.render()) == selector


# --- matching (used by the generated promtool tests)


@pytest.mark.parametrize(("op", "pattern", "value", "matches"), [
    ("=", "a", "a", True),
    ("=", "a", "ab", False),
    ("!=", "a", "b", True),
    ("=~", "4..", "404", True),
    ("=~", "4..", "1404", False),  # anchored at both ends
    ("=~", "4..", "4040", False),
    ("!~", "4..", "500", True),
    ("!~", "4..", "404", False),
    ("=", "", "", True),  # an absent label is the empty string
    ("=~", ".*", "", True),
])
def test_matcher_semantics(op: str, pattern: str, value: str, matches: bool) -> None:
    assert Matcher("a", op, pattern).matches(value) is matches


# --- regexes: Python's syntax check plus what RE2 refuses


@pytest.mark.parametrize("pattern", ["5..", "(?i)get|post", "[a-z]+",
                                     "a+?", "a??", "x{2,3}", r"\d+\.\d+", r"[\]]+", "[]a]+",
                                     r"\0", "(?P<name>a)", "[+]+", r"\++"])
def test_regexes_prometheus_accepts(pattern: str) -> None:
    assert regex_problem(pattern) is None


@pytest.mark.parametrize(("pattern", "problem"), [
    ("(a", "missing ), unterminated subpattern at position 0"),
    ("(?=a)", "lookahead '(?=' at position 0 is not supported by Prometheus (RE2 syntax)"),
    ("a(?!b)", "negative lookahead '(?!' at position 1"),
    ("(?<=a)b", "lookbehind '(?<=' at position 0"),
    ("(?<!a)b", "negative lookbehind '(?<!' at position 0"),
    ("(?>a)", "atomic group '(?>' at position 0"),
    (r"(a)\1", "backreference '\\1' at position 3"),
    ("(?P<n>a)(?P=n)", "backreference '(?P=' at position 8"),
    ("a*+", "possessive quantifier '*+' at position 1"),
    ("a?+", "possessive quantifier '?+' at position 1"),
])
def test_regexes_prometheus_rejects(pattern: str, problem: str) -> None:
    found = regex_problem(pattern)
    assert found is not None and found.startswith(problem), found


def test_regex_constructs_inside_a_class_are_literal() -> None:
    assert regex_problem("[(?=]+") is None
    assert regex_problem(r"[\1]") is None


# --- query SLIs


@pytest.mark.parametrize("query", [
    "sum(rate(jobs_total[{{window}}]))",
    'sum(rate(x{a=~"b|c", d!="(("}[{{window}}])) / sum(rate(y[{{window}}]))',
    "sum by (region) (increase(x[{{window}}])) or vector(0)",
    "sum(rate(x{path=~`/a[(]`}[{{window}}]))",
])
def test_valid_queries(query: str) -> None:
    assert check_query(query) is None
    assert parser_problem(query) is None


@pytest.mark.parametrize(("query", "offset", "message"), [
    pytest.param("sum(rat(x[{{window}}]))", 4,
                 "PromQL does not parse: unknown function with name 'rat'",
                 id="an unknown function, at its name"),
    pytest.param("sum(rate(x[{{window}}])) / sum(irat(y[{{window}}]))", 31,
                 "PromQL does not parse: unknown function with name 'irat'",
                 id="the offset counts {{window}} as written, not as 5m"),
    pytest.param("sum(rate(x[{{window}}])) by route", 0,
                 "PromQL does not parse: invalid promql query; look for a grouping",
                 id="the parser's bare message gets a hint"),
    pytest.param("rate(x[{{window}}])[1h:5m]", 0, "the query returns a subquery's range vector",
                 id="a subquery cannot be a rule's expression"),
    pytest.param("x[{{window}}]", 0, "the query returns a range vector",
                 id="nor can a range selector"),
])
def test_the_promql_parser_refuses(query: str, offset: int, message: str) -> None:
    problem = parser_problem(query)
    assert problem is not None
    assert (problem[0], problem[1][:len(message)]) == (offset, message)


TWO_PARTS = "sum(rate(a[{{window}}])) / sum(rate(b[{{window}}])"
ONE_TOO_MANY = "sum(rate(x[{{window}}])))"
WRONG_ORDER = "sum(rate(x[{{window}})])"
UNTERMINATED = 'sum(rate(x{a="b}[{{window}}]))'
MISSPELT = "sum(rate(x[{{window}}])) / sum(rate(y[{{windw}}]))"
BAD_ESCAPE = 'sum(rate(x{a=~"\\."}[{{window}}]))'


@pytest.mark.parametrize(("query", "offset", "message"), [
    pytest.param("sum(rate(jobs_total[5m]))", 0,
                 "the query needs the {{window}} placeholder in its range selector, "
                 "e.g. sum(rate(jobs_total[{{window}}]))", id="no placeholder, at the start"),
    pytest.param(TWO_PARTS, TWO_PARTS.index("(rate(b"), "unclosed '('; add the matching ')'",
                 id="unclosed paren after two placeholders, offset in the original text"),
    pytest.param(ONE_TOO_MANY, len(ONE_TOO_MANY) - 1,
                 "')' closes nothing; remove it or add the opening '('",
                 id="one closing paren too many"),
    pytest.param(WRONG_ORDER, WRONG_ORDER.index(")]"),
                 "')' cannot close the open '['; close that with ']' first",
                 id="brackets closed in the wrong order"),
    pytest.param(UNTERMINATED, UNTERMINATED.index('"'),
                 'unterminated string starting with "; add the closing "',
                 id="unterminated string"),
    pytest.param(MISSPELT, MISSPELT.index("{{windw}}"),
                 "unknown placeholder; only {{window}} is replaced", id="misspelt placeholder"),
    pytest.param(BAD_ESCAPE, BAD_ESCAPE.index("\\"), "unknown escape sequence '\\.'",
                 id="a bad escape in a string"),
])
def test_query_problems_and_their_offsets(query: str, offset: int, message: str) -> None:
    problem = check_query(query)
    assert problem is not None
    assert (problem[0], problem[1][:len(message)]) == (offset, message)
