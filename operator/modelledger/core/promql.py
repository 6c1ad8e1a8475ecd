"""Rule queries: templates rendered safely, then parsed as one PromQL expression and printed canonically.

Templates: `{{namespace}}`-style placeholders are substituted as escaped PromQL string content.

A placeholder may only stand inside a double- or single-quoted PromQL string literal, e.g.
`{namespace="{{namespace}}"}`. There each value is escaped the way PromQL (Go's `strconv.Unquote`)
reads it back, so no value can end the literal or otherwise change the query's structure. Anywhere
else (bare code, a comment, a raw backtick string, right after an unfinished escape) no escaping can
make a value safe, so `check_template` rejects the template with an error naming the placeholder.

Queries: `parse` reads a rendered query as ONE expression with a real PromQL parser and prints it back
from its syntax tree; `enforce_namespace` restricts every selector to one namespace (prom-label-proxy
style); `label_parts` combines parsed queries of one tenant into one request. Pure: no I/O.
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from functools import lru_cache

import promql_parser as pp

PLACEHOLDERS = frozenset({"namespace", "deployment", "model", "version", "versionName"})
"""The names a template may use: the deployment's namespace and name, its model, the serving version's
semantic version (`spec.version` of the ModelVersion, what the pods' `version` label carries) and
`versionName`, the serving ModelVersion object's name."""

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


# --- parsed queries ----------------------------------------------------------------------------------
#
# A rendered query is parsed as ONE expression by a real PromQL parser (`promql-parser`, the Python
# bindings of the Rust crate of the same name) and printed back by the printer below, never by the
# parser's own `str()`: that one writes label values and string literals without escaping them (a value
# holding `"` would come out as a new end of string). What is sent to Prometheus is always this printed,
# canonical text: balanced, free of comments, every string escaped as Go reads it back. So no query text
# a tenant wrote ever reaches Prometheus verbatim, and nothing it contains can close a parenthesis of the
# expression it is placed in.


class PromQLError(ValueError):
    """A query that is not one PromQL expression this operator can run safely; the message says why."""


class QueryType(StrEnum):
    """The type of a PromQL expression's value, as Prometheus would evaluate it."""

    VECTOR = "vector"
    SCALAR = "scalar"
    MATRIX = "matrix"
    STRING = "string"


class Tenancy(StrEnum):
    """How a Prometheus source is shared between namespaces (set by the operator's admins)."""

    SHARED = "shared"
    """Queries run as written (each tenant's text still travels alone or with its own namespace's)."""
    ENFORCED = "enforced"
    """Every selector gets `namespace="<the deployment's namespace>"`, as prom-label-proxy does."""


NAMESPACE_LABEL = "namespace"


@dataclass(frozen=True, eq=False)
class Query:
    """One parsed PromQL expression: its canonical text, its type and its syntax tree."""

    text: str
    """The expression printed from its syntax tree: what is sent to Prometheus."""
    type: QueryType
    tree: pp.Expr
    namespace: str | None = None
    """The namespace every selector was restricted to (`enforce_namespace`), if any."""

    def __str__(self) -> str:
        return self.text


def parse(text: str) -> Query:
    """`text` as one PromQL expression, printed canonically; PromQLError when it is not one.

    The canonical text is parsed once more and must give the same syntax tree, so the printer can never
    send something other than what was parsed.
    """
    if _raw_string_with_backslash(text):
        raise PromQLError(
            "a raw `...` string holds a backslash, which parsers read differently; use a double-quoted "
            'string with Go escapes ("\\\\d" for a regex \\d)'
        )
    tree = _parse_tree(text)
    shape = _shape(tree)
    if _NEGATIVE_TIME.search(shape):  # reading such a time back makes the parser's bindings panic
        raise PromQLError("an @ modifier before 1970 is not supported")
    canonical = _Printer(None).expr(tree)
    if _shape(_parse_tree(canonical)) != shape:
        raise PromQLError("the query cannot be printed back as it was parsed")  # a printer gap: refused
    return Query(canonical, type_of(tree), tree)


def enforce_namespace(query: Query, namespace: str) -> Query:
    """`query` with `namespace="<namespace>"` on every vector and matrix selector (prom-label-proxy style).

    A selector that already matches `namespace` with anything but that value (another namespace, a
    regex, a negation) is refused. The result is parsed back and every selector in it checked.
    """
    if not _LABEL_VALUE_SAFE.fullmatch(namespace):
        raise PromQLError(f"cannot enforce the namespace {namespace!r}: not a Kubernetes namespace name")
    text = _Printer(namespace).expr(query.tree)
    tree = _parse_tree(text)
    for selector in selectors(tree):
        if not any(_is_namespace(matcher, namespace) for matcher in selector.matchers.matchers):
            raise PromQLError("a selector escaped the namespace restriction")  # cannot happen: refused
    if _Printer(None).expr(tree) != text:
        raise PromQLError("the restricted query cannot be printed back as it was built")
    return Query(text, type_of(tree), tree, namespace)


def prepare(template: str, values: Mapping[str, str], *, enforce: str | None = None) -> Query:
    """Render `template`, parse it as one expression and, with `enforce`, restrict it to that namespace.

    Raises PromQLError (a ValueError) naming the problem: a bad template, a parse error, a refused selector.
    """
    return _prepare(template, tuple(sorted(values.items())), enforce)


def _prepare(template: str, values: tuple[tuple[str, str], ...], enforce: str | None) -> Query:
    prepared = _prepared(template, values, enforce)
    if isinstance(prepared, str):
        raise PromQLError(prepared)  # a fresh exception each time: a cached one would grow its traceback
    return prepared


@lru_cache(maxsize=4096)
def _prepared(template: str, values: tuple[tuple[str, str], ...], enforce: str | None) -> Query | str:
    """Cached, failures (as their message) included: a bad query is parsed once, not at every evaluation."""
    try:
        query = parse(render(template, dict(values)))
        return query if enforce is None else enforce_namespace(query, enforce)
    except ValueError as error:
        return str(error)


def check_query(template: str) -> None:
    """Raise ValueError unless `template` renders (with sample values) to one parsable expression.

    Usable where a template is validated before any deployment exists, e.g. at admission.
    """
    parse(render(template, dict.fromkeys(placeholders(template), "x")))


def selectors(tree: pp.Expr) -> list[pp.VectorSelector]:
    """Every vector selector of the tree, those inside matrix selectors and subqueries included."""
    found: list[pp.VectorSelector] = []

    def visit(node: pp.Expr) -> None:
        if isinstance(node, pp.VectorSelector):
            found.append(node)
        elif isinstance(node, pp.MatrixSelector):
            found.append(node.vector_selector)
        for child in _children(node):
            visit(child)

    visit(tree)
    return found


def type_of(tree: pp.Expr) -> QueryType:
    """The value type of an expression, from its syntax tree (PromQL's static typing)."""
    if isinstance(tree, pp.NumberLiteral):
        return QueryType.SCALAR
    if isinstance(tree, pp.StringLiteral):
        return QueryType.STRING
    if isinstance(tree, pp.MatrixSelector | pp.SubqueryExpr):
        return QueryType.MATRIX
    if isinstance(tree, pp.ParenExpr | pp.UnaryExpr):
        return type_of(tree.expr)
    if isinstance(tree, pp.Call):
        return _VALUE_TYPES[str(tree.func.return_type)]
    if isinstance(tree, pp.BinaryExpr):
        scalar = type_of(tree.lhs) is QueryType.SCALAR and type_of(tree.rhs) is QueryType.SCALAR
        return QueryType.SCALAR if scalar else QueryType.VECTOR
    return QueryType.VECTOR  # vector selectors and aggregations


def label_parts(parts: Sequence[Query], label: str) -> str:
    """One query answering all `parts` (instant vectors), each part's series labelled `label`=its index:

        label_replace((<p0>), "<label>", "0", "", "") or label_replace((<p1>), "<label>", "1", "", "")

    Built from the parts' canonical texts and verified by parsing it back: the answer is refused
    unless it is exactly that chain, each part's tree unchanged.
    """
    if not _IDENTIFIER.fullmatch(label):
        raise PromQLError(f"{label!r} is not a label name")
    if not parts or any(part.type is not QueryType.VECTOR for part in parts):
        raise PromQLError("only instant-vector queries can be labelled and combined")
    text = " or ".join(
        f'label_replace(({part.text}), "{label}", "{index}", "", "")' for index, part in enumerate(parts)
    )
    tree = _parse_tree(text)
    calls: list[pp.Expr] = []
    while isinstance(tree, pp.BinaryExpr) and str(tree.op) == "or" and len(calls) < len(parts) - 1:
        calls.append(tree.rhs)
        tree = tree.lhs
    calls.append(tree)
    calls.reverse()
    for index, (call, part) in enumerate(zip(calls, parts, strict=True)):
        if not (
            isinstance(call, pp.Call)
            and call.func.name == "label_replace"
            and isinstance(call.args[0], pp.ParenExpr)
            and _shape(call.args[0].expr) == _shape(part.tree)
            and [_string(arg) for arg in call.args[1:]] == [label, str(index), "", ""]
        ):
            raise PromQLError(f"part {index} did not stay whole in the combined query")  # cannot happen
    return text


def print_expr(tree: pp.Expr) -> str:
    """The canonical text of a syntax tree (strings escaped, no comments, minimal spacing)."""
    return _Printer(None).expr(tree)


# Functions Prometheus 2.x still has that the parser (which follows Prometheus 3) dropped.
with contextlib.suppress(ValueError):
    pp.register_extra_functions(
        [
            pp.Function(
                "holt_winters",
                [pp.ValueType.Matrix, pp.ValueType.Scalar, pp.ValueType.Scalar],
                pp.ValueType.Vector,
            )
        ]
    )

_IDENTIFIER = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_VALUE_SAFE = re.compile(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?")
_AGGREGATIONS = frozenset(
    {"sum", "avg", "count", "min", "max", "group", "stddev", "stdvar", "topk", "bottomk"}
    | {"count_values", "quantile", "limitk", "limit_ratio"}
)
_SET_OPERATORS = frozenset({"and", "or", "unless"})
_BINARY_OPERATORS = frozenset({"+", "-", "*", "/", "%", "^", "==", "!=", ">", "<", ">=", "<=", "atan2"}) | (
    _SET_OPERATORS
)
# Words that cannot stand as a bare metric name.
_KEYWORDS = (
    _AGGREGATIONS
    | _SET_OPERATORS
    | {"atan2", "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset"}
    | {"start", "end", "inf", "nan"}
)
_VALUE_TYPES = {
    "ValueType.Vector": QueryType.VECTOR,
    "ValueType.Scalar": QueryType.SCALAR,
    "ValueType.Matrix": QueryType.MATRIX,
    "ValueType.String": QueryType.STRING,
}
# Functions that read series no selector of the query names (info() reads target_info by itself).
_IMPLICIT_READS = frozenset({"info"})
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NEGATIVE_TIME = re.compile(r"SystemTime\s*\{\s*tv_sec:\s*-")
_MILLISECOND = timedelta(milliseconds=1)


def _parse_tree(text: str) -> pp.Expr:
    try:
        return pp.parse(text)
    except ValueError as error:
        raise PromQLError(f"not a PromQL expression: {_first_line(error)}") from None
    except BaseException as error:  # a Rust panic surfaces as pyo3's PanicException (a BaseException)
        if type(error).__name__ != "PanicException":
            raise
        raise PromQLError("the PromQL parser failed on this query") from None


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0][:200] if text else type(error).__name__


def _shape(tree: pp.Expr) -> str:
    """The full syntax tree as text (the parser's debug form), to compare two trees exactly."""
    return repr(tree)


def _children(node: pp.Expr) -> list[pp.Expr]:
    if isinstance(node, pp.ParenExpr | pp.UnaryExpr | pp.SubqueryExpr):
        return [node.expr]
    if isinstance(node, pp.BinaryExpr):
        return [node.lhs, node.rhs]
    if isinstance(node, pp.AggregateExpr):
        return [node.expr] if node.param is None else [node.param, node.expr]
    if isinstance(node, pp.Call):
        return list(node.args)
    return []


def _is_namespace(matcher: pp.Matcher, namespace: str) -> bool:
    return matcher.name == NAMESPACE_LABEL and matcher.op == pp.MatchOp.Equal and matcher.value == namespace


def _string(node: pp.Expr) -> str | None:
    return node.val if isinstance(node, pp.StringLiteral) else None


class _Printer:
    """Prints a syntax tree as PromQL; with a namespace, every selector is restricted to it."""

    def __init__(self, namespace: str | None) -> None:
        self.namespace = namespace

    def expr(self, node: pp.Expr) -> str:
        try:
            return self._expr(node)
        except BaseException as error:  # a Rust panic reading a field (e.g. a negative @ time)
            if type(error).__name__ != "PanicException":
                raise
            raise PromQLError("the query has a value the parser cannot represent") from None

    def _expr(self, node: pp.Expr) -> str:
        if isinstance(node, pp.ParenExpr):
            return f"({self._expr(node.expr)})"
        if isinstance(node, pp.UnaryExpr):
            return f"-{self._expr(node.expr)}"
        if isinstance(node, pp.NumberLiteral):
            return _number(node.val)
        if isinstance(node, pp.StringLiteral):
            return f'"{escape(node.val)}"'
        if isinstance(node, pp.VectorSelector):
            return self._selector(node) + _modifiers(node.at, node.offset)
        if isinstance(node, pp.MatrixSelector):
            selector = node.vector_selector
            return f"{self._selector(selector)}[{_duration(node.range)}]" + _modifiers(
                selector.at, selector.offset
            )
        if isinstance(node, pp.SubqueryExpr):
            step = _duration(node.step) if node.step is not None else ""
            if node.range is None:
                raise PromQLError("a subquery without a range")
            return f"{self._expr(node.expr)}[{_duration(node.range)}:{step}]" + _modifiers(
                node.at, node.offset
            )
        if isinstance(node, pp.Call):
            return self._call(node)
        if isinstance(node, pp.AggregateExpr):
            return self._aggregate(node)
        if isinstance(node, pp.BinaryExpr):
            return self._binary(node)
        raise PromQLError(f"unsupported PromQL node {type(node).__name__}")

    def _selector(self, node: pp.VectorSelector) -> str:
        if node.matchers.or_matchers:
            raise PromQLError("`or` between label matchers is not PromQL that Prometheus reads")
        matchers = [(m.name, _MATCH_OPERATORS[str(m.op)], m.value) for m in node.matchers.matchers]
        if self.namespace is not None:
            matchers = self._restrict(node, matchers)
        name = node.name
        if name is not None and (not _METRIC_NAME.fullmatch(name) or name.lower() in _KEYWORDS):
            raise PromQLError(f"the metric name {name[:60]!r} needs {{__name__=...}} form")
        for label, _, _ in matchers:
            if not _IDENTIFIER.fullmatch(label):
                raise PromQLError(f"the label name {label[:60]!r} is not supported (letters, digits, _)")
        body = ",".join(f'{label}{op}"{escape(value)}"' for label, op, value in matchers)
        return f"{name or ''}{{{body}}}"

    def _restrict(
        self, node: pp.VectorSelector, matchers: list[tuple[str, str, str]]
    ) -> list[tuple[str, str, str]]:
        namespace = self.namespace
        assert namespace is not None
        for label, op, value in matchers:
            if label == NAMESPACE_LABEL and (op, value) != ("=", namespace):
                shown = f'{label}{op}"{escape(value)[:60]}"'
                raise PromQLError(
                    f"the selector matcher {shown} is not allowed: this Prometheus source restricts every "
                    f'selector to namespace="{namespace}"'
                )
        if ("namespace", "=", namespace) in matchers:
            return matchers
        return [*matchers, (NAMESPACE_LABEL, "=", namespace)]

    def _call(self, node: pp.Call) -> str:
        name = node.func.name
        if not _IDENTIFIER.fullmatch(name):
            raise PromQLError(f"unsupported function name {name[:60]!r}")
        if self.namespace is not None and name in _IMPLICIT_READS:
            raise PromQLError(f"{name}() reads series no selector names: not allowed on this source")
        return f"{name}({', '.join(self._expr(arg) for arg in node.args)})"

    def _aggregate(self, node: pp.AggregateExpr) -> str:
        op = str(node.op)
        if op not in _AGGREGATIONS:
            raise PromQLError(f"unsupported aggregation {op[:60]!r}")
        grouping = self._grouping(node.modifier)
        arguments = [self._expr(node.expr)]
        if node.param is not None:
            arguments.insert(0, self._expr(node.param))
        return f"{op}{grouping} ({', '.join(arguments)})"

    def _grouping(self, modifier: pp.AggModifier | None) -> str:
        """An aggregation's `by (...)` / `without (...)`, as written (a subclass may widen it)."""
        if modifier is None:
            return ""
        keyword = "without" if modifier.type == pp.AggModifierType.Without else "by"
        return f" {keyword} ({_labels(modifier.labels)})"

    def _on_labels(self, labels: Sequence[str]) -> Sequence[str]:
        """The labels of a binary operation's `on (...)`, as written (a subclass may widen them)."""
        return labels

    def _binary(self, node: pp.BinaryExpr) -> str:
        op = str(node.op)
        if op not in _BINARY_OPERATORS:
            raise PromQLError(f"unsupported binary operator {op[:60]!r}")
        modifier = node.modifier
        words = ""
        if modifier is not None:
            fill = modifier.fill_values
            if fill.lhs is not None or fill.rhs is not None:
                raise PromQLError("fill() modifiers are not supported")
            if modifier.return_bool:
                words += " bool"
            if modifier.matching is not None:
                if modifier.matching.type == pp.LabelModifierType.Include:
                    words += f" on ({_labels(self._on_labels(modifier.matching.labels))})"
                else:
                    words += f" ignoring ({_labels(modifier.matching.labels)})"
            card = str(modifier.card)
            if op not in _SET_OPERATORS and card in _GROUPING:
                words += f" {_GROUPING[card]} ({_labels(modifier.group_labels or [])})"
        return f"{self._expr(node.lhs)} {op}{words} {self._expr(node.rhs)}"


_MATCH_OPERATORS = {
    "MatchOp.Equal": "=",
    "MatchOp.NotEqual": "!=",
    "MatchOp.Re": "=~",
    "MatchOp.NotRe": "!~",
}
_GROUPING = {
    "VectorMatchCardinality.ManyToOne": "group_left",
    "VectorMatchCardinality.OneToMany": "group_right",
}


def _labels(labels: Sequence[str]) -> str:
    for label in labels:
        if not _IDENTIFIER.fullmatch(label):
            raise PromQLError(f"the label name {label[:60]!r} is not supported (letters, digits, _)")
    return ", ".join(labels)


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Inf" if value > 0 else "-Inf"
    return repr(float(value))


def _duration(value: timedelta) -> str:
    if value < timedelta(0):
        return "-" + pp.display_duration(-value)
    return pp.display_duration(value)


def _modifiers(at: pp.AtModifier | None, offset: timedelta | None) -> str:
    text = ""
    if at is not None:
        kind = str(at.type)
        if kind == "AtModifierType.Start":
            text += " @ start()"
        elif kind == "AtModifierType.End":
            text += " @ end()"
        elif at.at is not None:
            milliseconds = (at.at - _EPOCH) // _MILLISECOND
            text += f" @ {milliseconds // 1000}.{milliseconds % 1000:03d}"
        else:
            raise PromQLError("an @ modifier without a time")
    if offset is not None:
        text += f" offset {_duration(offset)}"
    return text


def _raw_string_with_backslash(text: str) -> bool:
    """Whether a raw `...` string (outside comments and quoted strings) holds a backslash."""
    position = 0
    while position < len(text):
        character = text[position]
        if character == "#":
            end = text.find("\n", position)
            position = len(text) if end < 0 else end
        elif character in _QUOTES:
            position += 1
            while position < len(text) and text[position] not in (character, "\n"):
                position += 2 if text[position] == "\\" else 1
            position += 1
        elif character == "`":
            end = text.find("`", position + 1)
            end = len(text) if end < 0 else end
            if "\\" in text[position + 1 : end]:
                return True
            position = end + 1
        else:
            position += 1
    return False
