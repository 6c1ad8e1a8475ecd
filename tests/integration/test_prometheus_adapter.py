"""The Prometheus adapter against a REAL Prometheus: values, no data, reduction, failures, escaping, the
canonical text and namespace enforcement; bounded answers and sanitised errors against local servers."""

from __future__ import annotations

import asyncio
import gzip
import http.server
import json
import math
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from modelledger.adapters.batching import QueryBatcher
from modelledger.adapters.metrics import OperatorMetrics
from modelledger.adapters.prometheus import MAX_BODY, PrometheusAdapter, RejectedQuery, to_sample
from modelledger.api.modeldeployment import Aggregate
from modelledger.core.promql import enforce_namespace, parse, render
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
    texts = [
        (f'adapter_batch{{{target},deployment="d{i}"}}', Aggregate.MIN if i % 2 else Aggregate.MAX)
        for i in range(20)
    ]
    texts += [
        (f'adapter_batch{{{target},deployment="nowhere"}}', Aggregate.MAX),  # empty: NoData
        ("scalar(vector(7))", Aggregate.MAX),  # a scalar (the parser says so) never joins a batch
        # Parsed fine (the parser follows Prometheus 3), refused by this Prometheus 2: spoils the batch.
        (f'sort_by_label(adapter_batch{{{target}}}, "pod")', Aggregate.MAX),
    ]
    queries = [(parse(text), aggregate) for text, aggregate in texts]

    async def batched() -> tuple[list[Sample], int]:
        batcher = QueryBatcher(adapter)
        samples = await asyncio.gather(*(batcher.query(q, a, "tenant") for q, a in queries))
        again = await asyncio.gather(*(batcher.query(q, a, "tenant") for q, a in queries))
        assert again == samples
        return list(samples), batcher.requests_sent

    samples, requests = asyncio.run(batched())
    alone = [adapter.query_sync(q.text, a) for q, a in queries]
    assert samples[:22] == alone[:22]
    assert (samples[1], samples[2]) == (1.0, 2.5), "each part reduced by its own aggregate"
    assert isinstance(samples[20], NoData)
    assert samples[21] == 7.0
    assert isinstance(samples[22], QueryError)
    # Round 1: the scalar alone, one refused batch of 22, then those 22 alone; round 2: the scalar and
    # the refused query alone, one batch of the other 21.
    assert requests == 1 + 1 + 22 + 2 + 1


# --- canonical text, namespace enforcement, bounded answers ---------------------------------------------

FIDELITY = [
    "sum by (pod) (adapter_fidelity{{{t}}})",
    "max(adapter_fidelity{{{t}}}) - min(adapter_fidelity{{{t}}})",
    'count_values("v", adapter_fidelity{{{t}}})',
    "topk(1, adapter_fidelity{{{t}}}) # a comment ) or vector(1)",
    "max_over_time((adapter_fidelity{{{t}}} * 2)[10s:1s])",
    'label_replace(adapter_fidelity{{{t}}}, "x", "$1", "pod", "(.)")',
    'adapter_fidelity{{{t}, pod=~"a|b"}} > bool 1',
    "adapter_fidelity{{{t}}} / on (pod) group_left () adapter_fidelity{{{t}}}",
    "sum(adapter_fidelity{{{t}}} offset 1s)",
    'absent(adapter_fidelity{{{t}, pod="nope"}})',
    "-2 ^ 2 + 0x10 * 1e-1",
    "vector(time() > bool 0)",
]


def test_the_canonical_text_answers_as_the_text_written(
    adapter: PrometheusAdapter, exporter: Exporter
) -> None:
    gauge = exporter.gauge("adapter_fidelity", "three pods", ("pod",))
    for pod, value in (("a", 1.0), ("b", 2.0), ("c", 3.0)):
        gauge.labels(pod).set(value)
    t = f'target="{exporter.name}"'
    poll(lambda: adapter.query_sync(f"count(adapter_fidelity{{{t}}} offset 2s)"), lambda s: s == 3.0)
    for template in FIDELITY:
        text = template.format(t=t)
        canonical = parse(text).text
        for aggregate in (Aggregate.SUM, Aggregate.MIN):
            written, printed = adapter.query_sync(text, aggregate), adapter.query_sync(canonical, aggregate)
            assert written == printed, f"{text!r} -> {canonical!r}"
            assert not isinstance(written, QueryError), written


def test_an_enforced_query_reads_only_its_namespace(adapter: PrometheusAdapter, exporter: Exporter) -> None:
    gauge = exporter.gauge("adapter_tenants", "one series per namespace", ("namespace",))
    gauge.labels("team-a").set(1.0)
    gauge.labels("team-b").set(100.0)
    t = f'target="{exporter.name}"'
    # Scraped for 6 s, so the 5 s subquery below has points at every step.
    poll(lambda: adapter.query_sync(f"count(adapter_tenants{{{t}}} offset 6s)"), lambda s: s == 2.0)
    for text in (
        f"max(adapter_tenants{{{t}}})",
        f'max({{__name__=~"adapter_.*", {t}}})',
        f"max_over_time(max(adapter_tenants{{{t}}})[5s:1s])",
        f"sum(adapter_tenants{{{t}}}) + sum(adapter_tenants{{{t}}} offset 1s)",
    ):
        shared = adapter.query_sync(parse(text).text, Aggregate.MAX)
        enforced = adapter.query_sync(enforce_namespace(parse(text), "team-a").text, Aggregate.MAX)
        assert isinstance(shared, float), text
        assert shared >= 100.0, text
        assert isinstance(enforced, float), text
        assert enforced <= 2.0, text


class _Handler(http.server.BaseHTTPRequestHandler):
    reply: Callable[[_Handler], None]

    def do_GET(self) -> None:
        type(self).reply(self)

    do_POST = do_GET

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def fake_server() -> Iterator[Callable[[Callable[[_Handler], None]], str]]:
    """A local HTTP server answering with the function given; yields a starter returning its URL."""
    servers: list[http.server.ThreadingHTTPServer] = []

    def start(reply: Callable[[_Handler], None]) -> str:
        handler = type("Handler", (_Handler,), {"reply": staticmethod(reply)})
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def _send(handler: _Handler, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
    handler.send_response(status)
    for name, value in (headers or {"Content-Type": "application/json"}).items():
        handler.send_header(name, value)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def _big_vector() -> bytes:
    series = {"metric": {"pad": "x" * 1000}, "value": [1, "1"]}
    return json.dumps(
        {"status": "success", "data": {"resultType": "vector", "result": [series] * 11_000}}
    ).encode()


def test_a_body_over_the_limit_is_an_error_not_a_crash(fake_server: Any) -> None:
    body = _big_vector()
    assert len(body) > MAX_BODY
    declared = fake_server(lambda h: _send(h, 200, body))

    def chunked(handler: _Handler) -> None:  # no Content-Length: the limit applies while reading
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()
        for start in range(0, len(body), 1 << 20):
            piece = body[start : start + (1 << 20)]
            handler.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
        handler.wfile.write(b"0\r\n\r\n")

    def gzipped(handler: _Handler) -> None:  # small on the wire, over the limit once decompressed
        _send(
            handler,
            200,
            gzip.compress(body),
            {"Content-Type": "application/json", "Content-Encoding": "gzip"},
        )

    for url in (declared, fake_server(chunked), fake_server(gzipped)):
        client = PrometheusAdapter(url, timeout=10.0)
        try:
            sample = client.query_sync("up")
        finally:
            client.close(wait=True)
        assert isinstance(sample, QueryError), url
        assert "larger than 10 MiB" in sample.message
    small = fake_server(lambda h: _send(h, 200, body[:0] or _vector(0.25)))
    client = PrometheusAdapter(small, timeout=5.0)
    try:
        assert client.query_sync("up") == 0.25
    finally:
        client.close(wait=True)


def _vector(value: float) -> bytes:
    result = [{"metric": {}, "value": [1, str(value)]}]
    return json.dumps({"status": "success", "data": {"resultType": "vector", "result": result}}).encode()


def test_error_text_is_short_and_never_a_body(fake_server: Any) -> None:
    secret = "INTERNAL-SECRET-" + "z" * 600
    html = fake_server(
        lambda h: _send(h, 400, f"<html>{secret}</html>".encode(), {"Content-Type": "text/html"})
    )
    prometheus_like = fake_server(
        lambda h: _send(
            h, 422, json.dumps({"status": "error", "errorType": "execution", "error": secret}).encode()
        )
    )
    redirect = fake_server(lambda h: _send(h, 302, b"", {"Location": f"{html}/api/v1/query"}))
    for url, detailed, expected in (
        (html, True, "answered HTTP 400"),
        (prometheus_like, False, "answered HTTP 422 (execution)"),
        (redirect, True, "answered with a redirect (not followed)"),
    ):
        client = PrometheusAdapter(
            url.replace("http://", "http://user:pw@"), timeout=5.0, detailed_errors=detailed
        )
        try:
            sample = client.query_sync("up")
        finally:
            client.close(wait=True)
        assert isinstance(sample, QueryError)
        assert expected in sample.message
        assert "SECRET" not in sample.message
        assert "pw" not in sample.message
        assert len(sample.message) <= 256
    trusted = PrometheusAdapter(prometheus_like, timeout=5.0)  # an admin's source: Prometheus's own error
    try:
        sample = trusted.query_sync("up")
    finally:
        trusted.close(wait=True)
    assert isinstance(sample, RejectedQuery)
    assert sample.message.startswith("Prometheus answered HTTP 422: execution: INTERNAL-SECRET-")
    assert len(sample.message) <= 256
