"""The Prometheus adapter against a REAL Prometheus: values, no data, reduction, failures, escaping."""

from __future__ import annotations

import asyncio
import math
import socket
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from modelledger.adapters.batching import QueryBatcher
from modelledger.adapters.metrics import OperatorMetrics
from modelledger.adapters.prometheus import PrometheusAdapter, to_sample
from modelledger.api.modeldeployment import Aggregate
from modelledger.core.promql import render
from modelledger.core.rules import NoData, QueryError, Sample
from modelledger.testing.processes import free_port
from modelledger.testing.prometheus import PrometheusServer
from tests.conftest import Exporter

SCRAPE_DEADLINE = 30.0  # Prometheus scrapes every second; generous for a loaded CI machine


@pytest.fixture
def metrics() -> OperatorMetrics:
    return OperatorMetrics()


@pytest.fixture
def adapter(prometheus: PrometheusServer, metrics: OperatorMetrics) -> Iterator[PrometheusAdapter]:
    client = PrometheusAdapter(prometheus.url, timeout=5.0, metrics=metrics)
    yield client
    client.close()


def poll(query: Callable[[], Sample], done: Callable[[Sample], bool]) -> Sample:
    """Query until `done` holds or the deadline passes; the last sample either way."""
    deadline = time.monotonic() + SCRAPE_DEADLINE
    sample = query()
    while not done(sample) and time.monotonic() < deadline:
        time.sleep(0.2)
        sample = query()
    return sample


def metric_value(metrics: OperatorMetrics, name: str, labels: dict[str, str] | None = None) -> float:
    value = metrics.registry.get_sample_value(name, labels or {})
    return 0.0 if value is None else value


def test_a_gauge_value_comes_back_through_the_adapter(
    adapter: PrometheusAdapter, exporter: Exporter, metrics: OperatorMetrics
) -> None:
    exporter.gauge("adapter_value", "a value").set(0.42)
    query = f'adapter_value{{target="{exporter.name}"}}'
    assert poll(lambda: adapter.query_sync(query), lambda s: s == 0.42) == 0.42
    assert asyncio.run(adapter.query(query)) == 0.42
    assert metric_value(metrics, "modelledger_rule_evaluations_total", {"result": "value"}) >= 2
    assert metric_value(metrics, "modelledger_prometheus_query_seconds_count") >= 2


def test_a_scalar_result_is_its_value(adapter: PrometheusAdapter) -> None:
    assert adapter.query_sync("scalar(vector(2.5)) * 2") == 5.0


def test_an_empty_result_is_no_data(adapter: PrometheusAdapter, metrics: OperatorMetrics) -> None:
    sample = adapter.query_sync('adapter_never_exported{target="nobody"}')
    assert sample == NoData("the query returned an empty vector")
    assert metric_value(metrics, "modelledger_rule_evaluations_total", {"result": "no_data"}) == 1


def test_nan_and_inf_are_no_data(adapter: PrometheusAdapter, exporter: Exporter) -> None:
    gauge = exporter.gauge("adapter_not_finite", "NaN and Inf", ("kind",))
    gauge.labels("nan").set(math.nan)
    gauge.labels("inf").set(math.inf)
    query = f'adapter_not_finite{{target="{exporter.name}"}}'
    sample = poll(
        lambda: adapter.query_sync(query), lambda s: isinstance(s, NoData) and "2 series" in s.reason
    )
    assert sample == NoData("all 2 series of the vector are NaN or ±Inf")
    assert isinstance(adapter.query_sync("scalar(vector(0)) / 0"), NoData)  # a NaN scalar


def test_a_vector_is_reduced_by_the_rule_aggregate(adapter: PrometheusAdapter, exporter: Exporter) -> None:
    gauge = exporter.gauge("adapter_series", "several series", ("pod",))
    for pod, value in (("a", 1.0), ("b", 2.0), ("c", 6.0)):
        gauge.labels(pod).set(value)
    query = f'adapter_series{{target="{exporter.name}"}}'
    poll(lambda: adapter.query_sync(query, Aggregate.SUM), lambda s: s == 9.0)  # all three scraped
    reduced = {aggregate: adapter.query_sync(query, aggregate) for aggregate in Aggregate}
    assert reduced == {Aggregate.MAX: 6.0, Aggregate.MIN: 1.0, Aggregate.SUM: 9.0, Aggregate.AVG: 3.0}
    assert adapter.query_sync(query) == 6.0, "max by default"


def test_a_closed_port_is_a_query_error_at_once(metrics: OperatorMetrics) -> None:
    client = PrometheusAdapter(f"http://127.0.0.1:{free_port()}", timeout=5.0, metrics=metrics)
    try:
        started = time.monotonic()
        sample = client.query_sync("up")
        elapsed = time.monotonic() - started
    finally:
        client.close()
    assert isinstance(sample, QueryError)
    assert "cannot connect to http://127.0.0.1:" in sample.message
    assert "Connection refused" in sample.message
    assert elapsed < 1.0, "no retries, no back-off"
    assert metric_value(metrics, "modelledger_rule_evaluations_total", {"result": "error"}) == 1


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A port that accepts connections (the kernel's backlog) but never answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_server_that_never_answers_times_out_on_time(silent_server: str, mode: str) -> None:
    client = PrometheusAdapter(silent_server, timeout=1.0)
    try:
        started = time.monotonic()
        sample = client.query_sync("up") if mode == "sync" else asyncio.run(client.query("up"))
        elapsed = time.monotonic() - started
    finally:
        client.close()
    assert sample == QueryError(f"timed out after 1s querying {silent_server}")
    assert 0.9 <= elapsed < 2.5


def test_the_event_loop_keeps_running_while_a_query_waits(silent_server: str) -> None:
    client = PrometheusAdapter(silent_server, timeout=1.0)

    async def scenario() -> tuple[Sample, int]:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.05)
                ticks += 1

        task = asyncio.create_task(ticker())
        sample = await client.query("up")
        task.cancel()
        return sample, ticks

    try:
        sample, ticks = asyncio.run(scenario())
    finally:
        client.close()
    assert isinstance(sample, QueryError)
    assert ticks >= 10


def test_a_bad_query_is_a_query_error_naming_the_problem(adapter: PrometheusAdapter) -> None:
    sample = adapter.query_sync("sum(rate(adapter_value[1m])")
    assert isinstance(sample, QueryError)
    assert sample.message.startswith("Prometheus answered HTTP 400: bad_data: ")
    assert "parse error" in sample.message


def test_a_range_vector_is_a_query_error(adapter: PrometheusAdapter, exporter: Exporter) -> None:
    exporter.gauge("adapter_range", "a value").set(1)
    query = f'adapter_range{{target="{exporter.name}"}}[1m]'
    sample = poll(lambda: adapter.query_sync(query), lambda s: isinstance(s, QueryError))
    assert sample == QueryError(
        "the query returns a range vector; a rule needs an instant vector or a scalar"
    )


TRICKY_VALUES = [
    'quote"in',
    "back\\slash",
    'both\\"',
    "\\",
    '"',
    'brace"}or vector(1)',
    "{{namespace}}",
    "new\nline",
    "tab\tand 'single'",
    "unicode ü ✓ 🚀",
    "replacement \ufffd char",
    "nbsp\u00a0sep\u2028",
]


@pytest.mark.parametrize("quote", ['"', "'"])
def test_substituted_values_match_exactly_their_series_in_the_real_parser(
    adapter: PrometheusAdapter, exporter: Exporter, quote: str
) -> None:
    gauge = exporter.gauge("adapter_escaping", "one series per tricky label value", ("ns",))
    for index, value in enumerate(TRICKY_VALUES):
        gauge.labels(value).set(2.0**index)
    template = (
        f"adapter_escaping{{target={quote}{exporter.name}{quote}, ns={quote}{{{{ namespace }}}}{quote}}}"
    )
    total = float(2 ** len(TRICKY_VALUES) - 1)
    everything = f'sum(adapter_escaping{{target="{exporter.name}"}})'
    assert poll(lambda: adapter.query_sync(everything), lambda s: s == total) == total
    # Summed, each value's series is a distinct power of two: the sum proves exactly which matched.
    matched = {
        value: adapter.query_sync(render(template, {"namespace": value}), Aggregate.SUM)
        for value in TRICKY_VALUES
    }
    assert matched == {value: 2.0**index for index, value in enumerate(TRICKY_VALUES)}


# --- result shapes, without a server -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        ([], NoData("the query returned an empty vector")),
        ([{"metric": {}, "value": [1, "0.5"]}, {"metric": {"a": "b"}, "value": [1, "NaN"]}], 0.5),
        ([{"metric": {}, "value": [1, "+Inf"]}], NoData("all 1 series of the vector are NaN or ±Inf")),
        ([1700000000.0, "3"], 3.0),
        ([1700000000.0, "-Inf"], NoData("the query returned the scalar -Inf")),
        ([1700000000.0, "hello"], QueryError("the query returns [1700000000.0, 'hello'], not a number")),
        ({"weird": True}, QueryError("unexpected result \"{'weird': True}\"")),
    ],
)
def test_to_sample_handles_every_result_shape(result: Any, expected: Sample) -> None:
    assert to_sample(result, Aggregate.MAX) == expected


def test_recent_values_show_when_a_breach_began(adapter: PrometheusAdapter, exporter: Exporter) -> None:
    gauge = exporter.gauge("adapter_onset", "a value that steps up")
    query = f'max(adapter_onset{{target="{exporter.name}"}})'
    gauge.set(0.0)
    assert poll(lambda: adapter.query_sync(query), lambda s: s == 0.0) == 0.0
    time.sleep(2)
    stepped_up = datetime.now(UTC)
    gauge.set(1.0)
    assert poll(lambda: adapter.query_sync(query), lambda s: s == 1.0) == 1.0
    end = datetime.now(UTC) + timedelta(seconds=1)  # the client rounds to whole seconds
    points = asyncio.run(adapter.recent_values(query, end - timedelta(seconds=7), end, timedelta(seconds=1)))
    assert isinstance(points, list)
    assert [v for _, v in points][-1] == 1.0
    assert 0.0 in [v for _, v in points]
    first_high = next(at for at, v in points if v == 1.0)
    # The step-up shows within a scrape interval (1 s) plus the range query's step (1 s).
    assert stepped_up - timedelta(seconds=1) <= first_high <= stepped_up + timedelta(seconds=2.5)


def test_batched_queries_answer_as_each_alone_with_fewer_requests(
    adapter: PrometheusAdapter, exporter: Exporter
) -> None:
    gauge = exporter.gauge("adapter_batch", "one series per deployment", ("deployment", "pod"))
    for i in range(20):
        gauge.labels(deployment=f"d{i}", pod="a").set(i)
        gauge.labels(deployment=f"d{i}", pod="b").set(i + 0.5)
    target = f'target="{exporter.name}"'
    poll(lambda: adapter.query_sync(f"count(adapter_batch{{{target}}})"), lambda s: s == 40.0)
    queries = [
        (f'adapter_batch{{{target},deployment="d{i}"}}', Aggregate.MIN if i % 2 else Aggregate.MAX)
        for i in range(20)
    ]
    queries += [
        (f'adapter_batch{{{target},deployment="nowhere"}}', Aggregate.MAX),  # empty: NoData
        ("scalar(vector(7))", Aggregate.MAX),  # a scalar cannot take part in a batch
        ("sum(rate(", Aggregate.MAX),  # refused by Prometheus
    ]

    async def batched() -> tuple[list[Sample], int]:
        batcher = QueryBatcher(adapter)
        samples = await asyncio.gather(*(batcher.query(q, a) for q, a in queries))
        again = await asyncio.gather(*(batcher.query(q, a) for q, a in queries))
        assert again == samples
        return list(samples), batcher.requests_sent

    samples, requests = asyncio.run(batched())
    alone = [adapter.query_sync(q, a) for q, a in queries]
    assert samples[:21] == alone[:21]
    assert (samples[1], samples[2]) == (1.0, 2.5), "each part reduced by its own aggregate"
    assert isinstance(samples[20], NoData)
    assert samples[21] == 7.0
    assert isinstance(samples[22], QueryError)
    # Round 1: one refused batch, then 23 alone; round 2: one batch of 21 and the 2 remembered alone.
    assert requests == 1 + 23 + 1 + 2
