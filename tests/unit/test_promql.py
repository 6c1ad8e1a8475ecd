"""Query templating, parsing, printing and namespace enforcement.

Templating: values are recovered exactly inside their literal and never change the structure. `lex`
below is an independent, deliberately small model of PromQL's lexer for string literals (quoted strings
with Go escapes, raw strings, comments), used to read rendered queries back.

Parsing: every query the real parser accepts prints back to text that parses to the same syntax tree;
namespace enforcement reaches every selector (checked on the parsed output, against random queries);
combined queries keep each part whole.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass

import promql_parser as pp
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from modelledger.core import promql
from modelledger.core.promql import (
    PLACEHOLDERS,
    PromQLError,
    QueryType,
    check_template,
    enforce_namespace,
    escape,
    label_parts,
    parse,
    placeholders,
    prepare,
    render,
    selectors,
)

SIMPLE_ESCAPES = {"a": 7, "b": 8, "f": 12, "n": 10, "r": 13, "t": 9, "v": 11, "\\": 92}


@dataclass(frozen=True)
class Literal:
    quote: str
    content: str


class LexError(Exception):
    pass


def lex(query: str) -> list[str | Literal]:
    """Code text between literals (str) and decoded literals, as PromQL reads `query`."""
    tokens: list[str | Literal] = []
    code: list[str] = []
    i = 0
    while i < len(query):
        ch = query[i]
        if ch == "#":
            end = query.find("\n", i)
            end = len(query) if end < 0 else end
            code.append(query[i:end])
            i = end
        elif ch in "\"'`":
            tokens.append("".join(code))
            code = []
            literal, i = _literal(query, i)
            tokens.append(literal)
        else:
            code.append(ch)
            i += 1
    tokens.append("".join(code))
    return tokens


def _literal(query: str, start: int) -> tuple[Literal, int]:
    quote = query[start]
    out = bytearray()
    i = start + 1
    while True:
        if i >= len(query):
            raise LexError("unterminated")
        ch = query[i]
        if ch == quote:
            return Literal(quote, out.decode()), i + 1
        if quote == "`":
            out += ch.encode()
            i += 1
        elif ch == "\n" or ch == "\ufffd":
            raise LexError("newline or RuneError in a quoted string")
        elif ch == "\\":
            i = _escape(query, i + 1, quote, out)
        else:
            out += ch.encode()
            i += 1


def _escape(query: str, i: int, quote: str, out: bytearray) -> int:
    """Go's strconv.UnquoteChar: append the escape at `i` (after the backslash); return the next index."""
    if i >= len(query):
        raise LexError("escape at end")
    ch = query[i]
    if ch in SIMPLE_ESCAPES:
        out.append(SIMPLE_ESCAPES[ch])
        return i + 1
    if ch == quote:
        out += ch.encode()
        return i + 1
    digits = {"x": 2, "u": 4, "U": 8}.get(ch, 3 if ch in "01234567" else 0)
    if not digits:
        raise LexError(f"unknown escape \\{ch}")
    start = i if ch in "01234567" else i + 1
    text = query[start : start + digits]
    base = 8 if ch in "01234567" else 16
    if len(text) < digits or not re.fullmatch("[0-9a-fA-F]+" if base == 16 else "[0-7]+", text):
        raise LexError("bad escape digits")
    number = int(text, base)
    if ch in "uU":
        if number > 0x10FFFF or 0xD800 <= number < 0xE000:
            raise LexError("invalid code point")
        out += chr(number).encode()
    elif number > 255:
        raise LexError("octal escape above 255")
    else:
        out.append(number)
    return start + digits


def structure(tokens: list[str | Literal]) -> list[str]:
    """Everything but literal contents: the code between literals and each literal's quote."""
    return [token if isinstance(token, str) else token.quote for token in tokens]


# Templates built from PromQL-ish fragments, with placeholders inside quoted literals only.
CODE = st.sampled_from(
    [
        *("sum(rate(", "model_errors_total", "{", "}", ",", "[1m]))", " > 0.5", " by (pod) "),
        *("=", "=~", "!=", " "),
        *(' # it\'s a "comment"\n', "\n", "{{ not a placeholder outside quotes ", "`raw \"' text`"),
    ]
)
PLACEHOLDER = st.builds(
    lambda name, left, right: "{{" + left + name + right + "}}",
    st.sampled_from(sorted(PLACEHOLDERS)),
    st.sampled_from(["", " ", "  "]),
    st.sampled_from(["", " ", "\t"]),
)
LITERAL_TEXT = st.text(st.characters(blacklist_characters="\"'\\\n{\ufffd", codec="utf-8"), max_size=5)
LITERAL_ESCAPE = st.sampled_from(["\\n", "\\\\", "\\t", "\\x41", "\\101", "\\u00e9", "\\U0001f600"])


@st.composite
def literal(draw: st.DrawFn) -> str:
    quote = draw(st.sampled_from("\"'"))
    parts = draw(st.lists(st.one_of(LITERAL_TEXT, LITERAL_ESCAPE, PLACEHOLDER), max_size=4))
    return quote + "".join(part.replace(quote, "\\" + quote) for part in parts) + quote


TEMPLATES = st.lists(st.one_of(CODE, literal()), min_size=1, max_size=12).map("".join)
ADVERSARIAL = st.text(
    st.one_of(
        st.sampled_from(list("\"'`\\{}#\n\r\t\x00\u2028\ufffd")),
        st.characters(codec="utf-8", exclude_categories=("Cs",)),
    ),
    max_size=12,
)
VALUES = st.fixed_dictionaries({name: ADVERSARIAL for name in sorted(PLACEHOLDERS)})


def expected_literals(template: str, values: dict[str, str]) -> list[str]:
    """The template's literals decoded, with each placeholder replaced by its raw value."""

    def substitute(content: str) -> str:
        return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda match: values[match.group(1)], content)

    return [substitute(token.content) for token in lex(template) if isinstance(token, Literal)]


@given(TEMPLATES, VALUES)
@example('m{namespace="{{namespace}}"}', {name: '"} or vector(1) #' for name in PLACEHOLDERS})
@example("m{a='{{ deployment }}'}", {name: "\\' or on() vector(1) or m{a='" for name in PLACEHOLDERS})
def test_values_are_recovered_exactly_and_never_change_the_structure(
    template: str, values: dict[str, str]
) -> None:
    check_template(template)
    rendered = render(template, values)
    tokens = lex(rendered)
    assert structure(tokens) == structure(lex(template))
    assert [token.content for token in tokens if isinstance(token, Literal)] == expected_literals(
        template, values
    )


FUZZ_FRAGMENTS = st.sampled_from(
    ['"', "'", "`", "\\", "#", "\n", "{", "}", "x", "{{namespace}}", "{{ model }}", "\\x4", "\\u00"]
)


@given(st.lists(FUZZ_FRAGMENTS, max_size=16).map("".join), VALUES)
def test_any_template_that_passes_the_check_renders_with_its_structure_intact(
    template: str, values: dict[str, str]
) -> None:
    try:
        check_template(template)
        template_tokens = lex(template)
    except (ValueError, LexError):
        assume(False)
        raise  # unreachable: keeps the type checker sure both names are bound
    tokens = lex(render(template, values))
    assert structure(tokens) == structure(template_tokens)
    assert [token.content for token in tokens if isinstance(token, Literal)] == expected_literals(
        template, values
    )


@given(ADVERSARIAL, st.sampled_from("\"'"))
def test_escape_reads_back_as_the_value_and_emits_no_raw_newline(value: str, quote: str) -> None:
    escaped = escape(value, quote)
    assert "\n" not in escaped
    assert lex(quote + escaped + quote) == ["", Literal(quote, value), ""]


def test_placeholders_tolerate_whitespace_inside_the_braces() -> None:
    assert render('m{ns="{{ namespace }}", d="{{deployment  }}"}', {"namespace": "a", "deployment": "b"}) == (
        'm{ns="a", d="b"}'
    )


def test_escaping_depends_on_the_enclosing_quote() -> None:
    values = {"namespace": 'it\'s "x"'}
    assert render('m{a="{{namespace}}"}', values) == 'm{a="it\'s \\"x\\""}'
    assert render("m{a='{{namespace}}'}", values) == "m{a='it\\'s \"x\"'}"


def test_placeholders_lists_the_names_used() -> None:
    assert placeholders('m{a="{{namespace}}", b="{{ version }}"} # done') == {"namespace", "version"}
    assert placeholders("up") == frozenset()
    assert placeholders('m{version="{{version}}", mv="{{versionName}}"}') == {"version", "versionName"}


def test_version_is_the_semantic_version_and_version_name_the_object() -> None:
    assert sorted(PLACEHOLDERS) == ["deployment", "model", "namespace", "version", "versionName"]
    values = {"version": "1.4.0", "versionName": "fraud-detector-1-4-0"}
    rendered = render('m{version="{{version}}", mv="{{ versionName }}"}', values)
    assert rendered == 'm{version="1.4.0", mv="fraud-detector-1-4-0"}'


@pytest.mark.parametrize(
    ("template", "error"),
    [
        ("m{a={{namespace}}}", "{{namespace}} at offset 4 is outside a quoted string literal"),
        ("m > {{ deployment }}", "{{ deployment }} at offset 4 is outside a quoted string literal"),
        ('m{a="{{pod}}"}', "unknown placeholder {{pod}}"),
        ("m{a={{pod}}}", "unknown placeholder {{pod}}"),
        ("m # {{model}}", "{{model}} at offset 4 is inside a comment"),
        ("m{a=`{{version}}`}", "{{version}} at offset 5 is inside a raw `...` string"),
        ('m{a="\\{{namespace}}"}', "right after a backslash"),
        ('m{a="\\x{{namespace}}"}', "right after an unfinished escape sequence"),
        ('m{a="\\u12{{namespace}}"}', "right after an unfinished escape sequence"),
        ('m{a="{{namespace}}}', "unterminated string literal starting at offset 4"),
        ('m{a="x\n{{namespace}}"}', "unterminated string literal starting at offset 4"),
        ("m{a=`x}", "unterminated raw string starting at offset 4"),
    ],
)
def test_unsafe_templates_are_rejected_naming_the_problem(template: str, error: str) -> None:
    with pytest.raises(ValueError, match=re.escape(error)):
        check_template(template)
    with pytest.raises(ValueError, match=re.escape(error)):
        render(template, dict.fromkeys(PLACEHOLDERS, "v"))


def test_quotes_in_a_comment_open_no_string() -> None:
    check_template('m{a="{{namespace}}"} # it\'s fine\n')
    with pytest.raises(ValueError, match="outside a quoted string"):
        check_template("m # it's\n{{namespace}}")


def test_a_used_placeholder_without_a_value_is_an_error() -> None:
    with pytest.raises(ValueError, match=re.escape("no value for placeholder {{model}}")):
        render('m{a="{{model}}"}', {"namespace": "x"})


def test_unused_values_are_ignored_and_a_template_without_placeholders_is_unchanged() -> None:
    assert render('up{job="x"}', {"namespace": "ns"}) == 'up{job="x"}'


def test_the_replacement_character_and_non_printables_are_escaped() -> None:
    # PromQL's lexer rejects a literal U+FFFD inside a string as invalid UTF-8.
    assert escape("\ufffd\x00\u2028\U000e0001") == "\\ufffd\\u0000\\u2028\\U000e0001"


def test_lone_surrogates_are_refused() -> None:
    with pytest.raises(ValueError, match="surrogate U\\+D800"):
        escape("a\ud800")


def test_escape_refuses_a_raw_string_quote() -> None:
    with pytest.raises(ValueError, match="only inside"):
        escape("x", "`")


# --- parsing and printing --------------------------------------------------------------------------

METRICS = st.sampled_from(["foo", "http_requests_total", "up", "job:rate5m:sum", "x_bucket"])
LABELS = st.sampled_from(["a", "job", "namespace", "le", "pod", "instance"])
MATCH_OPS = st.sampled_from(["=", "!=", "=~", "!~"])
LABEL_VALUES = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=8)
DURATIONS = st.sampled_from(["1m", "5m", "30s", "1h30m", "90", "1d", "2w", "250ms"])
NUMBERS = st.sampled_from(["1", "0.5", "1e3", "0x1F", "Inf", "NaN", "-2", "1.5e-7", "3"])
BINARY = st.sampled_from(
    ["+", "-", "*", "/", "%", "^", "==", "!=", ">", "<", ">=", "<=", "and", "or", "unless", "atan2"]
)
MATCHING = st.sampled_from(
    ["", " on (a)", " ignoring (job)", " on ()", " on (a) group_left (b)", " ignoring (pod) group_right ()"]
)
INJECTIONS = st.sampled_from(
    [
        '"}) or vector(1) #',
        '\\"} or up{a="',
        '\n), "modelledger_batch", "1", "", "") or label_replace((\nvector(9)',
        "'}[5m]) or on() vector(1e9) or x{a='",
        "` or vector(1) `",
    ]
)


@st.composite
def string_literal(draw: st.DrawFn) -> str:
    quote = draw(st.sampled_from("\"'"))
    return quote + escape(draw(st.one_of(LABEL_VALUES, INJECTIONS)), quote) + quote


@st.composite
def time_modifiers(draw: st.DrawFn) -> str:
    parts = []
    if draw(st.booleans()):
        parts.append(" offset " + draw(st.sampled_from(["", "-"])) + draw(DURATIONS))
    if draw(st.booleans()):
        parts.append(" @ " + draw(st.sampled_from(["start()", "end()", "100", "1700000000.5"])))
    if draw(st.booleans()):
        parts.reverse()
    return "".join(parts)


@st.composite
def selector(draw: st.DrawFn, modifiers: bool = True) -> str:
    name = draw(st.one_of(st.none(), METRICS))
    matchers = draw(st.lists(st.tuples(LABELS, MATCH_OPS, string_literal()), max_size=3))
    if name is None:
        matchers.insert(0, ("__name__", "=~", '"foo|up"'))
    body = ", ".join(f"{label}{op}{value}" for label, op, value in matchers)
    text = f"{name or ''}{{{body}}}" if matchers or draw(st.booleans()) else (name or "")
    return text + (draw(time_modifiers()) if modifiers and draw(st.integers(0, 3)) == 0 else "")


def _grow(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        inner.map(lambda e: f"({e})"),
        inner.map(lambda e: f"-{e}"),
        st.tuples(inner, BINARY, MATCHING, inner).map(lambda t: f"{t[0]} {t[1]}{t[2]} {t[3]}"),
        st.tuples(inner, st.sampled_from([">", "* ", "+", "< bool"]), NUMBERS).map(" ".join),
        st.tuples(
            st.sampled_from(["sum", "avg", "max", "min", "count", "group", "stddev"]),
            st.sampled_from(["", " by (a)", " without (job, pod)", " by ()"]),
            inner,
        ).map(lambda t: f"{t[0]}{t[1]} ({t[2]})"),
        st.tuples(st.sampled_from(["sum", "max"]), inner, st.sampled_from([" by (a)", " without (le)"])).map(
            lambda t: f"{t[0]}({t[1]}){t[2]}"
        ),
        st.tuples(st.sampled_from(["topk", "bottomk", "quantile"]), NUMBERS, inner).map(
            lambda t: f"{t[0]}({t[1]}, {t[2]})"
        ),
        st.tuples(string_literal(), inner).map(lambda t: f"count_values({t[0]}, {t[1]})"),
        st.tuples(inner, *[string_literal()] * 4).map(lambda t: f"label_replace({', '.join(t)})"),
        st.tuples(st.sampled_from(["abs", "ceil", "sort", "timestamp", "exp"]), inner).map(
            lambda t: f"{t[0]}({t[1]})"
        ),
        st.tuples(inner, inner).map(lambda t: f"topk(scalar({t[0]}), {t[1]})"),
        st.tuples(
            st.sampled_from(["max_over_time", "avg_over_time", "rate"]),
            inner,
            DURATIONS,
            st.sampled_from(["", "1m", "10s"]),
            time_modifiers(),
        ).map(lambda t: f"{t[0]}(({t[1]})[{t[2]}:{t[3]}]{t[4]})"),
        st.tuples(NUMBERS, inner).map(lambda t: f"histogram_quantile({t[0]}, {t[1]})"),
    )


VECTOR_QUERIES = st.recursive(
    st.one_of(
        selector(),
        st.tuples(
            st.sampled_from(["rate", "increase", "max_over_time", "absent_over_time"]),
            selector(modifiers=False),
            DURATIONS,
            time_modifiers(),
        ).map(lambda t: f"{t[0]}({t[1]}[{t[2]}]{t[3]})"),
        NUMBERS.map(lambda n: f"vector({n})"),
    ),
    _grow,
    max_leaves=6,
)
QUERIES = st.one_of(VECTOR_QUERIES, NUMBERS, NUMBERS.map(lambda n: f"scalar(vector({n})) * {n}"))
THOROUGH = settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)


def parsed_by_the_library(text: str) -> pp.Expr:
    try:
        return pp.parse(text)
    except ValueError:
        assume(False)
        raise


def matchers(node: pp.VectorSelector) -> list[tuple[str, str, str]]:
    return [(m.name, str(m.op), m.value) for m in node.matchers.matchers]


@THOROUGH
@given(QUERIES)
@example('m{a="\\"} or vector(1) #"}')
@example("max_over_time((a + b)[5m:])")
def test_every_parsable_query_prints_back_to_the_same_syntax_tree(text: str) -> None:
    tree = parsed_by_the_library(text)
    query = parse(text)  # raises if the printed text parsed to another tree
    assert repr(pp.parse(query.text)) == repr(tree)
    assert parse(query.text).text == query.text, "the canonical text is a fixed point"
    assert "#" not in query.text.replace('"#', "").replace('#"', "") or '"' in query.text
    assert "\n" not in query.text


def refusable(query: promql.Query, namespace: str) -> bool:
    """Whether a selector of `query` matches `namespace` otherwise than ="<namespace>"."""
    return any(
        name == "namespace" and (op, value) != ("MatchOp.Equal", namespace)
        for node in selectors(query.tree)
        for name, op, value in matchers(node)
    )


@THOROUGH
@given(QUERIES)
def test_enforcement_puts_the_namespace_on_every_selector_and_changes_nothing_else(text: str) -> None:
    parsed_by_the_library(text)
    query = parse(text)
    if refusable(query, "team-a"):
        with pytest.raises(PromQLError, match='restricts every selector to namespace="team-a"'):
            enforce_namespace(query, "team-a")
        return
    enforced = enforce_namespace(query, "team-a")
    assert enforced.namespace == "team-a"
    assert enforced.type is query.type
    before, after = selectors(query.tree), selectors(pp.parse(enforced.text))
    assert len(before) == len(after)
    for old, new in zip(before, after, strict=True):
        assert new.name == old.name
        assert ("namespace", "MatchOp.Equal", "team-a") in matchers(new)
        assert [m for m in matchers(new) if m[0] != "namespace"] == [
            m for m in matchers(old) if m[0] != "namespace"
        ]
    # Everything but the selectors' matchers is unchanged: strip them and compare the trees.
    assert _without_selectors(enforced.text) == _without_selectors(query.text)


def _without_selectors(text: str) -> str:
    tree = pp.parse(text)
    for node in selectors(tree):
        node.matchers = pp.Matchers([])
    return promql.print_expr(tree)


FRAGMENTS = st.sampled_from(
    [
        *"(){}[]\"'`,:@#\n=~!+-*/^<> \\",
        *("sum", "by", "rate", "foo", "5m", "offset", "-1", "bool", "on", "or", "@ -1", "1e99999", "0x"),
        *("start()", "[5m:]", "info", "topk"),
    ]
)


@given(st.lists(FRAGMENTS, max_size=20).map("".join))
@settings(max_examples=500, deadline=None)
def test_any_text_is_a_query_or_a_promql_error_never_a_crash(text: str) -> None:
    with contextlib.suppress(PromQLError):
        enforce_namespace(parse(text), "ns")


@pytest.mark.parametrize(
    "text",
    [
        # The batch injection of issue 13: close the part's parentheses and add a part of our own.
        'vector(0)\n), "modelledger_batch", "1", "", "") or label_replace((\nvector(1e9)',
        'up) or label_replace(vector(1e9), "modelledger_batch", "0", "", "") or (up',
        "up # ) or vector(1)\n)",
        "sum(rate(x[5m]))) or (vector(1)",
        "up; vector(1)",
        "",
    ],
)
def test_more_or_less_than_one_expression_is_refused(text: str) -> None:
    with pytest.raises(PromQLError, match="not a PromQL expression"):
        parse(text)


def test_comments_are_dropped_and_strings_escaped_in_the_canonical_text() -> None:
    query = parse("sum by (pod) (rate(x{a=\"q\\\"uote\", b='it\\'s'}[5m])) # the comment ) or vector(1)\n> 0")
    assert query.text == 'sum by (pod) (rate(x{a="q\\"uote",b="it\'s"}[5m])) > 0.0'
    assert query.type is QueryType.VECTOR


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("up", QueryType.VECTOR),
        ("sum(rate(x[1m]))", QueryType.VECTOR),
        ("scalar(up) * 2", QueryType.SCALAR),
        ("1 + 2", QueryType.SCALAR),
        ("time()", QueryType.SCALAR),
        ("up > bool 1", QueryType.VECTOR),
        ("up[5m]", QueryType.MATRIX),
        ("rate(up[5m])[10m:]", QueryType.MATRIX),
        ('"text"', QueryType.STRING),
    ],
)
def test_the_type_of_a_query_comes_from_its_syntax_tree(text: str, kind: QueryType) -> None:
    assert parse(text).type is kind


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("up @ -10", "before 1970"),
        ('up{a="1" or b="2"}', "`or` between label matchers"),
        ('up{"a.b"="c"}', "label name 'a.b' is not supported"),
        ("x{a=`\\d`}", "raw `...` string holds a backslash"),
        ("nonexistent_function(up)", "not a PromQL expression"),
    ],
)
def test_queries_outside_what_both_parsers_read_alike_are_refused(text: str, error: str) -> None:
    with pytest.raises(PromQLError, match=re.escape(error)):
        parse(text)


# --- namespace enforcement ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("up", 'up{namespace="team-a"}'),
        ('up{namespace="team-a"}', 'up{namespace="team-a"}'),
        ('up{job="x"} offset 5m', 'up{job="x",namespace="team-a"} offset 5m'),
        (
            "sum by (namespace) (rate(x[5m] @ end()))",
            'sum by (namespace) (rate(x{namespace="team-a"}[5m] @ end()))',
        ),
        ("topk(scalar(other), mine)", 'topk (scalar(other{namespace="team-a"}), mine{namespace="team-a"})'),
        (
            "max_over_time((a / on (pod) b)[5m:1m])",
            'max_over_time((a{namespace="team-a"} / on (pod) b{namespace="team-a"})[5m:1m])',
        ),
        ('{__name__=~".+"}', '{__name__=~".+",namespace="team-a"}'),
        ("vector(1)", "vector(1.0)"),
        ('absent(up{job="x"})', 'absent(up{job="x",namespace="team-a"})'),
        (
            'label_replace(up, "namespace", "team-b", "", "")',
            'label_replace(up{namespace="team-a"}, "namespace", "team-b", "", "")',
        ),
    ],
)
def test_every_selector_is_restricted_to_the_namespace(text: str, expected: str) -> None:
    enforced = enforce_namespace(parse(text), "team-a")
    assert enforced.text == expected
    for node in selectors(enforced.tree):
        assert ("namespace", "MatchOp.Equal", "team-a") in matchers(node)


@pytest.mark.parametrize(
    "text",
    [
        'up{namespace="team-b"}',
        'up{namespace=~"team-.*"}',
        'up{namespace=~"team-a"}',
        'up{namespace!="team-a"}',
        'up{namespace=""}',
        'up{namespace="team-a", namespace="team-b"}',
        'sum(rate(x{namespace="team-a"}[5m])) / sum(rate(x{namespace="team-b"}[5m]))',
    ],
)
def test_a_selector_naming_another_namespace_is_refused(text: str) -> None:
    with pytest.raises(PromQLError, match='restricts every selector to namespace="team-a"'):
        enforce_namespace(parse(text), "team-a")


def test_functions_that_read_unnamed_series_are_refused_when_enforced() -> None:
    assert parse("info(up)").type is QueryType.VECTOR  # fine on a shared source
    with pytest.raises(PromQLError, match="info\\(\\) reads series no selector names"):
        enforce_namespace(parse("info(up)"), "team-a")


def test_only_a_namespace_name_can_be_enforced() -> None:
    with pytest.raises(PromQLError, match="not a Kubernetes namespace name"):
        enforce_namespace(parse("up"), 'x"} or vector(1) #')


# --- prepare: render, parse, enforce ----------------------------------------------------------------

VALUES_OF_A = {"namespace": "team-a", "deployment": "fraud", "model": "m", "version": "v1"}


def test_prepare_renders_parses_and_enforces() -> None:
    query = prepare('max(errors{deployment="{{deployment}}"})', VALUES_OF_A, enforce="team-a")
    assert query.text == 'max (errors{deployment="fraud",namespace="team-a"})'
    shared = prepare('max(errors{namespace="{{namespace}}"})', VALUES_OF_A)
    assert shared.text == 'max (errors{namespace="team-a"})'
    assert shared.namespace is None


@pytest.mark.parametrize(
    ("template", "error"),
    [
        ('x{a="{{ whoami }}"}', "unknown placeholder {{ whoami }}"),
        ("x > {{namespace}}", "outside a quoted string literal"),
        ('sum(x{a="{{deployment}}"}', "not a PromQL expression"),
    ],
)
def test_prepare_names_the_problem_and_fails_the_same_way_every_time(template: str, error: str) -> None:
    for _ in range(3):  # failures are cached: each raise is a fresh exception
        with pytest.raises(PromQLError, match=re.escape(error)) as raised:
            prepare(template, VALUES_OF_A)
        assert raised.value.__traceback__ is not None
        assert len(list(_frames(raised.value.__traceback__))) < 10


def _frames(traceback: object) -> list[object]:
    found = []
    while traceback is not None:
        found.append(traceback)
        traceback = traceback.tb_next  # type: ignore[attr-defined]
    return found


def test_a_value_cannot_escape_its_string_whatever_it_holds() -> None:
    values = {**VALUES_OF_A, "deployment": '"}) or vector(1e9) or x{a="'}
    query = prepare('max(x{deployment="{{deployment}}"})', values, enforce="team-a")
    (node,) = selectors(query.tree)
    assert ("deployment", "MatchOp.Equal", values["deployment"]) in matchers(node)
    assert query.type is QueryType.VECTOR


def test_check_query_validates_a_template_without_values() -> None:
    promql.check_query('sum(rate(x{namespace="{{namespace}}"}[5m]))')
    with pytest.raises(PromQLError, match="not a PromQL expression"):
        promql.check_query('sum(rate(x{namespace="{{namespace}}"}[5m])')


# --- combining one tenant's queries -----------------------------------------------------------------


@THOROUGH
@given(st.lists(VECTOR_QUERIES, min_size=1, max_size=5))
def test_combined_parts_stay_whole_and_in_order(texts: list[str]) -> None:
    for text in texts:
        parsed_by_the_library(text)
    parts = [parse(text) for text in texts]
    assume(all(part.type is QueryType.VECTOR for part in parts))
    combined = label_parts(parts, "modelledger_batch")
    tree = pp.parse(combined)
    found: list[pp.Expr] = []
    while isinstance(tree, pp.BinaryExpr) and str(tree.op) == "or" and len(found) < len(parts) - 1:
        found.append(tree.rhs)
        tree = tree.lhs
    found.append(tree)
    found.reverse()
    for index, (call, part) in enumerate(zip(found, parts, strict=True)):
        assert isinstance(call, pp.Call)
        assert call.func.name == "label_replace"
        assert repr(call.args[0].expr) == repr(part.tree)
        assert call.args[2].val == str(index)


def test_only_instant_vectors_are_combined() -> None:
    with pytest.raises(PromQLError, match="only instant-vector"):
        label_parts([parse("up"), parse("scalar(up)")], "modelledger_batch")
    with pytest.raises(PromQLError, match="is not a label name"):
        label_parts([parse("up")], 'x", "y')
