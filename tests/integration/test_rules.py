"""Rollback rules against a real Prometheus scraping a test exporter, the operator as a process (issue 5)."""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import Gauge

from modelledger.testing.access import ClusterAccess
from modelledger.testing.prometheus import PrometheusServer
from tests.conftest import Exporter
from tests.helpers import eventually
from tests.operator_process import OperatorProcess
from tests.scenario import (
    V132,
    V140,
    apply,
    cli,
    events,
    example,
    rolled_back,
    served_revision,
    stable_then_upgraded,
    status,
    versions,
    wait_phase,
    wait_served,
    with_rules,
)


def test_breach_rolls_back_to_stable_with_evidence(
    plane: ClusterAccess, namespace: str, operator: OperatorProcess, error_rate: Gauge
) -> None:
    operator.start()
    stable_then_upgraded(plane, namespace)
    error_rate.labels(namespace=namespace, deployment="fraud-detector").set(0.9)
    started = time.monotonic()
    eventually(lambda: rolled_back(plane, namespace), 30, "automatic rollback", interval=0.1)
    elapsed = time.monotonic() - started
    # for (2 s) + interval (1 s) + scrape interval (1 s) + 2 s
    assert elapsed <= 6.0, f"rolled back {elapsed:.1f} s after the breach"

    st = wait_phase(plane, namespace, "RolledBack")
    top = st.history[0]
    assert (top.cause.value, top.rule, top.actor) == (
        "AutomaticRollback",
        "error-rate",
        "modelledger/rule:error-rate",
    )
    assert top.evidence is not None
    assert top.evidence.value == pytest.approx(0.9)
    assert (top.evidence.threshold, top.evidence.comparator.value) == (0.5, ">")
    assert f'namespace="{namespace}"' in top.evidence.query
    assert "{{" not in top.evidence.query
    assert st.quarantined == [V140]
    rolled = [e for e in events(plane, namespace) if e["reason"] == "RolledBack"]
    assert len(rolled) == 1
    assert rolled[0]["type"] == "Warning"
    assert "0.9" in rolled[0]["message"]
    assert "error-rate" in rolled[0]["message"]
    series = (
        'modelledger_rollbacks_total{cause="AutomaticRollback",deployment="fraud-detector",'
        f'namespace="{namespace}"}}'
    )
    metric = re.search(re.escape(series) + r" (\S+)", operator.metrics())
    assert metric is not None
    assert float(metric.group(1)) == 1.0
    print(f"rollback {elapsed:.2f} s after the breach was exported")


def test_breach_shorter_than_for_does_not_roll_back(
    plane: ClusterAccess, namespace: str, operator: OperatorProcess, error_rate: Gauge
) -> None:
    operator.start()
    stable_then_upgraded(plane, namespace, **{"for": "6s"})
    gauge = error_rate.labels(namespace=namespace, deployment="fraud-detector")
    gauge.set(0.9)
    eventually(
        lambda: any(r.state.value == "Pending" for r in status(plane, namespace).rules), 15, "rule Pending"
    )
    gauge.set(0.0)
    eventually(
        lambda: all(r.state.value == "Pass" for r in status(plane, namespace).rules), 15, "rule passes"
    )
    time.sleep(6)
    assert served_revision(plane, namespace) == (V140, "2")
    assert len(status(plane, namespace).history) == 2


def test_breach_without_stable_revision_degrades_and_changes_nothing(
    plane: ClusterAccess, namespace: str, operator: OperatorProcess, error_rate: Gauge
) -> None:
    operator.start()
    versions(plane, namespace)
    apply(plane, namespace, with_rules(V140, bake="1h"))
    wait_served(plane, namespace, V140, 1)
    error_rate.labels(namespace=namespace, deployment="fraud-detector").set(0.9)
    st = wait_phase(plane, namespace, "Degraded", timeout=20)
    assert len(st.history) == 1
    assert served_revision(plane, namespace) == (V140, "1")
    eventually(lambda: "NoStableRevision" in [e["reason"] for e in events(plane, namespace)], 10, "event")


@pytest.fixture
def own_prometheus(tmp_path: Path) -> Iterator[PrometheusServer]:
    """A Prometheus this test may stop (the session's one stays up for the others)."""
    with PrometheusServer(tmp_path / "own-prometheus") as server:
        yield server


@pytest.mark.parametrize("on_error", ["Hold", "Breach"])
def test_prometheus_down(
    plane: ClusterAccess,
    namespace: str,
    operator: OperatorProcess,
    exporter: Exporter,
    own_prometheus: PrometheusServer,
    on_error: str,
) -> None:
    gauge = exporter.gauge("test_error_rate", "errors per request", ("namespace", "deployment"))
    gauge.labels(namespace=namespace, deployment="fraud-detector").set(0.0)
    own_prometheus.add_target(exporter.name, exporter.address)
    own_prometheus.wait_for_target(exporter.name)
    operator.start()
    rule = {"onError": on_error}

    def rules_at(url: str, version: str, bake: str) -> dict[str, Any]:
        document = with_rules(version, bake=bake, **rule)
        document["spec"]["rollback"]["prometheus"] = {"url": url}
        return document

    versions(plane, namespace)
    apply(plane, namespace, rules_at(own_prometheus.url, V132, "2s"))
    eventually(lambda: status(plane, namespace).stable_revision == 1, 30, "1.3.2 stable")
    apply(plane, namespace, rules_at(own_prometheus.url, V140, "1h"))
    wait_served(plane, namespace, V140, 2)
    own_prometheus.stop()

    def unreachable() -> bool:
        st = status(plane, namespace)
        return any(c.type == "PrometheusReachable" and c.status.value == "False" for c in st.conditions)

    eventually(unreachable, 20, "PrometheusReachable=False")
    eventually(
        lambda: "PrometheusUnreachable" in [e["reason"] for e in events(plane, namespace)], 10, "event"
    )
    if on_error == "Hold":
        time.sleep(5)
        assert served_revision(plane, namespace) == (V140, "2"), "Hold: no decision while Prometheus is down"
        assert [r.state.value for r in status(plane, namespace).rules] == ["Error"]
    else:
        eventually(lambda: rolled_back(plane, namespace), 20, "onError: Breach rolls back")
        assert status(plane, namespace).history[0].cause.value == "AutomaticRollback"


@pytest.mark.parametrize(
    ("on_no_data", "empty"),
    [("Breach", True), ("Breach", False), ("Hold", True)],
    ids=["empty-breach", "nan-breach", "empty-hold"],
)
def test_no_data_follows_on_no_data(
    plane: ClusterAccess,
    namespace: str,
    operator: OperatorProcess,
    error_rate: Gauge,
    on_no_data: str,
    empty: bool,
) -> None:
    operator.start()
    stable_then_upgraded(plane, namespace, onNoData=on_no_data)
    gauge = error_rate.labels(namespace=namespace, deployment="fraud-detector")
    if empty:
        error_rate.remove(namespace, "fraud-detector")  # the series goes stale: an empty result
    else:
        gauge.set(math.nan)
    if on_no_data == "Breach":
        eventually(lambda: rolled_back(plane, namespace), 30, "no data counted as a breach")
    else:
        eventually(
            lambda: [r.state.value for r in status(plane, namespace).rules] == ["NoData"], 30, "NoData"
        )
        time.sleep(4)
        assert served_revision(plane, namespace) == (V140, "2")


def test_after_rollback_resync_changes_nothing_retry_redeploys_new_version_deploys(
    plane: ClusterAccess, namespace: str, operator: OperatorProcess, error_rate: Gauge
) -> None:
    operator.start()
    stable_then_upgraded(plane, namespace)
    gauge = error_rate.labels(namespace=namespace, deployment="fraud-detector")
    gauge.set(0.9)
    eventually(lambda: rolled_back(plane, namespace), 30, "automatic rollback")
    gauge.set(0.0)
    # What an ArgoCD sync does: apply the unchanged manifest again.
    apply(plane, namespace, with_rules(V140, bake="1h"))
    time.sleep(4)
    assert served_revision(plane, namespace) == (V132, "3")
    assert len(status(plane, namespace).history) == 3

    retried = cli(plane, "retry", "fraud-detector", "-n", namespace, "--reason", "fixed upstream")
    assert retried.returncode == 0, retried.stdout + retried.stderr
    wait_served(plane, namespace, V140, 4)

    v150 = example(V140)
    v150["metadata"]["name"] = "fraud-detector-1-5-0"
    v150["spec"]["version"] = "1.5.0"
    apply(plane, namespace, v150)
    apply(plane, namespace, with_rules("fraud-detector-1-5-0", bake="1h"))
    wait_served(plane, namespace, "fraud-detector-1-5-0", 5)
    assert status(plane, namespace).history[0].cause.value == "Deploy"
