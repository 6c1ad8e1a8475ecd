"""Fleet queries: one PromQL query for every deployment that shares a rule's query template. Pure.

A template is *fleet-safe* when the query of one deployment is exactly the fleet query's series that
carry that deployment's `namespace` and `deployment` labels. That is proven on the parsed expression
(promql-parser, as in `core.promql`), never by looking at the text:

- every vector selector names `namespace="{{namespace}}"` and `deployment="{{deployment}}"`, and, if
  the template uses them, `model="{{model}}"` and `version="{{version}}"` (the scrape contract's
  labels); no other placeholder. So the selectors of two deployments differ only in those labels, and
  every series a selector reads carries them;
- every function keeps the labels of the series it is given (rate, histogram_quantile, clamp, ...);
- every aggregation keeps those labels: none of them in a `without`, and a `by` (or no grouping) gets
  them added, so `max(x{...})` becomes `max by (namespace, deployment) (x{...})`;
- every binary operation between vectors matches them: an `on (...)` gets them added, an
  `ignoring (...)` may not name them, and `group_left` / `group_right` are not fleet-safe.

The fleet query restricts each selector to the group's namespaces and, for a group small enough,
deployments (`=~` with each name escaped); it is built by printing the syntax tree, and parsed back.
Anything else is evaluated per deployment, as before.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import promql_parser as pp

from modelledger.core import promql
from modelledger.core.promql import PromQLError, QueryType

NAMESPACE, DEPLOYMENT = "namespace", "deployment"
KEYS = (NAMESPACE, DEPLOYMENT, "model", "version")
"""The labels a fleet template may key on, in the order of a member's key; the first two always."""
_SENTINEL = {label: f"modelledger-fleet-{label}" for label in KEYS}
MAX_LISTED_DEPLOYMENTS = 64
"""Above this many deployments a fleet query names only their namespaces (and `deployment!=""`);
the answer is filtered to the group's deployments when it is split."""

# Functions that keep every label of each series (some drop __name__, which no rule reads).
LABEL_KEEPING = frozenset(
    {"rate", "irate", "increase", "delta", "idelta", "deriv", "predict_linear", "resets", "changes"}
    | {f"{kind}_over_time" for kind in ("avg", "min", "max", "sum", "count", "stddev", "stdvar")}
    | {"quantile_over_time", "last_over_time", "present_over_time", "mad_over_time"}
    | {"abs", "ceil", "floor", "round", "exp", "ln", "log2", "log10", "sqrt", "sgn"}
    | {"clamp", "clamp_min", "clamp_max", "histogram_quantile", "histogram_fraction"}
    | {"histogram_count", "histogram_sum", "histogram_avg", "histogram_stddev", "histogram_stdvar"}
    | {"timestamp", "holt_winters", "double_exponential_smoothing"}
)


@dataclass(frozen=True)
class FleetTemplate:
    """A fleet-safe template, parsed with stand-ins for the two placeholders."""

    template: str
    tree: pp.Expr
    labels: tuple[str, ...]
    """The labels it keys on (`KEYS` order): a member's key is its values for them."""

    def key(self, values: Mapping[str, str]) -> tuple[str, ...]:
        """A member's key, from its placeholder values."""
        return tuple([values[label] for label in self.labels])

    def query(self, members: Iterable[tuple[str, ...]]) -> str:
        """The one query for these members' keys (past MAX_LISTED_DEPLOYMENTS deployments are not listed)."""
        members_list = list(members)
        columns = {label: sorted({key[i] for key in members_list}) for i, label in enumerate(self.labels)}
        if not columns[NAMESPACE]:
            raise PromQLError("a fleet query needs at least one member")
        if len(columns[DEPLOYMENT]) > MAX_LISTED_DEPLOYMENTS:
            columns[DEPLOYMENT] = []
        return _printed(self.template, tuple((label, tuple(columns[label])) for label in self.labels))


@lru_cache(maxsize=1024)
def _printed(template: str, columns: tuple[tuple[str, tuple[str, ...]], ...]) -> str:
    """The fleet query of a template for these label values: the same group asks the same query at
    every tick, so it is printed and read back once."""
    shape = _fleet_template(template)
    assert isinstance(shape, FleetTemplate), "only fleet-safe templates are printed"
    text = _FleetPrinter(shape.labels, {label: list(values) for label, values in columns}).expr(shape.tree)
    parsed = promql.parse(text)  # printed from the tree, and it must read back as one expression
    if parsed.text != text:
        raise PromQLError("the fleet query cannot be printed back as it was built")  # a printer gap
    return text


def fleet_template(template: str) -> FleetTemplate | str:
    """The template as a FleetTemplate, or why it is evaluated per deployment."""
    return _fleet_template(template)


@lru_cache(maxsize=4096)
def _fleet_template(template: str) -> FleetTemplate | str:
    try:
        used = promql.placeholders(template)
    except ValueError as error:
        return str(error)
    if not {NAMESPACE, DEPLOYMENT} <= used or not used <= set(KEYS):
        return (
            "a fleet query needs {{namespace}} and {{deployment}}, and no placeholder but {{model}} and "
            "{{version}}"
        )
    labels = tuple(label for label in KEYS if label in used)
    try:
        query = promql.prepare(template, {label: _SENTINEL[label] for label in labels})
    except ValueError as error:
        return str(error)
    if query.type is not QueryType.VECTOR:
        return "a fleet query must be an instant vector"
    problem = _why_not(query.tree, labels)
    if problem is not None:
        return problem
    return FleetTemplate(template, query.tree, labels)


def _why_not(node: pp.Expr, labels: tuple[str, ...]) -> str | None:
    if isinstance(node, pp.VectorSelector | pp.MatrixSelector):
        selector = node if isinstance(node, pp.VectorSelector) else node.vector_selector
        return _selector_problem(selector, labels)
    if isinstance(node, pp.NumberLiteral | pp.StringLiteral):
        return _STRING_PROBLEM if isinstance(node, pp.StringLiteral) and _mentions(node.val) else None
    if isinstance(node, pp.ParenExpr | pp.UnaryExpr | pp.SubqueryExpr):
        return _why_not(node.expr, labels)
    if isinstance(node, pp.Call):
        if node.func.name not in LABEL_KEEPING:
            return f"{node.func.name}() does not keep each series' labels"
        return _first(_why_not(arg, labels) for arg in node.args)
    if isinstance(node, pp.AggregateExpr):
        grouping = node.modifier
        without = grouping is not None and grouping.type == pp.AggModifierType.Without
        if without and grouping is not None and set(grouping.labels) & set(labels):
            return f"an aggregation drops one of {', '.join(labels)}"
        if str(node.op) in {"count_values", "limitk", "limit_ratio"}:
            return f"{node.op} is not fleet-safe"
        param = _why_not(node.param, labels) if node.param is not None else None
        return param or _why_not(node.expr, labels)
    if isinstance(node, pp.BinaryExpr):
        modifier = node.modifier
        vectors = promql.type_of(node.lhs) is not QueryType.SCALAR and promql.type_of(node.rhs) is not (
            QueryType.SCALAR
        )
        if vectors and modifier is not None:
            if str(modifier.card) in {"VectorMatchCardinality.ManyToOne", "VectorMatchCardinality.OneToMany"}:
                return "group_left / group_right are not fleet-safe"
            matching = modifier.matching
            ignoring = matching is not None and matching.type == pp.LabelModifierType.Exclude
            if ignoring and matching is not None and set(matching.labels) & set(labels):
                return f"a binary operation ignores one of {', '.join(labels)}"
        return _why_not(node.lhs, labels) or _why_not(node.rhs, labels)
    return f"{type(node).__name__} is not fleet-safe"


_STRING_PROBLEM = "a string holds a placeholder's value"
_EQUAL = "MatchOp.Equal"


def _mentions(text: str) -> bool:
    return any(sentinel in text for sentinel in _SENTINEL.values())


def _selector_problem(selector: pp.VectorSelector, labels: tuple[str, ...]) -> str | None:
    matchers = [(m.name, str(m.op), m.value) for m in selector.matchers.matchers]
    keyed = [(label, _EQUAL, _SENTINEL[label]) for label in labels]
    if not all(matcher in matchers for matcher in keyed):
        wanted = ", ".join(f'{label}="{{{{{label}}}}}"' for label in labels)
        return f"every selector needs {wanted}"
    for matcher in matchers:
        if matcher in keyed:
            continue
        name, _op, value = matcher
        if name in KEYS or _mentions(value):
            return f"{name} is matched more than once, or a placeholder is used with another label"
    return None


def _first(problems: Iterable[str | None]) -> str | None:
    return next((p for p in problems if p is not None), None)


def _regex(values: Sequence[str]) -> str:
    return "|".join(re.escape(value) for value in values)


class _FleetPrinter(promql._Printer):
    """Prints a fleet-safe tree for a group: selectors widened to the group, its labels kept."""

    def __init__(self, labels: tuple[str, ...], columns: Mapping[str, Sequence[str]]) -> None:
        super().__init__(None)
        self.labels = labels
        self.columns = columns

    def _selector(self, node: pp.VectorSelector) -> str:
        kept = [
            m for m in node.matchers.matchers if not (m.name in self.labels and m.value == _SENTINEL[m.name])
        ]
        body = [f'{m.name}{promql._MATCH_OPERATORS[str(m.op)]}"{promql.escape(m.value)}"' for m in kept]
        for label in self.labels:
            values = self.columns[label]
            body.append(_matcher(label, values) if values else f'{label}!=""')
        name = node.name or ""
        if name and not promql._METRIC_NAME.fullmatch(name):
            raise PromQLError(f"the metric name {name[:60]!r} needs {{__name__=...}} form")
        return f"{name}{{{','.join(body)}}}"

    def _grouping(self, modifier: pp.AggModifier | None) -> str:
        if modifier is not None and modifier.type == pp.AggModifierType.Without:
            return super()._grouping(modifier)  # fleet-safe: it names none of the keys
        return f" by ({promql._labels(self._on_labels(modifier.labels if modifier is not None else []))})"

    def _on_labels(self, labels: Sequence[str]) -> Sequence[str]:
        return [*labels, *(key for key in self.labels if key not in labels)]


def _matcher(label: str, values: Sequence[str]) -> str:
    if len(values) == 1:
        return f'{label}="{promql.escape(values[0])}"'
    return f'{label}=~"{promql.escape(_regex(values))}"'


def split(
    result: Any, labels: tuple[str, ...], wanted: Iterable[tuple[str, ...]]
) -> dict[tuple[str, ...], list[dict[str, Any]]]:
    """The fleet answer's series per member key wanted; a member with no series gets []."""
    found: dict[tuple[str, ...], list[dict[str, Any]]] = {key: [] for key in wanted}
    for series in result if isinstance(result, list) else []:
        metric: Mapping[str, str] = series.get("metric", {})
        key = tuple([metric.get(label, "") for label in labels])  # a list: faster than a generator here
        if key in found:
            found[key].append(series)
    return found
