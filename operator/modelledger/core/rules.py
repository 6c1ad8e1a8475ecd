"""Rollback-rule evaluation: one sample in, the rule's next state out. Pure; the caller supplies `now`.

The semantics (documented for users in docs/rules.md):

* A sample is a finite number, `NoData` or a `QueryError`. NaN and ±Inf are no data: they are dropped
  from a vector before it is reduced, and a scalar or a vector that was all NaN/±Inf is `NoData`.
* A number breaches when `value <comparator> threshold` holds. A breach starts a timer; the rule is
  `Pending` until it has breached continuously for `for`, then `Breached`. Pending and Breached share
  one `since`: when the breach began (a Breached rule became Breached at `since + for`, or on the first
  later sample). A `for` of at most `IMMEDIATE_FOR` breaches on the first breaching sample.
* `NoData` / `QueryError` count as what `onNoData` / `onError` say: `Breach` (a breach without a value),
  `Pass` (a pass without a value) or `Hold`. Hold means "no evidence either way": the sample can
  neither start nor end a breach, nor extend a passing streak. So a Pending or Breached rule keeps its
  state and breach start (the timer neither resets nor advances to Breached on that sample), while any
  other rule shows `NoData` / `Error`, which stops stable marking until the rule passes again.
* `since` of Pass, NoData and Error is when the rule entered that state.
* A rule that cannot be evaluated at all (bad template or query, unknown or refused Prometheus) is
  `Error` whatever `onError` says (`invalid`): it neither starts, holds nor ends a breach.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from modelledger.api.modeldeployment import (
    PROMQL_LENGTH,
    Aggregate,
    Comparator,
    Evidence,
    Outcome,
    RollbackRule,
    RuleState,
    RuleStatus,
)
from modelledger.api.modelversion import ModelVersion
from modelledger.core.workload import SCRAPE_VERSION, scrape_labels

IMMEDIATE_FOR = timedelta(seconds=1)
"""A `for` this short cannot span two evaluations, so it breaches on the first breaching sample."""

ALWAYS = datetime.min.replace(tzinfo=UTC)
"""What `passing_since` answers for no rules at all: nothing has ever failed."""

MESSAGE_LIMIT = 1024
"""Query errors are cut to this many characters in a rule's status message."""

EVIDENCE_QUERY_LIMIT = PROMQL_LENGTH * 2
"""The API's bound on an evidence query; a longer resolved query is cut rather than fail the status write."""

_BREACH_STATES = frozenset({RuleState.PENDING, RuleState.BREACHED})


def template_values(
    namespace: str, deployment: str, model: str, version_name: str, version: ModelVersion | None
) -> dict[str, str]:
    """What each query placeholder stands for (`promql.PLACEHOLDERS`), for the revision serving.

    `version` is the semantic version exactly as the serving pods' `version` label carries it
    (`workload.scrape_labels`), `versionName` the ModelVersion's name. Without the ModelVersion the
    semantic version is unknown: `{{version}}` is left without a value, so a rule using it is Error
    (named), never run against a wrong version.
    """
    values = {"namespace": namespace, "deployment": deployment, "model": model, "versionName": version_name}
    if version is not None:
        values["version"] = scrape_labels(deployment, version)[SCRAPE_VERSION]
    return values


@dataclass(frozen=True)
class NoData:
    """The query returned nothing usable: an empty vector, or only NaN/±Inf."""

    reason: str = "the query returned no data"


@dataclass(frozen=True)
class QueryError:
    """The query failed: Prometheus unreachable, timed out, refused the query, or answered nonsense."""

    message: str


Sample = float | NoData | QueryError
"""One evaluation of a rule's query: a number (non-finite numbers count as NoData), NoData or an error."""


def reduce(values: Sequence[float], aggregate: Aggregate) -> float | None:
    """One number from a vector's values; None (no data) when no value is finite.

    NaN and ±Inf are dropped first: a NaN is usually a 0/0 ratio on a quiet model and says nothing
    about its health. A sum or average that overflows is clamped to the largest float, which compares
    with any (finite) threshold as the true value would.
    """
    finite = [value for value in values if math.isfinite(value)]
    if not finite:
        return None
    if aggregate is Aggregate.MAX:
        return max(finite)
    if aggregate is Aggregate.MIN:
        return min(finite)
    total = sum(finite)
    if aggregate is Aggregate.AVG:
        # Dividing first cannot overflow; dividing last is more precise when the sum is finite.
        total = total / len(finite) if math.isfinite(total) else sum(value / len(finite) for value in finite)
    return max(-sys.float_info.max, min(sys.float_info.max, total))


def compare(value: float, comparator: Comparator, threshold: float) -> bool:
    """Whether `value <comparator> threshold` holds, i.e. the rule breaches (`==`/`!=` are exact)."""
    match comparator:
        case Comparator.GT:
            return value > threshold
        case Comparator.GE:
            return value >= threshold
        case Comparator.LT:
            return value < threshold
        case Comparator.LE:
            return value <= threshold
        case Comparator.EQ:
            return value == threshold
        case Comparator.NE:
            return value != threshold


def evaluate(rule: RollbackRule, previous: RuleStatus | None, sample: Sample, now: datetime) -> RuleStatus:
    """The rule's state after `sample`, taken at `now`, given its state after the previous sample.

    `previous` is ignored unless it belongs to the same rule name.
    """
    if previous is not None and previous.name != rule.name:
        previous = None
    if isinstance(sample, float | int) and math.isfinite(sample):
        value = float(sample)
        return _observe(rule, previous, compare(value, rule.comparator, rule.threshold), value, "", now)
    if isinstance(sample, QueryError):
        outcome, state = rule.on_error, RuleState.ERROR
        detail, setting = f"query failed: {_shorten(sample.message)}", "onError"
    else:
        outcome, state = rule.on_no_data, RuleState.NO_DATA
        reason = sample.reason if isinstance(sample, NoData) else f"the query returned {sample}"
        detail, setting = reason, "onNoData"
    if outcome is Outcome.BREACH:
        return _observe(rule, previous, True, None, f"{detail}; counted as a breach ({setting}: Breach)", now)
    if outcome is Outcome.PASS:
        return _observe(rule, previous, False, None, f"{detail}; counted as a pass ({setting}: Pass)", now)
    if previous is not None and previous.state in _BREACH_STATES:
        held = f"{detail}; still {previous.state.value} ({setting}: Hold)"
        return _status(rule, previous.state, None, previous.since, held)
    return _status(rule, state, None, _since(previous, state, now), f"{detail} ({setting}: Hold)")


def still_passing(rule: RollbackRule, previous: RuleStatus | None, sample: Sample) -> float | None:
    """The sample's value when `evaluate` would keep `previous` as it is (a Pass that still passes: only
    the value differs), else None. The steady state of a fleet is almost all this case, and it needs
    no new status."""
    if (
        previous is None
        or previous.state is not RuleState.PASS
        or previous.since is None
        or previous.name != rule.name
        or not isinstance(sample, float | int)
        or not math.isfinite(sample)
    ):
        return None
    value = float(sample)
    return None if compare(value, rule.comparator, rule.threshold) else value


def invalid(rule: RollbackRule, previous: RuleStatus | None, message: str, now: datetime) -> RuleStatus:
    """The rule cannot be evaluated at all (a bad template or query, an unknown or refused Prometheus):
    Error, whatever `onError` says (that setting is for failures of a valid query), so a broken rule
    never starts, holds or ends a breach. `since` is when it became invalid."""
    if previous is not None and previous.name != rule.name:
        previous = None
    return _status(rule, RuleState.ERROR, None, _since(previous, RuleState.ERROR, now), _shorten(message))


def _observe(
    rule: RollbackRule,
    previous: RuleStatus | None,
    breaching: bool,
    value: float | None,
    message: str,
    now: datetime,
) -> RuleStatus:
    if not breaching:
        return _status(rule, RuleState.PASS, value, _since(previous, RuleState.PASS, now), message)
    began = previous.since if previous is not None and previous.state in _BREACH_STATES else None
    began = now if began is None else began
    breached = rule.for_ <= IMMEDIATE_FOR or now - began >= rule.for_
    return _status(rule, RuleState.BREACHED if breached else RuleState.PENDING, value, began, message)


def _since(previous: RuleStatus | None, state: RuleState, now: datetime) -> datetime:
    if previous is not None and previous.state is state and previous.since is not None:
        return previous.since
    return now


def _status(
    rule: RollbackRule, state: RuleState, value: float | None, since: datetime | None, message: str
) -> RuleStatus:
    # Built from checked values at every evaluation of every rule: construct without validating again.
    return RuleStatus.model_construct(name=rule.name, state=state, value=value, since=since, message=message)


def _shorten(text: str, limit: int = MESSAGE_LIMIT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True)
class Breach:
    """A Breached rule and the evidence a rollback records."""

    rule: str
    evidence: Evidence
    began: datetime | None
    """When the breach began (the rule's `since`)."""


@dataclass(frozen=True)
class RulesVerdict:
    """What the rules say together, in the order of `spec.rollback.rules`."""

    breaches: tuple[Breach, ...]
    """Every Breached rule; the first is the one a rollback names."""
    healthy: bool
    """Every rule Pass (true when there are no rules): the RulesHealthy condition."""
    not_passing: tuple[str, ...]
    """Rules not Pass (Pending, Breached, NoData, Error, or not evaluated yet)."""
    passing_since: datetime | None
    """Since when every rule has been Pass continuously; None unless all are Pass now."""

    @property
    def breach(self) -> Breach | None:
        return self.breaches[0] if self.breaches else None


def verdict(
    rules: Sequence[RollbackRule], statuses: Sequence[RuleStatus], queries: Mapping[str, str]
) -> RulesVerdict:
    """Summarise the statuses of `rules`; `queries` maps a rule name to its query as run (for evidence).

    Statuses of rules no longer in the spec are ignored; a rule without a status is not passing.
    """
    by_name = {status.name: status for status in statuses}
    current = [by_name[rule.name] for rule in rules if rule.name in by_name]
    breaches = tuple(
        Breach(
            rule=rule.name,
            evidence=Evidence(
                query=_shorten(queries.get(rule.name, rule.query), EVIDENCE_QUERY_LIMIT),
                value=by_name[rule.name].value,
                threshold=rule.threshold,
                comparator=rule.comparator,
            ),
            began=by_name[rule.name].since,
        )
        for rule in rules
        if rule.name in by_name and by_name[rule.name].state is RuleState.BREACHED
    )
    not_passing = tuple(
        rule.name
        for rule in rules
        if rule.name not in by_name or by_name[rule.name].state is not RuleState.PASS
    )
    return RulesVerdict(
        breaches=breaches,
        healthy=not not_passing,
        not_passing=not_passing,
        passing_since=None if not_passing else passing_since(current),
    )


def passing_since(statuses: Sequence[RuleStatus]) -> datetime | None:
    """Since when every rule has been Pass without a break: the latest `since`; None if any is not Pass.

    With no rules at all, `ALWAYS`. Stable marking asks `passing_since(...) <= now - bakeTime`.
    """
    if any(status.state is not RuleState.PASS or status.since is None for status in statuses):
        return None
    return max((status.since for status in statuses if status.since is not None), default=ALWAYS)


def breach_onset(rule: RollbackRule, points: Sequence[tuple[datetime, float]]) -> datetime | None:
    """When the breach that reaches the newest point began, from the query's recent values.

    `points` are the rule's aggregated values over a lookback window (as a Prometheus range query gives
    them). The answer is the first point of the unbroken run of breaching values ending at the newest
    point; None when the newest point does not breach. A missing or non-finite value breaks the run.
    """
    onset: datetime | None = None
    for at, value in sorted(points):
        breaching = math.isfinite(value) and compare(value, rule.comparator, rule.threshold)
        onset = (onset or at) if breaching else None
    return onset


def backdate(rule: RollbackRule, status: RuleStatus, onset: datetime, now: datetime) -> RuleStatus:
    """A breach first seen by this evaluation began at `onset` in Prometheus's data, not at `now`.

    `for` then counts from when the breach really began, so a breach that has already held for `for`
    between two evaluations is Breached at once instead of one `for` later.
    """
    if status.state is not RuleState.PENDING or status.since is None or onset >= status.since:
        return status
    breached = rule.for_ <= IMMEDIATE_FOR or now - onset >= rule.for_
    return status.model_copy(
        update={"since": onset, "state": RuleState.BREACHED if breached else RuleState.PENDING}
    )
