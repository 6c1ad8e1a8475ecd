"""Rule query templates: `{{namespace}}`-style placeholders substituted as escaped PromQL string content.

A placeholder may only stand inside a double- or single-quoted PromQL string literal, e.g.
`{namespace="{{namespace}}"}`. There each value is escaped the way PromQL (Go's `strconv.Unquote`)
reads it back, so no value can end the literal or otherwise change the query's structure. Anywhere
else (bare code, a comment, a raw backtick string, right after an unfinished escape) no escaping can
make a value safe, so `check_template` rejects the template with an error naming the placeholder.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

PLACEHOLDERS = frozenset({"namespace", "deployment", "model", "version"})
"""The names a template may use: the deployment's namespace and name, its model, its serving version."""

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_QUOTES = "\"'"
# Escapes that run over several characters: how many digits follow, and which digits.
_HEX = "0123456789abcdefABCDEF"
_LONG_ESCAPES = {
    "x": (2, _HEX),
    "u": (4, _HEX),
    "U": (8, _HEX),
    **{digit: (2, "01234567") for digit in "01234567"},
}
_SHORT_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
# PromQL's lexer treats a literal U+FFFD (utf8.RuneError) inside a string as invalid UTF-8.
_REPLACEMENT_CHARACTER = "\ufffd"


@dataclass(frozen=True)
class _Placeholder:
    name: str
    quote: str
    """The quote of the enclosing string literal: decides which quote character must be escaped."""


_Piece = str | _Placeholder


def check_template(template: str) -> None:
    """Raise ValueError, naming the placeholder or problem, unless `template` can be rendered safely."""
    _pieces(template)


def placeholders(template: str) -> frozenset[str]:
    """The placeholder names a (valid) template uses."""
    return frozenset(piece.name for piece in _pieces(template) if isinstance(piece, _Placeholder))


def render(template: str, values: Mapping[str, str]) -> str:
    """Substitute every placeholder with its value, escaped for the string literal it stands in.

    Raises ValueError for a template `check_template` rejects, or when a used placeholder has no value.
    """
    rendered: list[str] = []
    for piece in _pieces(template):
        if isinstance(piece, str):
            rendered.append(piece)
        elif piece.name not in values:
            raise ValueError(f"no value for placeholder {{{{{piece.name}}}}}")
        else:
            rendered.append(escape(values[piece.name], piece.quote))
    return "".join(rendered)


def escape(value: str, quote: str = '"') -> str:
    """`value` as the content of a PromQL string literal delimited by `quote` (`"` or `'`).

    Backslash, the delimiting quote, newlines and every non-printable character are escaped, so the
    result can never end the literal and PromQL reads back exactly `value`.
    """
    if quote not in _QUOTES:
        raise ValueError(f"PromQL escapes only inside '\"' or \"'\" strings, not {quote!r}")
    return "".join(_escape_character(character, quote) for character in value)


def _escape_character(character: str, quote: str) -> str:
    if character == quote:
        return "\\" + quote
    if character in _SHORT_ESCAPES:
        return _SHORT_ESCAPES[character]
    if character.isprintable() and character != _REPLACEMENT_CHARACTER:
        return character
    code = ord(character)
    if 0xD800 <= code < 0xE000:
        # Not encodable as UTF-8, so it could never reach Prometheus (nor match a label value).
        raise ValueError(f"value contains a lone surrogate U+{code:04X}")
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


@lru_cache(maxsize=1024)
def _pieces(template: str) -> tuple[_Piece, ...]:
    """Split the template into verbatim text and placeholders, following PromQL's lexer for strings."""
    scanner = _Scanner(template)
    scanner.scan()
    return tuple(scanner.pieces)


class _Scanner:
    """A PromQL lexer reduced to what matters here: string literals, escapes, comments, placeholders."""

    def __init__(self, template: str) -> None:
        self.template = template
        self.position = 0
        self.text_start = 0
        self.pieces: list[_Piece] = []

    def scan(self) -> None:
        while self.position < len(self.template):
            character = self.template[self.position]
            if character in _QUOTES:
                self._quoted_string(character)
            elif character == "`":
                self._raw_string()
            elif character == "#":
                self._comment()
            else:
                self._reject_placeholder("outside a quoted string literal")
                self.position += 1
        self._flush_text(self.position)

    def _quoted_string(self, quote: str) -> None:
        opened_at = self.position
        self.position += 1
        while self.position < len(self.template):
            character = self.template[self.position]
            if character == quote:
                self.position += 1
                return
            if character == "\n":
                break
            if character == "\\":
                self._escape_sequence()
            elif match := _PLACEHOLDER.match(self.template, self.position):
                self._flush_text(self.position)
                self._check_name(match)
                self.pieces.append(_Placeholder(match.group(1), quote))
                self.position = self.text_start = match.end()
            else:
                self.position += 1
        raise ValueError(f"unterminated string literal starting at offset {opened_at}")

    def _escape_sequence(self) -> None:
        """Step over one escape; a placeholder inside an unfinished escape would complete it."""
        self.position += 1
        if self.position >= len(self.template):
            return
        self._reject_placeholder("right after a backslash")
        digits, allowed = _LONG_ESCAPES.get(self.template[self.position], (0, ""))
        self.position += 1
        for _ in range(digits):
            if self.position >= len(self.template) or self.template[self.position] not in allowed:
                self._reject_placeholder("right after an unfinished escape sequence")
                return
            self.position += 1

    def _raw_string(self) -> None:
        opened_at = self.position
        self.position += 1
        while self.position < len(self.template):
            if self.template[self.position] == "`":
                self.position += 1
                return
            self._reject_placeholder('inside a raw `...` string, which has no escapes (use "...")')
            self.position += 1
        raise ValueError(f"unterminated raw string starting at offset {opened_at}")

    def _comment(self) -> None:
        # Quotes inside a comment open no string; a value substituted here could end the comment.
        end = self.template.find("\n", self.position)
        end = len(self.template) if end < 0 else end
        while self.position < end:
            self._reject_placeholder("inside a comment")
            self.position += 1

    def _reject_placeholder(self, where: str) -> None:
        match = _PLACEHOLDER.match(self.template, self.position)
        if match:
            self._check_name(match)
            raise ValueError(
                f"placeholder {match.group(0)} at offset {match.start()} is {where}; placeholders must "
                f'stand inside a quoted PromQL string, e.g. {{namespace="{{{{{match.group(1)}}}}}"}}'
            )

    def _check_name(self, match: re.Match[str]) -> None:
        if match.group(1) not in PLACEHOLDERS:
            known = ", ".join(f"{{{{{name}}}}}" for name in sorted(PLACEHOLDERS))
            raise ValueError(
                f"unknown placeholder {match.group(0)} at offset {match.start()}; known: {known}"
            )

    def _flush_text(self, end: int) -> None:
        if end > self.text_start:
            self.pieces.append(self.template[self.text_start : end])
        self.text_start = end
