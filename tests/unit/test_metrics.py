"""The operator's metrics: names and labels as issue 5 lists them, series that follow the objects."""

from __future__ import annotations

import urllib.request
from datetime import UTC, datetime

from modelledger.adapters.metrics import EvaluationResult, OperatorMetrics
from modelledger.api.modeldeployment import RuleState, RuleStatus

SINCE = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
RULE = {"namespace": "ml-prod", "deployment": "fraud", "rule": "error-rate"}


def value(metrics: OperatorMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def rule_status(state: RuleState, number: float | None, name: str = "error-rate") -> RuleStatus:
    return RuleStatus(name=name, state=state, value=number, since=SINCE)


def test_each_instance_has_its_own_registry() -> None:
    first, second = OperatorMetrics(), OperatorMetrics()
    first.record_evaluation(EvaluationResult.ERROR)
    assert value(first, "modelledger_rule_evaluations_total", result="error") == 1
    assert value(second, "modelledger_rule_evaluations_total", result="error") is None


def test_rollbacks_evaluations_and_query_time_are_counted() -> None:
    metrics = OperatorMetrics()
    metrics.record_rollback("ml-prod", "fraud", "AutomaticRollback")
    metrics.record_rollback("ml-prod", "fraud", "AutomaticRollback")
    metrics.record_evaluation(EvaluationResult.VALUE)
    metrics.observe_query(0.03)
    metrics.observe_query(7.0)
    labels = {"namespace": "ml-prod", "deployment": "fraud", "cause": "AutomaticRollback"}
    assert value(metrics, "modelledger_rollbacks_total", **labels) == 2
    assert value(metrics, "modelledger_rule_evaluations_total", result="value") == 1
    assert value(metrics, "modelledger_prometheus_query_seconds_count") == 2
    assert value(metrics, "modelledger_prometheus_query_seconds_bucket", le="0.05") == 1
    assert value(metrics, "modelledger_prometheus_query_seconds_sum") == 7.03


def test_a_rule_shows_its_state_and_value_and_loses_the_value_when_it_has_none() -> None:
    metrics = OperatorMetrics()
    metrics.record_rule("ml-prod", "fraud", rule_status(RuleState.PENDING, 0.12))
    assert value(metrics, "modelledger_rule_value", **RULE) == 0.12
    assert value(metrics, "modelledger_rule_state", **RULE, modelledger_rule_state="Pending") == 1
    assert value(metrics, "modelledger_rule_state", **RULE, modelledger_rule_state="Pass") == 0
    metrics.record_rule("ml-prod", "fraud", rule_status(RuleState.NO_DATA, None))
    assert value(metrics, "modelledger_rule_value", **RULE) is None
    assert value(metrics, "modelledger_rule_state", **RULE, modelledger_rule_state="NoData") == 1
    assert value(metrics, "modelledger_rule_state", **RULE, modelledger_rule_state="Pending") == 0


def test_removed_rules_and_deleted_deployments_lose_their_series() -> None:
    metrics = OperatorMetrics()
    metrics.record_rule("ml-prod", "fraud", rule_status(RuleState.PASS, 0.1))
    metrics.record_rule("ml-prod", "fraud", rule_status(RuleState.PASS, 3.0, name="latency"))
    metrics.set_serving("ml-prod", "fraud", "fraud-1-4-0", 7, stable=False)
    metrics.keep_rules("ml-prod", "fraud", ["latency"])
    assert value(metrics, "modelledger_rule_value", **RULE) is None
    assert value(metrics, "modelledger_rule_state", **RULE, modelledger_rule_state="Pass") is None
    assert value(metrics, "modelledger_rule_value", **(RULE | {"rule": "latency"})) == 3.0
    metrics.forget_deployment("ml-prod", "fraud")
    assert value(metrics, "modelledger_rule_value", **(RULE | {"rule": "latency"})) is None
    serving = {"namespace": "ml-prod", "deployment": "fraud", "version": "fraud-1-4-0"}
    assert value(metrics, "modelledger_serving_info", **serving, revision="7", stable="false") is None


def test_serving_info_keeps_one_series_per_deployment() -> None:
    metrics = OperatorMetrics()
    metrics.set_serving("ml-prod", "fraud", "fraud-1-4-0", 7, stable=False)
    metrics.set_serving("ml-prod", "fraud", "fraud-1-4-0", 7, stable=True)
    metrics.set_serving("ml-prod", "churn", "churn-2-0-0", 1, stable=True)
    fraud = {"namespace": "ml-prod", "deployment": "fraud", "version": "fraud-1-4-0", "revision": "7"}
    assert value(metrics, "modelledger_serving_info", **fraud, stable="true") == 1
    assert value(metrics, "modelledger_serving_info", **fraud, stable="false") is None
    series = [
        sample
        for family in metrics.registry.collect()
        if family.name == "modelledger_serving_info"
        for sample in family.samples
    ]
    assert len(series) == 2


def test_serve_exposes_the_registry_over_http() -> None:
    metrics = OperatorMetrics()
    metrics.record_rollback("ml-prod", "fraud", "Revocation")
    server = metrics.serve(0, addr="127.0.0.1")
    try:
        port = server.server_address[1]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            body = response.read().decode()
    finally:
        server.shutdown()
        server.server_close()
    assert (
        'modelledger_rollbacks_total{cause="Revocation",deployment="fraud",namespace="ml-prod"} 1.0' in body
    )
    assert "# TYPE modelledger_prometheus_query_seconds histogram" in body
    assert "process_cpu_seconds_total" in body, "the dedicated registry carries no process or GC collectors"
