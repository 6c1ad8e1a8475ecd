"""Fleet queries against the real Prometheus: for every fleet-safe template, the one fleet query split by
deployment gives exactly what each deployment's own query gives; and the rule engine sends one query
per group, falling back to per-deployment queries for a template that is not fleet-safe."""

from __future__ import annotations

import asyncio
import math
import time
from datetime import UTC, datetime

import pytest

from modelledger.adapters.prometheus import PrometheusAdapter, to_sample
from modelledger.api import ModelDeploymentSpec, ModelDeploymentStatus, RuleState
from modelledger.api.modeldeployment import Aggregate
from modelledger.core import fleet, promql
from modelledger.handlers.context import OperatorConfig
from modelledger.handlers.engine import RuleEngine
from modelledger.testing.prometheus import PrometheusServer
from tests.conftest import Exporter
from tests.helpers import eventually

SELECT = 'namespace="{{namespace}}",deployment="{{deployment}}"'
FLEET_SAFE = [
    (f"max(fleet_errors{{{SELECT}}})", Aggregate.MAX),
    (f"sum(fleet_errors{{{SELECT}}}) / sum(fleet_load{{{SELECT}}})", Aggregate.MAX),
    (f"histogram_quantile(0.9, sum by (le) (fleet_latency_bucket{{{SELECT}}}))", Aggregate.MAX),
    (f"fleet_errors{{{SELECT}}} > 0.2", Aggregate.SUM),
    (f"max_over_time(fleet_errors{{{SELECT}}}[1m])", Aggregate.AVG),
    (f"avg(fleet_errors{{{SELECT}}} * on (pod) fleet_load{{{SELECT}}})", Aggregate.MAX),
    (f'min without (pod) (fleet_errors{{{SELECT},pod!="p9"}})', Aggregate.MIN),
]
NOT_FLEET_SAFE = f"max(fleet_errors{{{SELECT}}}) + scalar(max(fleet_load{{{SELECT}}}))"
MEMBERS = [(ns, dep) for ns in ("fleet-a", "fleet-b") for dep in ("fraud", "churn", "fraud-2")]
PODS = ("p0", "p1")


@pytest.fixture
def fleet_series(exporter: Exporter, prometheus: PrometheusServer) -> None:
    labels = ("namespace", "deployment", "pod")
    errors = exporter.gauge("fleet_errors", "errors", labels)
    load = exporter.gauge("fleet_load", "load", labels)
    latency = exporter.gauge("fleet_latency_bucket", "latency buckets", (*labels, "le"))
    for m, (ns, dep) in enumerate(MEMBERS):
        for p, pod in enumerate(PODS):
            errors.labels(ns, dep, pod).set(0.1 * (m + 1) + 0.05 * p)
            load.labels(ns, dep, pod).set(10.0 * (m + 1) + p)
            for b, le in enumerate(("0.1", "0.5", "1", "+Inf")):
                latency.labels(ns, dep, pod, le).set((b + 1) * (m + 2) + p)
    prometheus.wait_for_target(exporter.name)
    eventually(
        lambda: len(prometheus.query("fleet_latency_bucket")) == len(MEMBERS) * len(PODS) * 4,
        30,
        "the fleet's series scraped",
    )


def per_deployment(
    adapter: PrometheusAdapter, template: str, aggregate: Aggregate, at: float
) -> list[object]:
    samples: list[object] = []
    for ns, dep in MEMBERS:
        query = promql.prepare(template, {"namespace": ns, "deployment": dep})
        samples.append(to_sample(adapter.fetch_sync(query.text, at), aggregate))
    return samples


def same(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9)
    return a == b


@pytest.mark.parametrize(("template", "aggregate"), FLEET_SAFE)
def test_a_fleet_query_answers_exactly_what_each_deployment_query_does(
    fleet_series: None, prometheus: PrometheusServer, template: str, aggregate: Aggregate
) -> None:
    shape = fleet.fleet_template(template)
    assert not isinstance(shape, str), shape
    adapter = PrometheusAdapter(prometheus.url)
    at = time.time()
    keys = [shape.key({"namespace": ns, "deployment": dep}) for ns, dep in MEMBERS]
    for listed in (True, False):  # the deployments named in the query, and only their namespaces
        ghosts: list[tuple[str, ...]] = [
            ("fleet-a", f"ghost-{i}") for i in range(fleet.MAX_LISTED_DEPLOYMENTS)
        ]
        members = keys if listed else keys + ghosts  # past the limit only the namespaces are named
        query = shape.query(members)
        assert ("deployment=~" in query) is listed, query
        split = fleet.split(adapter.fetch_sync(query, at), shape.labels, keys)
        fleet_samples = [to_sample(split[key], aggregate) for key in keys]
        expected = per_deployment(adapter, template, aggregate, at)
        assert all(same(a, b) for a, b in zip(fleet_samples, expected, strict=True)), (
            query,
            fleet_samples,
            expected,
        )
        assert any(isinstance(s, float) for s in expected), "the check compares real values"
    adapter.close()


def spec(*queries: str, interval: str = "5s") -> ModelDeploymentSpec:
    rules = [
        {"name": f"r{i}", "query": q, "comparator": ">", "threshold": 0.5, "for": "1s"}
        for i, q in enumerate(queries)
    ]
    return ModelDeploymentSpec.model_validate(
        {"modelName": "m", "version": "m-1", "rollback": {"interval": interval, "rules": rules}}
    )


def serving_status() -> ModelDeploymentStatus:
    entry = {
        "revision": 1,
        "version": "m-1",
        "cause": "Deploy",
        "at": "2026-01-01T00:00:00Z",
        "actor": "x",
        "hash": "sha256:" + "0" * 64,
    }
    return ModelDeploymentStatus.model_validate({"history": [entry], "currentRevision": 1})


def test_the_engine_sends_one_query_per_group_and_falls_back_for_the_rest(
    fleet_series: None, prometheus: PrometheusServer
) -> None:
    fleet_safe = FLEET_SAFE[0][0]
    assert isinstance(fleet.fleet_template(NOT_FLEET_SAFE), str)
    woken: list[tuple[str, str]] = []

    async def run() -> RuleEngine:
        engine = RuleEngine(
            OperatorConfig(prometheus_url=prometheus.url),
            wake=lambda key, _urgent: woken.append(key),
            leading=lambda: True,
        )
        for ns, dep in MEMBERS:
            engine.sync((ns, dep), f"uid-{ns}-{dep}", spec(fleet_safe, NOT_FLEET_SAFE), serving_status(), {})
        await engine.tick(list(engine.members.values()), datetime.now(UTC))
        await engine.stop()
        return engine

    engine = asyncio.run(run())
    namespaces = len({ns for ns, _dep in MEMBERS})
    assert engine.queries_sent == namespaces + len(MEMBERS), (
        "one fleet query per namespace, and one per deployment for the template that is not fleet-safe"
    )
    assert sorted(woken) == sorted(MEMBERS), "every deployment's first evaluation wakes its pass"
    adapter = PrometheusAdapter(prometheus.url)
    for ns, dep in MEMBERS:
        member = engine.members[(ns, dep)]
        assert member.evaluation is not None
        by_name = {s.name: s for s in member.evaluation.statuses}
        for name, template in (("r0", fleet_safe), ("r1", NOT_FLEET_SAFE)):
            query = promql.prepare(template, {"namespace": ns, "deployment": dep})
            value = to_sample(adapter.fetch_sync(query.text), Aggregate.MAX)
            assert isinstance(value, float)
            expected = RuleState.BREACHED if value > 0.5 else RuleState.PASS
            assert by_name[name].state is expected, (ns, dep, name, value)
        assert (
            member.evaluation.queries["r0"]
            == promql.prepare(fleet_safe, {"namespace": ns, "deployment": dep}).text
        )
    adapter.close()


def test_only_a_newly_breached_rule_wakes_its_pass_urgently(
    fleet_series: None, prometheus: PrometheusServer
) -> None:
    """A first evaluation (Pass here) is recorded by a pass in the normal lane; a breach that may lead
    to a rollback goes first."""
    template = FLEET_SAFE[0][0]
    woken: dict[tuple[str, str], bool] = {}

    async def run() -> None:
        engine = RuleEngine(
            OperatorConfig(prometheus_url=prometheus.url),
            wake=lambda key, urgent: woken.__setitem__(key, urgent),
            leading=lambda: True,
        )
        for ns, dep in MEMBERS:
            engine.sync((ns, dep), f"uid-{ns}-{dep}", spec(template), serving_status(), {})
        await engine.tick(list(engine.members.values()), datetime.now(UTC))
        deadline = time.monotonic() + 10
        while len(woken) < len(MEMBERS) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)  # fresh breaches wake once backdated
        await engine.stop()

    asyncio.run(run())
    adapter = PrometheusAdapter(prometheus.url)
    expected = {}
    for ns, dep in MEMBERS:
        query = promql.prepare(template, {"namespace": ns, "deployment": dep})
        value = to_sample(adapter.fetch_sync(query.text), Aggregate.MAX)
        assert isinstance(value, float)
        expected[(ns, dep)] = value > 0.5  # `for` is 1 s and the series breach for longer: Breached at once
    adapter.close()
    assert woken == expected
    assert any(expected.values())
    assert not all(expected.values())
