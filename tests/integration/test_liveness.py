"""Liveness watches the rule engine as well as the deployment passes (issue 12, item 2): an engine tick
that hangs (test hook MODELLEDGER_TEST_STALL=rule-engine) fails /healthz within its bound, while the
deployment passes still run and readiness still says the process serves."""

from __future__ import annotations

from prometheus_client import Gauge

from modelledger.testing.access import ClusterAccess
from tests.helpers import eventually
from tests.operator_process import OperatorProcess
from tests.scenario import V132, apply, versions, wait_served, with_rules


def test_a_hung_rule_engine_fails_liveness(
    plane: ClusterAccess, namespace: str, operator: OperatorProcess, error_rate: Gauge
) -> None:
    bound = 5.0  # --stall-timeout; the rules' interval is 1 s, so the bound is max(5, 3 x 1)
    operator.extra = ["--stall-timeout", str(bound)]
    operator.start(MODELLEDGER_TEST_STALL="rule-engine")
    eventually(operator.leading, 30, "the operator leads")
    versions(plane, namespace)
    apply(plane, namespace, with_rules(V132, bake="1h"))
    wait_served(plane, namespace, V132, 1)  # the passes run: only the engine hangs
    eventually(lambda: operator.healthz()[0] == 500, bound + 30, "liveness fails", interval=0.2)
    code, body = operator.healthz()
    assert code == 500, body
    assert [s["loop"] for s in body["stalled"]] == ["rule engine, interval 1s"], body
    assert body["stalled"][0]["where"] == "inside a pass", body
    assert operator.healthz("/readyz")[0] == 200, "readiness is about serving, not progress"
    assert "test stall point reached: the rule engine's tick hangs" in operator.log.read_text()
