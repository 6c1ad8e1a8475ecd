"""Argo Rollouts with bench/peers.py's settings does what its docs say (issue 16): a breach seen by the
background analysis (Prometheus provider, `failureLimit: 0`) aborts the Rollout and the stable
ReplicaSet serves again.

It runs the real rollouts-controller (built from its Go module by hack/build-rollouts.sh, cached by
version) against the test plane and the test Prometheus, with the very manifests bench/peers.py makes,
so the benchmark's Rollouts side is known to measure a rollback and not a misconfiguration. The build is
optional (`make bench-peers` makes it): without the cached binary the test skips and says so.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest

from modelledger.testing.access import ClusterAccess
from modelledger.testing.binaries import MissingBinary
from modelledger.testing.prometheus import PrometheusServer
from tests.conftest import Exporter
from tests.helpers import eventually

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))  # bench/ holds scripts, no package
import peers
from rollback_latency import RULES, kubectl

NAME = "fraud-detector"
INTERVAL = "1s"


def _cached() -> str:
    try:
        peers.rollouts_paths()
    except MissingBinary as missing:
        return str(missing)
    return ""


# Decided at collection, so a machine without the optional build does not even start a plane for it.
pytestmark = pytest.mark.skipif(
    bool(_cached()), reason=f"rollouts-controller not cached: {_cached()}; `make bench-peers` builds it"
)


@pytest.fixture
def rollouts_controller(plane: ClusterAccess, namespace: str, tmp_path: Path) -> Iterator[Path]:
    """The controller, namespaced to the test's namespace; yields its log's path."""
    binary, crds = peers.rollouts_paths()
    peers.install_rollouts_crds(plane.kubeconfig, crds)
    log = tmp_path / "rollouts.log"
    with peers.rollouts_controller(binary, plane.kubeconfig, namespace, log, "info") as process:
        yield log
        assert process.poll() is None, f"rollouts-controller exited: {log.read_text()[-2000:]}"


def replica_set(apps: Any, namespace: str, name: str) -> Any:
    return apps.read_namespaced_replica_set(name, namespace)


def the_rollout(objects: Any, namespace: str) -> dict[str, Any]:
    found: dict[str, Any] = objects.get_namespaced_custom_object(
        "argoproj.io", "v1alpha1", namespace, "rollouts", NAME
    )
    return found


def test_a_breach_aborts_the_rollout_and_the_stable_replicaset_serves(
    plane: ClusterAccess,
    namespace: str,
    api_client: kubernetes.client.ApiClient,
    prometheus: PrometheusServer,
    exporter: Exporter,
    rollouts_controller: Path,
) -> None:
    objects = kubernetes.client.CustomObjectsApi(api_client)
    apps = kubernetes.client.AppsV1Api(api_client)
    gauge = exporter.gauge("bench_rule_value", "a rule's value", ("namespace", "deployment", "rule"))
    for rule in RULES:
        gauge.labels(namespace, NAME, rule).set(0.0)
    prometheus.wait_for_target(exporter.name)

    def apply(body: dict[str, Any]) -> None:
        kubectl(plane.kubeconfig, "apply", "--server-side", "-f", "-", stdin=json.dumps(body))

    apply(peers.analysis_template(namespace, prometheus.url, INTERVAL))
    apply(peers.rollout(NAME, namespace, peers.STABLE, 1))
    eventually(
        lambda: (the_rollout(objects, namespace).get("status") or {}).get("phase") == "Healthy",
        120,
        f"Rollout Healthy on {peers.STABLE} (log: {rollouts_controller})",
    )
    stable_hash = the_rollout(objects, namespace)["status"]["stableRS"]
    stable_rs = f"{NAME}-{stable_hash}"

    apply(peers.rollout(NAME, namespace, peers.CANARY, 1))
    eventually(
        lambda: peers.paused_under_analysis(objects, namespace, 1),
        120,
        "Rollout held at the pause step with its background analysis measuring",
    )
    held = the_rollout(objects, namespace)["status"]
    canary_rs = f"{NAME}-{held['currentPodHash']}"
    assert held["stableRS"] == stable_hash, "the stable ReplicaSet must not move while the canary is held"
    assert canary_rs != stable_rs
    # setWeight 100 on a basic canary: the new version serves alone, the stable ReplicaSet is at 0.
    eventually(
        lambda: (
            (replica_set(apps, namespace, stable_rs).spec.replicas == 0)
            and (replica_set(apps, namespace, canary_rs).status.available_replicas or 0) == 1
        ),
        60,
        "canary serving alone, stable ReplicaSet scaled to 0",
    )

    gauge.labels(namespace, NAME, "error-rate").set(0.9)
    eventually(
        lambda: prometheus.query(
            f'bench_rule_value{{namespace="{namespace}",deployment="{NAME}",rule="error-rate"}} > 0.5'
        ),
        30,
        "the breach visible to PromQL",
        interval=0.05,
    )
    visible = time.monotonic()

    def aborted() -> dict[str, Any] | None:
        status = the_rollout(objects, namespace).get("status") or {}
        return status if status.get("abort") and status.get("phase") == "Degraded" else None

    status = eventually(aborted, 60, "Rollout aborted and Degraded after the breach")
    aborted_after = time.monotonic() - visible
    print(f"aborted {aborted_after:.2f} s after the breach was visible")
    assert status["stableRS"] == stable_hash

    runs = peers.analysis_runs(objects, namespace)
    failed = [run for run in runs if (run.get("status") or {}).get("phase") == "Failed"]
    assert failed, f"no Failed AnalysisRun: {[(r.get('status') or {}).get('phase') for r in runs]}"
    results = {m["name"]: m["phase"] for m in failed[0]["status"]["metricResults"]}
    assert results["error-rate"] == "Failed", results

    eventually(
        lambda: (
            (replica_set(apps, namespace, stable_rs).status.available_replicas or 0) == 1
            and replica_set(apps, namespace, stable_rs).spec.replicas == 1
        ),
        60,
        "the stable ReplicaSet back at 1 available replica",
    )
    eventually(
        lambda: replica_set(apps, namespace, canary_rs).spec.replicas == 0,
        60,
        "the canary ReplicaSet scaled to 0",
    )
    # failureLimit 0 with a 1 s interval: the next measurement fails the run; the docs' bound is
    # (failureLimit + 1) x interval, plus the controller's reconcile on a loaded 2-core machine.
    assert aborted_after < 30, f"abort took {aborted_after:.1f} s after the breach was visible"
