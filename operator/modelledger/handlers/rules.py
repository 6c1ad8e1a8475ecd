"""The rule side of a deployment loop: when the rules are due, query Prometheus and step their states.

`status.rules[].value` is the value that moved a rule into its current state (for a Breached rule: the
evidence); a rule whose state did not change is not rewritten, so a fluctuating metric causes no
status writes. Live values are on /metrics (`modelledger_rule_value`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from modelledger.adapters.batching import QueryBatcher
from modelledger.adapters.metrics import OperatorMetrics
from modelledger.adapters.prometheus import PrometheusAdapter
from modelledger.api import (
    ModelDeploymentSpec,
    ModelDeploymentStatus,
    ModelVersion,
    RollbackRule,
    RuleState,
    RuleStatus,
)
from modelledger.core import history, promql
from modelledger.core.reconcile import Decision
from modelledger.core.rules import QueryError, Sample, backdate, breach_onset, evaluate
from modelledger.handlers.context import OperatorConfig

METRICS = OperatorMetrics()
_BATCHERS: dict[str, QueryBatcher] = {}
BREACHING = (RuleState.PENDING, RuleState.BREACHED)
RANGE_STEP = timedelta(seconds=1)  # resolution of the look back at a fresh breach (a typical scrape interval)
_ADAPTERS: dict[str, PrometheusAdapter] = {}


def adapter_for(url: str, config: OperatorConfig) -> PrometheusAdapter:
    if url not in _ADAPTERS:
        _ADAPTERS[url] = PrometheusAdapter(
            url,
            timeout=config.prometheus_timeout,
            bearer_token=config.prometheus_token,
            ca_bundle=Path(config.prometheus_ca) if config.prometheus_ca else None,
            metrics=METRICS,
        )
    return _ADAPTERS[url]


def batcher_for(url: str, config: OperatorConfig) -> QueryBatcher:
    """One batcher per Prometheus: the rule queries of all deployments share its requests."""
    if url not in _BATCHERS:
        _BATCHERS[url] = QueryBatcher(adapter_for(url, config))
    return _BATCHERS[url]


def record_decision(namespace: str, name: str, decision: Decision) -> None:
    if decision.cause is not None and decision.cause.value != "Deploy":
        METRICS.record_rollback(namespace, name, decision.cause.value)


def record_serving(namespace: str, name: str, status: ModelDeploymentStatus) -> None:
    serving = history.current(status.history, status.current_revision)
    if serving is not None:
        METRICS.set_serving(namespace, name, serving.version, serving.revision, serving.stable)


@dataclass(frozen=True)
class Evaluation:
    statuses: list[RuleStatus]
    query_errors: dict[str, str]


class RuleRunner:
    """Per deployment loop: evaluates the rules every `interval`, sooner when a Pending rule comes due."""

    def __init__(self, config: OperatorConfig) -> None:
        self.config = config
        self.next_due: datetime | None = None

    async def _backdate(
        self,
        adapter: PrometheusAdapter,
        rule: RollbackRule,
        query: str,
        status: RuleStatus,
        spec: ModelDeploymentSpec,
        now: datetime,
    ) -> RuleStatus:
        """A breach first seen now may have begun up to an interval ago: ask Prometheus when."""
        lookback = spec.rollback.interval + RANGE_STEP
        # The client rounds times to whole seconds: end a step late so the newest point is "now".
        points = await adapter.recent_values(
            query, now - lookback, now + RANGE_STEP, RANGE_STEP, rule.aggregate
        )
        if isinstance(points, QueryError):
            return status  # the breach counts from now, as without the look back
        onset = breach_onset(rule, points)
        return backdate(rule, status, onset, now) if onset is not None else status

    def seconds_until_due(self, spec: ModelDeploymentSpec, now: datetime) -> float:
        due = self.next_due or now + spec.rollback.interval
        return max(0.05, min((due - now).total_seconds(), spec.rollback.interval.total_seconds()))

    async def evaluate_if_due(
        self,
        namespace: str,
        name: str,
        spec: ModelDeploymentSpec,
        status: ModelDeploymentStatus,
        versions: Mapping[str, ModelVersion],
        now: datetime,
    ) -> Evaluation | None:
        rules = spec.rollback.rules
        METRICS.keep_rules(namespace, name, [rule.name for rule in rules])
        serving = history.current(status.history, status.current_revision)
        if not rules or serving is None or (self.next_due is not None and now < self.next_due):
            return None
        values = {
            "namespace": namespace,
            "deployment": name,
            "model": spec.model_name,
            "version": serving.version,
        }
        queries: dict[str, str] = {}
        pending: list[asyncio.Future[Sample] | Sample] = []
        url = spec.rollback.prometheus.url if spec.rollback.prometheus else self.config.prometheus_url
        for rule in rules:
            try:
                queries[rule.name] = promql.render(rule.query, values)
            except ValueError as error:
                pending.append(QueryError(f"bad query template: {error}"))
                continue
            if url is None:
                pending.append(
                    QueryError("no Prometheus: set spec.rollback.prometheus.url or --prometheus-url")
                )
                continue
            pending.append(
                asyncio.ensure_future(batcher_for(url, self.config).query(queries[rule.name], rule.aggregate))
            )
        samples = [await item if isinstance(item, asyncio.Future) else item for item in pending]
        previous = {s.name: s for s in status.rules}
        statuses: list[RuleStatus] = []
        for rule, sample in zip(rules, samples, strict=True):
            old = previous.get(rule.name)
            new = evaluate(rule, old, sample, now)
            fresh = new.state is RuleState.PENDING and (old is None or old.state not in BREACHING)
            if fresh and url is not None and isinstance(sample, float):
                new = await self._backdate(
                    adapter_for(url, self.config), rule, queries[rule.name], new, spec, now
                )
            METRICS.record_rule(namespace, name, new)
            statuses.append(old if old is not None and old.state is new.state else new)
        self.next_due = now + spec.rollback.interval
        for rule, state in zip(rules, statuses, strict=True):
            if state.state is RuleState.PENDING and state.since is not None:
                # Look again the moment the breach has lasted `for`, not up to an interval later.
                self.next_due = min(
                    self.next_due, max(now, state.since + rule.for_) + timedelta(milliseconds=50)
                )
        errors = {
            rule.name: s.message for rule, s in zip(rules, samples, strict=True) if isinstance(s, QueryError)
        }
        return Evaluation(statuses, errors)
