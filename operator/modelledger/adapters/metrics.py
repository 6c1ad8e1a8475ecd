"""The operator's own metrics, served on /metrics from a dedicated registry.

A dedicated `CollectorRegistry` (not prometheus-client's global one) keeps tests independent and keeps
library metrics of other packages out of the operator's endpoint. Series of deleted deployments, removed
rules and superseded serving revisions are removed, so the endpoint does not grow without bound.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Enum,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    start_http_server,
)

from modelledger.api.modeldeployment import RevisionCause, RuleState, RuleStatus

# Prometheus answers in milliseconds when healthy; the top buckets show timeouts (default 10 s).
QUERY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# The `cause` values of modelledger_rollbacks_total: every revision cause but a plain deploy.
ROLLBACK_CAUSES = tuple(cause.value for cause in RevisionCause if cause is not RevisionCause.DEPLOY)


NOTIFICATION_RESULTS = ("sent", "retried", "failed", "dropped")
PHASES = ("queue_wait", "pass", "evaluation", "status_write", "workload_apply", "event_post")


class EvaluationResult(StrEnum):
    """The `result` label of modelledger_rule_evaluations_total: what one rule query produced."""

    VALUE = "value"
    NO_DATA = "no_data"
    ERROR = "error"


class OperatorMetrics:
    """The metrics listed in issue 5, with small recording functions; thread-safe."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        # process_* (CPU, memory, open fds, start time), python_info and python_gc_*, as on the default
        # registry; not twice when the caller passes prometheus-client's global registry.
        if self.registry is not REGISTRY:
            ProcessCollector(registry=self.registry)
            PlatformCollector(registry=self.registry)
            GCCollector(registry=self.registry)
        deployment = ("namespace", "deployment")
        rule = (*deployment, "rule")
        self.rollbacks = Counter(
            "modelledger_rollbacks",
            "Rollbacks performed, by cause (AutomaticRollback, ManualRollback, Revocation).",
            (*deployment, "cause"),
            registry=self.registry,
        )
        self.rule_value = Gauge(
            "modelledger_rule_value",
            "The last aggregated value of a rollback rule's query (absent when it had none).",
            rule,
            registry=self.registry,
        )
        self.rule_state = Enum(
            "modelledger_rule_state",
            "The state of a rollback rule: 1 for the current state, 0 for the others.",
            rule,
            states=[state.value for state in RuleState],
            registry=self.registry,
        )
        self.rule_evaluations = Counter(
            "modelledger_rule_evaluations",
            "Rule queries evaluated, by result (value, no_data, error).",
            ("result",),
            registry=self.registry,
        )
        self.prometheus_query_seconds = Histogram(
            "modelledger_prometheus_query_seconds",
            "Time taken by queries to Prometheus, including failed ones.",
            buckets=QUERY_BUCKETS,
            registry=self.registry,
        )
        self.serving_info = Gauge(
            "modelledger_serving_info",
            "What each deployment serves (always 1): its version, revision and whether it is stable.",
            (*deployment, "version", "revision", "stable"),
            registry=self.registry,
        )
        self.leader = Gauge(
            "modelledger_leader",
            "1 while this process holds the leader lease and decides, 0 while it stands by.",
            registry=self.registry,
        )
        self.last_evaluation = Gauge(
            "modelledger_last_evaluation_timestamp_seconds",
            "When this process last finished a rule-engine tick (every interval while leading and some "
            "deployment has rules) or a deployment pass. Alert when it stalls on the leader.",
            registry=self.registry,
        )
        self.phase_seconds = Histogram(
            "modelledger_phase_seconds",
            "Where a deployment pass spends its time, by phase: queue_wait (queued until a worker took "
            "it), pass (the whole pass), evaluation (rules, Prometheus included), status_write, "
            "workload_apply, event_post.",
            ("phase",),
            buckets=QUERY_BUCKETS,
            registry=self.registry,
        )
        self.conflicts = Counter(
            "modelledger_conflicts",
            "Status writes refused with 409 (the object changed since it was read); decided again at once.",
            registry=self.registry,
        )
        self.retries = Counter(
            "modelledger_pass_retries",
            "Passes that failed and were retried after a per-deployment back-off.",
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "modelledger_queue_depth",
            "Deployment keys waiting for a worker.",
            registry=self.registry,
        )
        self.bookkeeping_pending = Gauge(
            "modelledger_bookkeeping_pending",
            "Events and usedBy refreshes waiting on the bookkeeping lane (merged, rate-limited).",
            registry=self.registry,
        )
        self.loop_lag = Gauge(
            "modelledger_event_loop_lag_seconds",
            "How late the operator's event loop ran a timer it set (a busy or blocked loop shows here).",
            registry=self.registry,
        )
        self.tick_requests = Gauge(
            "modelledger_rule_tick_requests",
            "Requests to Prometheus the rule engine's last tick sent, per evaluation interval (seconds): "
            "one per rule group (fleet-safe template and namespace) plus per-deployment queries of "
            "templates that are not fleet-safe.",
            ("interval",),
            registry=self.registry,
        )
        self.tick_rules = Gauge(
            "modelledger_rule_tick_rules",
            "Rules the rule engine's last tick evaluated, per evaluation interval (seconds).",
            ("interval",),
            registry=self.registry,
        )
        self.audit_sink_healthy = Gauge(
            "modelledger_audit_sink_healthy",
            "1 while the --audit-log file takes records, 0 while it cannot be written (full, read-only, "
            "I/O errors): records then wait in memory and on the operator's log (docs/audit.md).",
            registry=self.registry,
        )
        self.audit_sink_healthy.set(1)
        self.audit_records_pending = Gauge(
            "modelledger_audit_records_pending",
            "Audit records waiting in memory for the --audit-log file to be writable again.",
            registry=self.registry,
        )
        self.notifications = Counter(
            "modelledger_notifications",
            "Notification outcomes per receiver (docs/notifications.md): sent, retried (an attempt failed, "
            "another follows), failed (refused, or the retry budget ran out), dropped (queue full, or the "
            "operator stopped first).",
            ("receiver", "result"),
            registry=self.registry,
        )
        for phase in PHASES:
            self.phase_seconds.labels(phase)
        self._lock = threading.Lock()
        self._serving: dict[tuple[str, str], tuple[str, str, str]] = {}
        self._rules: dict[tuple[str, str], set[str]] = {}
        self._known: set[tuple[str, str]] = set()
        # Every tick records every rule: keep each rule's series and last state, so an unchanged rule
        # costs a dictionary lookup and a gauge set, not two label lookups under prometheus_client's locks.
        self._rule_series: dict[tuple[str, str, str], _RuleSeries] = {}

    def watch_audit_sink(self, healthy: Callable[[], bool], pending: Callable[[], int]) -> None:
        """Read the audit sink's health and queue length at each scrape."""
        self.audit_sink_healthy.set_function(lambda: 1.0 if healthy() else 0.0)
        self.audit_records_pending.set_function(lambda: float(pending()))

    def set_leader(self, leading: bool) -> None:
        self.leader.set(1 if leading else 0)

    def record_pass(self, at: float) -> None:
        """A deployment loop finished a pass at `at` (seconds since the epoch)."""
        self.last_evaluation.set(at)

    def record_tick(self, interval: float, requests: int, rules: int) -> None:
        self.tick_requests.labels(f"{interval:g}").set(requests)
        self.tick_rules.labels(f"{interval:g}").set(rules)

    def know_receivers(self, names: Iterable[str]) -> None:
        """Every configured receiver's counters start at 0, so the first failure shows as an increase.
        Only the admins' receiver names become labels, never a name a tenant wrote."""
        for name in names:
            for result in NOTIFICATION_RESULTS:
                self.notifications.labels(name, result)

    def record_notification(self, receiver: str, result: str) -> None:
        self.notifications.labels(receiver, result).inc()

    def observe_phase(self, phase: str, seconds: float) -> None:
        self.phase_seconds.labels(phase).observe(seconds)

    def record_rollback(self, namespace: str, deployment: str, cause: str) -> None:
        with self._lock:
            self._know(namespace, deployment)
        self.rollbacks.labels(namespace, deployment, str(cause)).inc()

    def _know(self, namespace: str, deployment: str) -> None:
        """A deployment's rollback counters exist at 0 from when it is first seen, one per cause, so
        `increase(modelledger_rollbacks_total[...])` sees its first rollback (a series that appears at 1
        has no increase). Under the lock."""
        if (namespace, deployment) in self._known:
            return
        for cause in ROLLBACK_CAUSES:
            self.rollbacks.labels(namespace, deployment, cause)
        self._known.add((namespace, deployment))

    def record_evaluation(self, result: EvaluationResult, count: int = 1) -> None:
        if count:
            self.rule_evaluations.labels(result.value).inc(count)

    def observe_query(self, seconds: float) -> None:
        self.prometheus_query_seconds.observe(seconds)

    def record_rule_value(self, namespace: str, deployment: str, name: str, value: float) -> bool:
        """A known rule's new value, its state unchanged; False if the rule has no series yet."""
        with self._lock:
            series = self._rule_series.get((namespace, deployment, name))
            if series is None or series.value_child is None:
                return False
            series.value_child.set(value)
            return True

    def record_rule(self, namespace: str, deployment: str, status: RuleStatus) -> None:
        """The rule's state and value; the value series is removed while the rule has no value."""
        key = (namespace, deployment, status.name)
        with self._lock:
            series = self._rule_series.get(key)
            if series is None:
                self._know(namespace, deployment)
                self._rules.setdefault((namespace, deployment), set()).add(status.name)
                series = self._rule_series[key] = _RuleSeries(self.rule_state.labels(*key))
            if series.state is not status.state:
                series.state_child.state(status.state.value)
                series.state = status.state
            if status.value is None:
                if series.value_child is not None:
                    _remove(self.rule_value, *key)
                    series.value_child = None
            else:
                if series.value_child is None:
                    series.value_child = self.rule_value.labels(*key)
                series.value_child.set(status.value)

    def keep_rules(self, namespace: str, deployment: str, names: Iterable[str]) -> None:
        """Drop the series of rules no longer in the deployment's spec."""
        keep = set(names)
        with self._lock:
            known = self._rules.get((namespace, deployment), set())
            for name in known - keep:
                self._forget_rule(namespace, deployment, name)
            self._rules[(namespace, deployment)] = known & keep

    def set_serving(self, namespace: str, deployment: str, version: str, revision: int, stable: bool) -> None:
        """Replace the deployment's serving_info series (one per deployment at any time)."""
        labels = (version, str(revision), "true" if stable else "false")
        with self._lock:
            self._know(namespace, deployment)
            previous = self._serving.get((namespace, deployment))
            if previous is not None and previous != labels:
                _remove(self.serving_info, namespace, deployment, *previous)
            self.serving_info.labels(namespace, deployment, *labels).set(1)
            self._serving[(namespace, deployment)] = labels

    def forget_deployment(self, namespace: str, deployment: str) -> None:
        """Remove every per-deployment series except the rollback counter (its history stays queryable)."""
        with self._lock:
            previous = self._serving.pop((namespace, deployment), None)
            if previous is not None:
                _remove(self.serving_info, namespace, deployment, *previous)
            for name in self._rules.pop((namespace, deployment), set()):
                self._forget_rule(namespace, deployment, name)

    def serve(self, port: int, addr: str = "0.0.0.0") -> WSGIServer:
        """Serve /metrics on a daemon thread; `shutdown()` and `server_close()` the result to stop."""
        server, _thread = start_http_server(port, addr=addr, registry=self.registry)
        return server

    def _forget_rule(self, namespace: str, deployment: str, name: str) -> None:
        self._rule_series.pop((namespace, deployment, name), None)
        _remove(self.rule_value, namespace, deployment, name)
        _remove(self.rule_state, namespace, deployment, name)


@dataclass
class _RuleSeries:
    """One rule's series: its state (the Enum's child), and its value's child while it has a value."""

    state_child: Enum
    state: RuleState | None = None
    value_child: Gauge | None = None


def _remove(metric: Gauge | Enum, *labels: str) -> None:
    with contextlib.suppress(KeyError):  # never set, or already removed
        metric.remove(*labels)
