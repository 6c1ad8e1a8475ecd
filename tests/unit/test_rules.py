"""Rule evaluation: reduction, comparison, the Pass/Pending/Breached/NoData/Error machine, the verdict."""

from __future__ import annotations

import math
import operator
import statistics
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelledger.api.modeldeployment import Aggregate, Comparator, RollbackRule, RuleState, RuleStatus
from modelledger.core import rules
from modelledger.core.rules import (
    ALWAYS,
    MESSAGE_LIMIT,
    NoData,
    QueryError,
    Sample,
    compare,
    evaluate,
    passing_since,
    reduce,
    still_passing,
    verdict,
)

T0 = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
FINITE = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e12, max_value=1e12)
NON_FINITE = st.sampled_from([math.nan, math.inf, -math.inf])


def make_rule(**overrides: Any) -> RollbackRule:
    wire = {"name": "error-rate", "query": "up", "comparator": ">", "threshold": 0.5, "for": "1m"}
    return RollbackRule.model_validate(wire | overrides)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def run(rule: RollbackRule, samples: list[tuple[float, Sample]]) -> list[RuleStatus]:
    statuses: list[RuleStatus] = []
    previous: RuleStatus | None = None
    for seconds, sample in samples:
        previous = evaluate(rule, previous, sample, at(seconds))
        statuses.append(previous)
    return statuses


# --- reduce and compare ------------------------------------------------------------------------------

REFERENCE: dict[Aggregate, Callable[[list[float]], float]] = {
    Aggregate.MAX: max,
    Aggregate.MIN: min,
    Aggregate.SUM: math.fsum,
    Aggregate.AVG: statistics.fmean,
}


@given(st.lists(FINITE, min_size=1), st.lists(NON_FINITE), st.sampled_from(list(Aggregate)), st.randoms())
def test_reduce_drops_nan_and_inf_then_aggregates(
    finite: list[float], non_finite: list[float], aggregate: Aggregate, random: Any
) -> None:
    values = finite + non_finite
    random.shuffle(values)
    result = reduce(values, aggregate)
    assert result is not None
    assert result == pytest.approx(REFERENCE[aggregate](finite), rel=1e-9, abs=1e-3)


@given(st.lists(NON_FINITE), st.sampled_from(list(Aggregate)))
def test_a_vector_without_finite_values_is_no_data(values: list[float], aggregate: Aggregate) -> None:
    assert reduce(values, aggregate) is None


@pytest.mark.parametrize("aggregate", [Aggregate.SUM, Aggregate.AVG])
def test_an_overflowing_reduction_is_clamped_to_the_largest_float(aggregate: Aggregate) -> None:
    assert reduce([sys.float_info.max, sys.float_info.max], aggregate) == sys.float_info.max
    assert reduce([-sys.float_info.max, -sys.float_info.max], Aggregate.SUM) == -sys.float_info.max


OPERATORS = {
    Comparator.GT: operator.gt,
    Comparator.GE: operator.ge,
    Comparator.LT: operator.lt,
    Comparator.LE: operator.le,
    Comparator.EQ: operator.eq,
    Comparator.NE: operator.ne,
}


@given(FINITE, st.sampled_from(list(Comparator)), FINITE)
def test_compare_matches_the_comparator(value: float, comparator: Comparator, threshold: float) -> None:
    assert compare(value, comparator, threshold) is OPERATORS[comparator](value, threshold)


@pytest.mark.parametrize(
    ("comparator", "breaching"),
    [
        (">", [False, False, True]),
        (">=", [False, True, True]),
        ("<", [True, False, False]),
        ("<=", [True, True, False]),
        ("==", [False, True, False]),
        ("!=", [True, False, True]),
    ],
)
def test_compare_at_below_and_above_the_threshold(comparator: str, breaching: list[bool]) -> None:
    assert [compare(value, Comparator(comparator), 1.0) for value in (0.5, 1.0, 1.5)] == breaching


# --- the state machine -------------------------------------------------------------------------------


def test_a_passing_rule_is_pass_since_its_first_passing_sample() -> None:
    statuses = run(make_rule(), [(0, 0.1), (15, 0.2)])
    assert [(s.state, s.value, s.since) for s in statuses] == [
        (RuleState.PASS, 0.1, at(0)),
        (RuleState.PASS, 0.2, at(0)),
    ]


def test_a_breach_is_pending_until_it_has_held_for_then_breached_since_it_began() -> None:
    statuses = run(make_rule(), [(0, 0.1), (15, 0.9), (30, 0.8), (74, 0.7), (75, 0.6), (90, 0.7)])
    assert [(s.state, s.since) for s in statuses] == [
        (RuleState.PASS, at(0)),
        (RuleState.PENDING, at(15)),
        (RuleState.PENDING, at(15)),
        (RuleState.PENDING, at(15)),
        (RuleState.BREACHED, at(15)),
        (RuleState.BREACHED, at(15)),
    ]
    assert statuses[-2].value == 0.6


def test_a_passing_sample_ends_the_breach_and_the_next_breach_starts_over() -> None:
    statuses = run(make_rule(), [(0, 0.9), (50, 0.1), (60, 0.9), (110, 0.9), (120, 0.9)])
    assert [(s.state, s.since) for s in statuses] == [
        (RuleState.PENDING, at(0)),
        (RuleState.PASS, at(50)),
        (RuleState.PENDING, at(60)),
        (RuleState.PENDING, at(60)),
        (RuleState.BREACHED, at(60)),
    ]


@pytest.mark.parametrize("duration", ["1ms", "500ms", "1s"])
def test_a_for_of_a_second_or_less_breaches_at_once(duration: str) -> None:
    [status] = run(make_rule(**{"for": duration}), [(0, 0.9)])
    assert (status.state, status.since, status.value) == (RuleState.BREACHED, at(0), 0.9)


def test_a_for_just_over_a_second_waits_for_a_second_sample() -> None:
    statuses = run(make_rule(**{"for": "1001ms"}), [(0, 0.9), (1, 0.9), (1.001, 0.9)])
    assert [s.state for s in statuses] == [RuleState.PENDING, RuleState.PENDING, RuleState.BREACHED]


ANY_SAMPLE = st.one_of(FINITE, NON_FINITE, st.just(NoData("empty")), st.just(QueryError("down")))


@given(
    st.lists(ANY_SAMPLE, max_size=6),
    ANY_SAMPLE,
    st.sampled_from(list(Comparator)),
    FINITE,
)
def test_still_passing_is_exactly_the_case_where_evaluate_keeps_the_previous_state(
    history: list[Sample], sample: Sample, comparator: Comparator, threshold: float
) -> None:
    """The engine's fast path skips `evaluate` when `still_passing` gives a value: that must be
    precisely when `evaluate` would leave a Pass as it was (same state and since), and the value the
    one `evaluate` records."""
    rule = make_rule(comparator=comparator.value, threshold=threshold, onNoData="Pass")
    statuses = run(rule, [(i, one) for i, one in enumerate(history)])
    previous = statuses[-1] if statuses else None
    value = still_passing(rule, previous, sample)
    new = evaluate(rule, previous, sample, at(len(history)))
    kept = previous is not None and new.state is RuleState.PASS and previous.state is RuleState.PASS
    if value is not None:
        assert kept
        assert previous is not None
        assert (new.since, new.value) == (previous.since, value)
    elif kept:
        assert not isinstance(sample, float | int) or not math.isfinite(sample), "a Pass missed"


@given(NON_FINITE)
def test_nan_and_inf_samples_are_no_data(value: float) -> None:
    [status] = run(make_rule(comparator="<"), [(0, value)])
    assert (status.state, status.value) == (RuleState.NO_DATA, None)


@pytest.mark.parametrize(
    ("sample", "setting", "state"),
    [
        (NoData("empty vector"), "onNoData", RuleState.NO_DATA),
        (QueryError("timeout"), "onError", RuleState.ERROR),
    ],
)
def test_hold_after_pass_shows_no_data_or_error_and_restarts_the_passing_streak(
    sample: Sample, setting: str, state: RuleState
) -> None:
    statuses = run(make_rule(), [(0, 0.1), (15, sample), (30, sample), (45, 0.1)])
    assert [(s.state, s.since) for s in statuses] == [
        (RuleState.PASS, at(0)),
        (state, at(15)),
        (state, at(15)),
        (RuleState.PASS, at(45)),
    ]
    assert statuses[1].value is None
    assert f"({setting}: Hold)" in statuses[1].message


def test_hold_keeps_a_pending_breach_without_advancing_it_and_the_next_breach_sample_decides() -> None:
    statuses = run(make_rule(), [(0, 0.9), (30, NoData()), (90, QueryError("down")), (100, 0.9)])
    assert [(s.state, s.since, s.value) for s in statuses] == [
        (RuleState.PENDING, at(0), 0.9),
        (RuleState.PENDING, at(0), None),
        (RuleState.PENDING, at(0), None),  # `for` has elapsed, but a held sample is no evidence
        (RuleState.BREACHED, at(0), 0.9),
    ]
    assert "query failed: down; still Pending (onError: Hold)" in statuses[2].message


def test_hold_keeps_a_breached_rule_breached() -> None:
    statuses = run(make_rule(**{"for": "1s"}), [(0, 0.9), (15, NoData())])
    assert [(s.state, s.since) for s in statuses] == [
        (RuleState.BREACHED, at(0)),
        (RuleState.BREACHED, at(0)),
    ]


def test_no_data_and_error_each_have_their_own_since() -> None:
    statuses = run(make_rule(), [(0, NoData()), (15, NoData()), (30, QueryError("x")), (45, NoData())])
    assert [(s.state, s.since) for s in statuses] == [
        (RuleState.NO_DATA, at(0)),
        (RuleState.NO_DATA, at(0)),
        (RuleState.ERROR, at(30)),
        (RuleState.NO_DATA, at(45)),
    ]


def test_breach_outcome_counts_no_data_as_a_breach_without_a_value() -> None:
    statuses = run(make_rule(onNoData="Breach"), [(0, 0.1), (15, NoData()), (75, NoData())])
    assert [(s.state, s.since, s.value) for s in statuses] == [
        (RuleState.PASS, at(0), 0.1),
        (RuleState.PENDING, at(15), None),
        (RuleState.BREACHED, at(15), None),
    ]
    assert "counted as a breach (onNoData: Breach)" in statuses[1].message


def test_pass_outcome_counts_an_error_as_a_pass_and_ends_a_breach() -> None:
    statuses = run(make_rule(onError="Pass"), [(0, 0.9), (15, QueryError("HTTP 503")), (30, 0.1)])
    assert [(s.state, s.since, s.value) for s in statuses] == [
        (RuleState.PENDING, at(0), 0.9),
        (RuleState.PASS, at(15), None),
        (RuleState.PASS, at(15), 0.1),
    ]
    assert statuses[1].message == "query failed: HTTP 503; counted as a pass (onError: Pass)"


def test_the_previous_status_of_another_rule_is_ignored() -> None:
    other = RuleStatus(name="latency", state=RuleState.PENDING, since=at(-600))
    status = evaluate(make_rule(), other, 0.9, at(0))
    assert (status.name, status.state, status.since) == ("error-rate", RuleState.PENDING, at(0))


def test_a_long_query_error_is_cut_to_the_message_limit() -> None:
    status = evaluate(make_rule(), None, QueryError("x" * 100_000), at(0))
    assert status.state is RuleState.ERROR
    assert len(status.message) < MESSAGE_LIMIT + 100


# A reference model, written backwards over the whole history rather than step by step.
KINDS = st.sampled_from(["low", "high", "nodata", "error"])


def expected(rule: RollbackRule, history: list[tuple[float, str]]) -> tuple[RuleState, float]:
    """(state, since in seconds) after the last sample, recomputed from the whole history."""

    def effective(kind: str) -> str:
        outcome = {"nodata": rule.on_no_data, "error": rule.on_error}.get(kind)
        return {"Breach": "high", "Pass": "low", "Hold": kind}.get(outcome.value if outcome else "", kind)

    kinds = [effective(kind) for _, kind in history]

    def breach_began(end: int) -> int | None:
        # The earliest breaching sample from which every sample up to `end` breached or was held.
        began = None
        for index in range(end, -1, -1):
            if kinds[index] == "low":
                break
            if kinds[index] == "high":
                began = index
        return began

    def run_start(end: int) -> int:
        start = end
        while start > 0 and kinds[start - 1] == kinds[end]:
            start -= 1
        return start

    last = len(kinds) - 1
    if kinds[last] == "low":
        return RuleState.PASS, history[run_start(last)][0]
    began = breach_began(last)
    if began is None:
        state = RuleState.NO_DATA if kinds[last] == "nodata" else RuleState.ERROR
        return state, history[run_start(last)][0]
    decided = max(index for index in range(began, last + 1) if kinds[index] == "high")
    elapsed = timedelta(seconds=history[decided][0] - history[began][0])
    breached = rule.for_ <= timedelta(seconds=1) or elapsed >= rule.for_
    return (RuleState.BREACHED if breached else RuleState.PENDING), history[began][0]


@given(
    st.lists(st.tuples(st.integers(1, 40), KINDS), min_size=1, max_size=30),
    st.sampled_from(["Hold", "Breach", "Pass"]),
    st.sampled_from(["Hold", "Breach", "Pass"]),
    st.sampled_from(["1s", "30s", "1m"]),
)
def test_the_state_machine_agrees_with_a_model_of_the_whole_history(
    steps: list[tuple[int, str]], on_no_data: str, on_error: str, duration: str
) -> None:
    rule = make_rule(onNoData=on_no_data, onError=on_error, **{"for": duration})
    samples: dict[str, Sample] = {"low": 0.1, "high": 0.9, "nodata": NoData(), "error": QueryError("x")}
    history: list[tuple[float, str]] = []
    previous: RuleStatus | None = None
    seconds = 0.0
    for gap, kind in steps:
        seconds += gap
        history.append((seconds, kind))
        previous = evaluate(rule, previous, samples[kind], at(seconds))
        state, since = expected(rule, history)
        assert (previous.state, previous.since) == (state, at(since)), history


# --- verdict and passing_since ---------------------------------------------------------------------


def status(name: str, state: RuleState, since: float, value: float | None = None) -> RuleStatus:
    return RuleStatus(name=name, state=state, since=at(since), value=value)


def test_verdict_names_every_breached_rule_in_spec_order_with_evidence() -> None:
    rules = [make_rule(name="latency", comparator=">=", threshold=2.0), make_rule(), make_rule(name="drift")]
    statuses = [
        status("error-rate", RuleState.BREACHED, 10, 0.7),
        status("latency", RuleState.BREACHED, 20, 3.5),
        status("drift", RuleState.PASS, 0, 0.0),
    ]
    result = verdict(rules, statuses, {"latency": 'histogram_quantile(0.99, x{ns="a"})'})
    assert [breach.rule for breach in result.breaches] == ["latency", "error-rate"]
    assert result.breach is not None
    assert result.breach.began == at(20)
    evidence = result.breach.evidence
    assert (evidence.query, evidence.value, evidence.threshold, evidence.comparator) == (
        'histogram_quantile(0.99, x{ns="a"})',
        3.5,
        2.0,
        Comparator.GE,
    )
    assert result.breaches[1].evidence.query == "up"  # no resolved query given: the template
    assert (result.healthy, result.not_passing, result.passing_since) == (
        False,
        ("latency", "error-rate"),
        None,
    )


def test_verdict_is_healthy_when_every_rule_passes_and_ignores_removed_rules() -> None:
    rules = [make_rule(), make_rule(name="latency")]
    statuses = [
        status("error-rate", RuleState.PASS, 10),
        status("latency", RuleState.PASS, 40),
        status("removed", RuleState.BREACHED, 0),
    ]
    result = verdict(rules, statuses, {})
    assert (result.healthy, result.breach, result.not_passing, result.passing_since) == (
        True,
        None,
        (),
        at(40),
    )


def test_a_rule_not_evaluated_yet_is_not_passing() -> None:
    result = verdict([make_rule(), make_rule(name="latency")], [status("error-rate", RuleState.PASS, 0)], {})
    assert (result.healthy, result.not_passing, result.passing_since) == (False, ("latency",), None)


def test_no_rules_at_all_is_healthy_since_always() -> None:
    result = verdict([], [], {})
    assert (result.healthy, result.breach, result.passing_since) == (True, None, ALWAYS)
    assert passing_since([]) == ALWAYS


@pytest.mark.parametrize(
    "blocking", [RuleState.PENDING, RuleState.NO_DATA, RuleState.ERROR, RuleState.BREACHED]
)
def test_passing_since_is_the_latest_pass_and_none_if_any_rule_is_not_pass(blocking: RuleState) -> None:
    passing = [
        status("a", RuleState.PASS, 30),
        status("b", RuleState.PASS, 90),
        status("c", RuleState.PASS, 60),
    ]
    assert passing_since(passing) == at(90)
    assert passing_since([*passing, status("d", blocking, 0)]) is None


def _series(*values: float) -> list[tuple[datetime, float]]:
    return [(T0 + timedelta(seconds=i), value) for i, value in enumerate(values)]


def test_breach_onset_is_the_start_of_the_run_reaching_the_newest_point() -> None:
    rule = make_rule()  # breaches above its threshold
    high, low = rule.threshold + 1, rule.threshold - 1
    assert rules.breach_onset(rule, _series(low, high, low, high, high, high)) == T0 + timedelta(seconds=3)
    assert rules.breach_onset(rule, _series(high, high, low)) is None, "the newest point must breach"
    assert rules.breach_onset(rule, _series(high, math.nan, high)) == T0 + timedelta(seconds=2)
    assert rules.breach_onset(rule, []) is None


@given(st.lists(st.booleans(), min_size=1, max_size=30))
def test_breach_onset_matches_a_backwards_scan(breaching: list[bool]) -> None:
    rule = make_rule()
    points = _series(*[rule.threshold + (1 if b else -1) for b in breaching])
    expected = None
    for at, value in reversed(points):
        if value <= rule.threshold:
            break
        expected = at
    assert rules.breach_onset(rule, points) == expected


def test_backdating_a_fresh_breach_counts_for_from_when_it_began() -> None:
    rule = make_rule(**{"for": "2s"})
    now = T0 + timedelta(seconds=5)
    fresh = rules.evaluate(rule, None, rule.threshold + 1, now)
    assert fresh.state is RuleState.PENDING
    assert rules.backdate(rule, fresh, now - timedelta(seconds=1), now).state is RuleState.PENDING
    early = rules.backdate(rule, fresh, now - timedelta(seconds=3), now)
    assert (early.state, early.since) == (RuleState.BREACHED, now - timedelta(seconds=3))
    assert rules.backdate(rule, fresh, now + timedelta(seconds=1), now) == fresh, "never later than seen"
    passing = rules.evaluate(rule, None, rule.threshold - 1, now)
    assert rules.backdate(rule, passing, T0, now) == passing, "only a Pending breach is backdated"
