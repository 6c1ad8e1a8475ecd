"""Query templating: values are recovered exactly inside their literal and never change the structure.

`lex` below is an independent, deliberately small model of PromQL's lexer for string literals (quoted
strings with Go escapes, raw strings, comments), used to read rendered queries back.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

from modelledger.core.promql import PLACEHOLDERS, check_template, escape, placeholders, render

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
