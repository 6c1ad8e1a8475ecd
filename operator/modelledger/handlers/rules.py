"""What the rule engine (handlers/engine.py) queries with: Prometheus clients per source, query preparation.

`status.rules[].value` is the value that moved a rule into its current state (for a Breached rule: the
evidence); a rule whose state did not change is not rewritten, so a fluctuating metric causes no
status writes. Live values are on /metrics (`modelledger_rule_value`).

Where the queries go: `spec.rollback.prometheus.source` names one of the admins' sources (none: the
source `default`); a raw `url` is queried only where the admins allow it, and never with the operator's
credentials. Each query is rendered, parsed as one PromQL expression and, on an `enforced` source,
restricted to the deployment's namespace (`core.promql`); a rule that cannot be prepared is Error with a
message naming the field. Queries are batched only with those of the same namespace and source.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from modelledger.adapters.batching import QueryBatcher
from modelledger.adapters.metrics import OperatorMetrics
from modelledger.adapters.prometheus import PrometheusAdapter, PrometheusSource, display_url, sanitise
from modelledger.api import (
    ModelDeploymentStatus,
    RollbackRule,
    RuleStatus,
)
from modelledger.api.modeldeployment import Prometheus
from modelledger.core import history, promql
from modelledger.core.decision import Decision
from modelledger.handlers.context import OperatorConfig

METRICS = OperatorMetrics()
RANGE_STEP = timedelta(seconds=1)  # resolution of the look back at a fresh breach (a typical scrape interval)
DEFAULT_SOURCE = "default"
RAW_URL_WORKERS = 4  # threads of a client for a tenant-written URL (a source's client has 16)


@dataclass(frozen=True)
class Target:
    """Where a deployment's rules go: a client (with its batcher) and how queries are restricted."""

    batcher: QueryBatcher
    tenancy: promql.Tenancy

    @property
    def adapter(self) -> PrometheusAdapter:
        return self.batcher.adapter


class PrometheusClients:
    """One client (adapter and batcher) per admin-defined source, and a bounded, least-recently-used set
    of clients for tenant-written URLs, which never carry the operator's credentials."""

    def __init__(self, config: OperatorConfig, metrics: OperatorMetrics | None = None) -> None:
        self.config = config
        self.metrics = metrics
        self.sources: dict[str, PrometheusSource] = {s.name: s for s in config.prometheus_sources}
        self._default_from_flags = DEFAULT_SOURCE not in self.sources and config.prometheus_url is not None
        self._sources: dict[str, Target] = {}
        self._raw: OrderedDict[str, Target] = OrderedDict()

    def resolve(self, prometheus: Prometheus | None) -> Target | str:
        """The target of `spec.rollback.prometheus`, or why there is none (a message naming the field)."""
        if prometheus is None:
            if DEFAULT_SOURCE in self.sources or self._default_from_flags:
                return self._source(DEFAULT_SOURCE)
            return (
                "spec.rollback.prometheus is not set and the operator has no default Prometheus "
                f'(--prometheus-url, or a source named "{DEFAULT_SOURCE}")'
            )
        if prometheus.source is not None:
            if prometheus.source in self.sources or (
                prometheus.source == DEFAULT_SOURCE and self._default_from_flags
            ):
                return self._source(prometheus.source)
            return sanitise(
                f'spec.rollback.prometheus.source: no Prometheus source named "{prometheus.source}" '
                f"(defined: {self._names()})"
            )
        if prometheus.url is None:
            return "spec.rollback.prometheus: name a source (or, where allowed, a url)"
        if not self.config.allow_raw_prometheus_urls:
            return sanitise(
                "spec.rollback.prometheus.url: this operator does not query URLs written in a "
                f"ModelDeployment; name an admin-defined source in spec.rollback.prometheus.source "
                f"(defined: {self._names()})"
            )
        return self._raw_url(prometheus.url)

    def _names(self) -> str:
        names = sorted({*self.sources, *([DEFAULT_SOURCE] if self._default_from_flags else [])})
        shown = ", ".join(names[:8]) + (f" and {len(names) - 8} more" if len(names) > 8 else "")
        return shown or "none"

    def _source(self, name: str) -> Target:
        if name not in self._sources:
            config = self.config
            source = self.sources.get(name)
            if source is None:  # the default from --prometheus-url and its credential flags
                assert config.prometheus_url is not None
                adapter = PrometheusAdapter(
                    config.prometheus_url,
                    timeout=config.prometheus_timeout,
                    bearer_token=config.prometheus_token,
                    bearer_token_file=Path(config.prometheus_token_file)
                    if config.prometheus_token_file
                    else None,
                    ca_bundle=Path(config.prometheus_ca) if config.prometheus_ca else None,
                    metrics=self.metrics,
                )
                tenancy = config.prometheus_tenancy
            else:
                adapter = PrometheusAdapter(
                    source.url,
                    timeout=source.timeout or config.prometheus_timeout,
                    bearer_token_file=source.token_file,
                    ca_bundle=source.ca_file,
                    metrics=self.metrics,
                    name=f"Prometheus source {name}",
                )
                tenancy = source.tenancy
            self._sources[name] = Target(QueryBatcher(adapter), tenancy)
        return self._sources[name]

    def _raw_url(self, url: str) -> Target:
        """A client for a URL a tenant wrote: no token, no CA or proxy settings of the operator, no
        ~/.netrc; at most `max_raw_prometheus_clients` kept, the least recently used closed first."""
        target = self._raw.pop(url, None)
        if target is None:
            adapter = PrometheusAdapter(
                url,
                timeout=self.config.prometheus_timeout,
                metrics=self.metrics,
                max_workers=RAW_URL_WORKERS,
                name=display_url(url),
                detailed_errors=False,
                trust_env=False,
            )
            target = Target(QueryBatcher(adapter), promql.Tenancy.SHARED)
        self._raw[url] = target
        while len(self._raw) > max(1, self.config.max_raw_prometheus_clients):
            _, evicted = self._raw.popitem(last=False)
            evicted.adapter.close()  # queries in flight finish first
        return target

    @property
    def raw_clients(self) -> int:
        return len(self._raw)

    def close(self) -> None:
        for target in [*self._sources.values(), *self._raw.values()]:
            target.adapter.close()
        self._sources.clear()
        self._raw.clear()


def clients_for(config: OperatorConfig) -> PrometheusClients:
    """The operator's Prometheus clients, made once and kept with its settings."""
    if config.prometheus_clients is None:
        config.prometheus_clients = PrometheusClients(config, METRICS)
    return config.prometheus_clients


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
    queries: dict[str, str] = field(default_factory=dict)  # rule -> the text sent to Prometheus


def _prepare(
    rule: RollbackRule,
    index: int,
    values: Mapping[str, str],
    enforce: str | None,
    queries: dict[str, promql.Query],
) -> str | None:
    """Render and parse the rule's query into `queries`; or why it cannot run, naming the field."""
    field = f"spec.rollback.rules[{index}].query"
    try:
        query = promql.prepare(rule.query, values, enforce=enforce)
    except ValueError as error:  # a bad template, not one PromQL expression, or a refused selector
        return sanitise(f"{field}: {error}")
    if query.type not in (promql.QueryType.VECTOR, promql.QueryType.SCALAR):
        return f"{field}: the query returns a {query.type.value}; a rule needs an instant vector or a scalar"
    queries[rule.name] = query
    return None
