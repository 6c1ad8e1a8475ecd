"""Batching confined to one tenant, bounded refusal memories, and where a deployment's queries go.

A fake Prometheus answers batched queries by parsing them (the real parser), so the tests see exactly
which parts each request held. The real Prometheus is in tests/integration/test_prometheus_adapter.py
and the operator in tests/integration/test_tenancy.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import promql_parser as pp
import pytest

from modelledger.adapters.batching import BATCH_LABEL, QueryBatcher, split
from modelledger.adapters.prometheus import (
    RejectedQuery,
    display_url,
    load_sources,
    sanitise,
    to_sample,
)
from modelledger.api import ModelDeploymentSpec, ModelDeploymentStatus, RuleState
from modelledger.api.modeldeployment import Aggregate, Prometheus
from modelledger.core import promql
from modelledger.core.rules import QueryError, Sample
from modelledger.handlers.context import OperatorConfig
from modelledger.handlers.engine import RuleEngine
from modelledger.handlers.rules import Evaluation, PrometheusClients, Target, clients_for


class FakePrometheus:
    """Answers each selector-only part with the value `values[namespace]`; records every request."""

    def __init__(self, values: dict[str, float], refuse: Callable[[str], bool] = lambda text: False) -> None:
        self.values = values
        self.refuse = refuse
        self.requests: list[str] = []

    async def fetch(self, text: str) -> Any:
        self.requests.append(text)
        if self.refuse(text):
            return RejectedQuery("Prometheus answered HTTP 400: bad_data: refused")
        tree = pp.parse(text)
        if isinstance(tree, pp.Call) and tree.func.name == "scalar":
            return [0, "7"]
        parts = _parts(tree)
        if parts is None:
            return [{"metric": {}, "value": [0, str(self._value(tree))]}]
        return [
            {"metric": {BATCH_LABEL: str(index)}, "value": [0, str(self._value(part))]}
            for index, part in enumerate(parts)
        ]

    def _value(self, tree: pp.Expr) -> float:
        (selector,) = promql.selectors(tree)
        namespace = next(m.value for m in selector.matchers.matchers if m.name == "namespace")
        return self.values[namespace]

    async def query(self, text: str, aggregate: Aggregate = Aggregate.MAX) -> Sample:
        result = await self.fetch(text)
        return result if isinstance(result, QueryError) else to_sample(result, aggregate)

    def count(self, sample: Sample) -> None:
        pass

    def namespaces_per_request(self) -> list[set[str]]:
        return [
            {
                m.value
                for s in promql.selectors(pp.parse(text))
                for m in s.matchers.matchers
                if m.name == "namespace"
            }
            for text in self.requests
        ]


def _parts(tree: pp.Expr) -> list[pp.Expr] | None:
    calls: list[pp.Expr] = []
    while isinstance(tree, pp.BinaryExpr) and str(tree.op) == "or":
        calls.append(tree.rhs)
        tree = tree.lhs
    calls.append(tree)
    if not all(isinstance(c, pp.Call) and c.func.name == "label_replace" for c in calls):
        return None
    return [call.args[0].expr for call in reversed(calls)]  # type: ignore[attr-defined]


def q(namespace: str, metric: str = "errors") -> promql.Query:
    return promql.parse(f'max({metric}{{namespace="{namespace}"}})')


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_queries_of_different_tenants_never_share_a_request() -> None:
    fake = FakePrometheus({"team-a": 1.0, "team-b": 2.0})

    async def scenario() -> list[Sample]:
        batcher = QueryBatcher(fake)
        asks = [(q(ns, f"m{i}"), ns) for i in range(5) for ns in ("team-a", "team-b")]
        return list(await asyncio.gather(*(batcher.query(query, Aggregate.MAX, ns) for query, ns in asks)))

    samples = asyncio.run(scenario())
    assert samples == [1.0, 2.0] * 5
    assert len(fake.requests) == 2
    assert sorted(map(sorted, fake.namespaces_per_request())) == [["team-a"], ["team-b"]]


def test_an_injection_attempt_cannot_even_be_queued() -> None:
    # The text of issue 13: it is not one expression, so there is no Query to batch at all.
    with pytest.raises(promql.PromQLError):
        promql.parse('vector(0)\n), "modelledger_batch", "1", "", "") or label_replace((\nvector(1e9)')


def test_a_refused_batch_goes_one_by_one_for_a_bounded_time_then_batches_again() -> None:
    clock = Clock()
    refusing = [True]
    fake = FakePrometheus({"team-a": 1.0}, refuse=lambda text: refusing[0] and " or " in text)
    batcher = QueryBatcher(fake, refusal_memory=60.0, clock=clock)

    async def round_of(n: int) -> list[Sample]:
        return list(
            await asyncio.gather(
                *(batcher.query(q("team-a", f"m{i}"), Aggregate.MAX, "team-a") for i in range(n))
            )
        )

    assert asyncio.run(round_of(3)) == [1.0] * 3
    assert len(fake.requests) == 1 + 3  # the refused batch, then each alone (all accepted)
    refusing[0] = False  # whatever made it refuse has passed (a proxy's URL limit, a restart)
    fake.requests.clear()
    assert asyncio.run(round_of(3)) == [1.0] * 3
    assert len(fake.requests) == 3, "within the refusal memory: alone"
    clock.now += 61
    fake.requests.clear()
    assert asyncio.run(round_of(3)) == [1.0] * 3
    assert len(fake.requests) == 1, "after it: batched again"


def test_a_query_refused_alone_is_sent_alone_for_a_bounded_time() -> None:
    clock = Clock()
    bad = q("team-a", "bad")
    fake = FakePrometheus({"team-a": 1.0}, refuse=lambda text: "bad" in text)
    batcher = QueryBatcher(fake, refusal_memory=60.0, clock=clock)

    async def round_of() -> list[Sample]:
        asks = [bad, q("team-a", "good1"), q("team-a", "good2")]
        return list(await asyncio.gather(*(batcher.query(query, Aggregate.MAX, "team-a") for query in asks)))

    first = asyncio.run(round_of())
    assert isinstance(first[0], RejectedQuery)
    assert first[1:] == [1.0, 1.0]
    fake.requests.clear()
    second = asyncio.run(round_of())
    assert second[1:] == [1.0, 1.0]
    assert len(fake.requests) == 2, "the bad one alone, the good ones together"
    clock.now += 61
    fake.requests.clear()
    asyncio.run(round_of())
    assert len(fake.requests) == 1 + 3, "forgotten: tried in a batch again, refused, then one by one"


def test_scalar_queries_go_alone_without_a_refusal() -> None:
    fake = FakePrometheus({"team-a": 1.0})

    async def scenario() -> list[Sample]:
        batcher = QueryBatcher(fake)
        scalar = promql.parse('scalar(errors{namespace="team-a"})')
        asks = [
            batcher.query(scalar, Aggregate.MAX, "team-a"),
            batcher.query(q("team-a"), Aggregate.MAX, "team-a"),
        ]
        return list(await asyncio.gather(*asks))

    assert asyncio.run(scenario()) == [7.0, 1.0]
    assert len(fake.requests) == 2
    assert not any(" or " in text for text in fake.requests)


def test_refusal_memories_are_bounded_in_size() -> None:
    fake = FakePrometheus({"team-a": 1.0}, refuse=lambda text: True)
    batcher = QueryBatcher(fake, memory_size=3)

    async def scenario() -> None:
        for i in range(10):
            await asyncio.gather(
                *(batcher.query(q("team-a", f"m{i}x{j}"), Aggregate.MAX, "team-a") for j in range(2))
            )

    asyncio.run(scenario())
    assert len(batcher._alone) == 3
    assert len(batcher._unbatched) <= 3


def test_split_takes_only_the_parts_it_asked_for() -> None:
    result = [
        {"metric": {BATCH_LABEL: "1", "a": "x"}, "value": [0, "1"]},
        {"metric": {BATCH_LABEL: "²"}, "value": [0, "9"]},  # a digit to str.isdigit, not to int()
        {"metric": {BATCH_LABEL: "7"}, "value": [0, "9"]},
        {"metric": {}, "value": [0, "9"]},
        "garbage",
    ]
    assert split(result, 2) == [[], [{"metric": {"a": "x"}, "value": [0, "1"]}]]


# --- where a deployment's queries go ------------------------------------------------------------------


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_sources_file_is_validated_naming_the_entry(tmp_path: Path) -> None:
    token = write(tmp_path / "token", "s3cret\n")
    good = write(
        tmp_path / "sources.yaml",
        f"- {{name: main, url: 'https://prom:9090', tenancy: enforced, tokenFile: {token}, timeout: 3}}\n"
        "- {name: default, url: 'http://prom2:9090'}\n",
    )
    main, default = load_sources(good)
    assert (main.name, main.tenancy, main.token_file, main.timeout) == (
        "main",
        promql.Tenancy.ENFORCED,
        token,
        3,
    )
    assert default.tenancy is promql.Tenancy.SHARED
    cases = {
        "- {name: Main, url: 'http://x'}": "0.name",
        "- {name: a, url: 'ftp://x'}": "0.url",
        "- {name: a, url: 'http://x', tenancy: strict}": "0.tenancy",
        "- {name: a, url: 'http://x', tokenFile: /nonexistent}": "is not a readable file",
        "- {name: a, url: 'http://x', token: abc}": "0.token",
        "- {name: a, url: 'http://x'}\n- {name: a, url: 'http://y'}": "unique: a",
        "name: a": "the file",
    }
    for text, problem in cases.items():
        with pytest.raises(ValueError, match=problem):
            load_sources(write(tmp_path / "bad.yaml", text))


def clients(tmp_path: Path, **settings: Any) -> PrometheusClients:
    token = write(tmp_path / "token", "s3cret")
    sources = load_sources(
        write(
            tmp_path / "sources.yaml",
            f"- {{name: main, url: 'http://127.0.0.1:1', tenancy: enforced, tokenFile: {token}}}\n",
        )
    )
    return PrometheusClients(OperatorConfig(prometheus_sources=tuple(sources), **settings))


def test_an_unknown_source_or_a_refused_url_is_a_message_naming_the_field(tmp_path: Path) -> None:
    registry = clients(tmp_path, allow_raw_prometheus_urls=False)
    unknown = registry.resolve(Prometheus(source="nope"))
    assert isinstance(unknown, str)
    assert unknown.startswith('spec.rollback.prometheus.source: no Prometheus source named "nope"')
    assert "(defined: main)" in unknown
    refused = registry.resolve(Prometheus(url="http://user:pw@evil.example:9090/?q=1"))
    assert isinstance(refused, str)
    assert refused.startswith("spec.rollback.prometheus.url:")
    assert "pw" not in refused
    assert "evil" not in refused
    nothing = registry.resolve(None)
    assert isinstance(nothing, str)
    assert "spec.rollback.prometheus is not set" in nothing
    assert all(len(text) <= 256 for text in (unknown, refused, nothing))
    registry.close()


def test_a_tenant_url_gets_a_client_without_any_credentials(tmp_path: Path) -> None:
    registry = clients(tmp_path, prometheus_url="http://127.0.0.1:2", prometheus_token="operator-token")
    main = registry.resolve(Prometheus(source="main"))
    default = registry.resolve(None)
    raw = registry.resolve(Prometheus(url="http://127.0.0.1:3"))
    assert isinstance(main, Target)
    assert isinstance(default, Target)
    assert isinstance(raw, Target)
    assert main.tenancy is promql.Tenancy.ENFORCED
    assert main.adapter._client.auth is not None
    assert default.adapter._client.auth is not None
    assert raw.adapter._client.auth is None
    assert raw.adapter._session.trust_env is False, "no ~/.netrc, no proxy or CA from the environment"
    assert raw.adapter._session.verify is True, "no operator CA bundle either"
    assert raw.adapter.detailed_errors is False
    assert raw.tenancy is promql.Tenancy.SHARED
    registry.close()


def test_tenant_url_clients_are_bounded_least_recently_used_first(tmp_path: Path) -> None:
    registry = clients(tmp_path, max_raw_prometheus_clients=2)
    first = registry.resolve(Prometheus(url="http://127.0.0.1:11"))
    second = registry.resolve(Prometheus(url="http://127.0.0.1:12"))
    assert isinstance(first, Target)
    assert isinstance(second, Target)
    assert registry.resolve(Prometheus(url="http://127.0.0.1:11")) is first  # used again: kept
    third = registry.resolve(Prometheus(url="http://127.0.0.1:13"))
    assert isinstance(third, Target)
    assert registry.raw_clients == 2
    assert second.adapter.closed
    assert not first.adapter.closed
    answer = asyncio.run(second.adapter.fetch("up"))
    assert isinstance(answer, QueryError)
    assert "closed" in answer.message
    registry.close()


def test_sanitise_cuts_credentials_queries_and_length() -> None:
    text = sanitise(
        "cannot reach https://admin:hunter2@prom.internal:9090/api/v1/query?query=up&x=1\nnext " + "x" * 400
    )
    assert "hunter2" not in text
    assert "query=up" not in text
    assert "\n" not in text
    assert text.startswith("cannot reach https://prom.internal:9090/api/v1/query next")
    assert len(text) == 256
    assert display_url("https://u:p@host:9090/prom/?a=b#c") == "https://host:9090/prom"


# --- the rule loop: a rule that cannot run is Error, naming the field ---------------------------------

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def spec_and_status(
    prometheus: dict[str, str] | None, query: str
) -> tuple[ModelDeploymentSpec, ModelDeploymentStatus]:
    rollback: dict[str, Any] = {
        "rules": [
            {"name": "errors", "query": query, "comparator": ">", "threshold": 0.5, "onError": "Breach"}
        ]
    }
    if prometheus is not None:
        rollback["prometheus"] = prometheus
    spec = ModelDeploymentSpec.model_validate(
        {"modelName": "fraud", "version": "fraud-1", "rollback": rollback}
    )
    entry = {
        "revision": 1,
        "version": "fraud-1",
        "cause": "Deploy",
        "at": NOW.isoformat(),
        "actor": "x",
        "hash": "sha256:" + "0" * 64,
    }
    status = ModelDeploymentStatus.model_validate({"history": [entry], "currentRevision": 1})
    return spec, status


@pytest.mark.parametrize(
    ("prometheus", "query", "message"),
    [
        ({"source": "nope"}, "up", 'spec.rollback.prometheus.source: no Prometheus source named "nope"'),
        ({"url": "http://127.0.0.1:1"}, "up", "spec.rollback.prometheus.url: this operator does not query"),
        ({"source": "main"}, 'up{namespace="team-b"}', "spec.rollback.rules[0].query: the selector matcher"),
        ({"source": "main"}, "sum(up", "spec.rollback.rules[0].query: not a PromQL expression"),
        ({"source": "main"}, 'up{a="{{ who }}"}', "spec.rollback.rules[0].query: unknown placeholder"),
        ({"source": "main"}, "up[5m]", "spec.rollback.rules[0].query: the query returns a matrix"),
    ],
)
def test_a_rule_that_cannot_run_is_error_whatever_on_error_says(
    tmp_path: Path, prometheus: dict[str, str], query: str, message: str
) -> None:
    registry = clients(tmp_path, allow_raw_prometheus_urls=False)
    spec, status = spec_and_status(prometheus, query)
    evaluation = evaluated(registry.config, spec, status)
    (rule,) = evaluation.statuses
    assert rule.state is RuleState.ERROR, "onError: Breach applies to failed queries, not to invalid rules"
    assert rule.message.startswith(message)
    assert len(rule.message) <= 256
    assert evaluation.query_errors == {}, "Prometheus was not even asked"
    registry.close()


def evaluated(config: OperatorConfig, spec: ModelDeploymentSpec, status: ModelDeploymentStatus) -> Evaluation:
    """One engine tick for one deployment, and what its next pass reads."""

    async def tick() -> Evaluation:
        engine = RuleEngine(config, wake=lambda _key, _urgent: None, leading=lambda: True)
        assert engine.sync(("team-a", "fraud"), "uid", spec, status, {}) is None, "nothing before a tick"
        await engine.tick(list(engine.members.values()), NOW)
        evaluation = engine.sync(("team-a", "fraud"), "uid", spec, status, {})
        await engine.stop()
        assert evaluation is not None
        return evaluation

    return asyncio.run(tick())


def test_operator_config_keeps_one_set_of_clients(tmp_path: Path) -> None:
    config = OperatorConfig()
    assert clients_for(config) is clients_for(config)


def test_without_a_default_prometheus_the_rule_says_so(tmp_path: Path) -> None:
    spec, status = spec_and_status(None, "up")
    evaluation = evaluated(OperatorConfig(), spec, status)
    assert evaluation.statuses[0].state is RuleState.ERROR
    assert "no default Prometheus" in evaluation.statuses[0].message
