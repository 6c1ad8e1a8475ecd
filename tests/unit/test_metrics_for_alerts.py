"""What the chart's alerts need from the operator's registry: rollback counters that exist at 0 before the
first rollback (so `increase()` sees it), and the process, platform and GC collectors."""

from __future__ import annotations

from prometheus_client import generate_latest

from modelledger.adapters.metrics import ROLLBACK_CAUSES, OperatorMetrics
from modelledger.api.modeldeployment import RuleState, RuleStatus


def rollbacks(metrics: OperatorMetrics, deployment: str, cause: str) -> float | None:
    labels = {"namespace": "ml-prod", "deployment": deployment, "cause": cause}
    return metrics.registry.get_sample_value("modelledger_rollbacks_total", labels)


def test_the_rollback_causes_are_the_revision_causes_but_deploy() -> None:
    assert set(ROLLBACK_CAUSES) == {"AutomaticRollback", "ManualRollback", "Revocation"}


def test_a_deployment_has_its_rollback_counters_at_zero_once_seen() -> None:
    metrics = OperatorMetrics()
    assert rollbacks(metrics, "fraud", "AutomaticRollback") is None
    metrics.set_serving("ml-prod", "fraud", "v1", 1, False)
    for cause in ROLLBACK_CAUSES:
        assert rollbacks(metrics, "fraud", cause) == 0
    metrics.record_rule("ml-prod", "churn", RuleStatus(name="r", state=RuleState.PASS, value=0.1))
    assert rollbacks(metrics, "churn", "Revocation") == 0
    metrics.record_rollback("ml-prod", "fraud", "AutomaticRollback")
    assert rollbacks(metrics, "fraud", "AutomaticRollback") == 1
    assert rollbacks(metrics, "fraud", "ManualRollback") == 0
    # A rollback of a deployment not seen before (a restarted operator) creates its siblings at 0 too.
    metrics.record_rollback("ml-prod", "new", "ManualRollback")
    assert rollbacks(metrics, "new", "ManualRollback") == 1
    assert rollbacks(metrics, "new", "AutomaticRollback") == 0
    # Deleting a deployment keeps its counters (the history stays queryable), at their values.
    metrics.forget_deployment("ml-prod", "fraud")
    assert rollbacks(metrics, "fraud", "AutomaticRollback") == 1
    assert rollbacks(metrics, "fraud", "Revocation") == 0


def test_the_registry_has_process_platform_and_gc_series() -> None:
    text = generate_latest(OperatorMetrics().registry).decode()
    for name in ("process_cpu_seconds_total", "process_resident_memory_bytes", "python_info", "python_gc_"):
        assert f"\n{name}" in "\n" + text, name
